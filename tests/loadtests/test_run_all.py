"""run_all: one real benchmark at a tiny size end to end, and the outcomes a suite run records
(figures, a failed exit, a hung benchmark killed with the processes it started)."""

from __future__ import annotations

import json
import os
import select
import stat
from pathlib import Path

import pytest

from loadtests import report
from loadtests.benchjson import PREFIX
from loadtests.run_all import SUITE, Bench, main, merge, run_one


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter: run_one calls it as `<python> -m loadtests.<name> ...`."""
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_tiny_real_benchmark_run_is_recorded_and_rendered(tmp_path: Path) -> None:
    lines: list[str] = []
    entry = run_one(Bench("bench_connections", ("--connections", "5"), 120), echo=lines.append)
    assert entry["status"] == "ok", "".join(lines)
    assert entry["command"] == ".venv/bin/python -m loadtests.bench_connections --connections 5"
    [figure] = entry["figures"]
    # At 5 devices the RSS difference is noise (it can even be negative): only its presence is checked.
    assert figure["unit"] == "KB" and isinstance(figure["value"], float) and isinstance(figure["baseline"], float)
    assert any(line.startswith("server RSS per idle authenticated device") for line in lines)  # output as before

    results = merge(report.load(), [{**entry, "measured": "2030-01-01", "commit": "abc1234"}])
    assert [e["name"] for e in results["benchmarks"]] == [b.name for b in SUITE]
    kept = [e for e in results["benchmarks"] if e["name"] != "bench_connections"]
    assert kept == [e for e in report.load()["benchmarks"] if e["name"] != "bench_connections"]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\n{report.END}\noutro\n")
    report.write_all(json.loads(json.dumps(results)), benchmarks=tmp_path / "BENCHMARKS.md", readme=readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n")
    assert "`.venv/bin/python -m loadtests.bench_connections --connections 5`" in text
    assert "2030-01-01, commit abc1234" in (tmp_path / "BENCHMARKS.md").read_text()


def test_figures_of_another_benchmark_are_ignored_and_a_failure_is_recorded(tmp_path: Path) -> None:
    line = PREFIX + json.dumps({"name": "bench_other", "command": "c", "figures": []})
    entry = run_one(Bench("bench_chat", ("--soak", "5"), 60),
                    python=_fake_python(tmp_path, f"echo '{line}'\nexit 3\n"), echo=lambda _: None)
    assert entry["status"] == "exit 3"
    assert entry["figures"] == []
    assert entry["command"] == ".venv/bin/python -m loadtests.bench_chat --soak 5"


def test_a_hung_benchmark_is_killed_with_its_children(tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    python = _fake_python(tmp_path, f"sleep 600 &\necho $! > {child}\nwait\n")
    # The cap only has to be shorter than the 600 s sleep; 5 s leaves the shell time to start its child.
    entry = run_one(Bench("bench_probe", (), 5), python=python, echo=lambda _: None)
    assert entry["status"] == "timeout after 5 s"
    pid = int(child.read_text())
    # SIGKILL went to the whole group; wait for the child's exit as an event (a pidfd turns readable).
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone and reaped
    try:
        assert select.select([fd], [], [], 60)[0] == [fd], "the benchmark's child outlived its kill"
    finally:
        os.close(fd)


def test_only_refuses_unknown_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--only", "bench_chat,bench_nope"])
    assert exit_.value.code == 2
    assert "unknown benchmark(s) bench_nope" in capsys.readouterr().err
