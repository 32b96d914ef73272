"""`make bench`: run every benchmark one at a time, then write BENCHMARKS.md and the README table.

Each benchmark streams its usual output (every figure next to its same-run baseline) and ends with
one `BENCH-JSON` line (`loadtests/benchjson.py`); this collects those into
`loadtests/results/latest.json` and renders it (`loadtests/report.py`). Sizes are the suite's (see
SUITE); each benchmark has a time cap after which its process group (it and the servers it
started) is killed and it is recorded as `timeout`. `--only bench_chat,bench_probe` reruns some and
keeps the others' last figures (each entry carries its own date and commit).

`mem_profile` is a diagnostic (tracemalloc), not a benchmark, and is not run here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests import report
from loadtests.benchjson import command_line, parse


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    timeout_s: float


# Sized for a 2-core machine: estimated 12-15 min in all; the caps (38 min in sum) only stop a hung run.
SUITE = (
    Bench("bench_chat", ("--soak", "20000"), 300),  # 5 max/paced phases of 8 s + a 20,000-message soak
    Bench("bench_presence", (), 420),  # 1,000 subscribers, bare / 1 node / 2 nodes, twice (GC variants)
    Bench("bench_connections", ("--connections", "10000"), 300),
    # 1,000 calls at a 2 s minute = 500 charges/s (the README's 5,000 @ 5 s set-up alone takes ~10 min)
    Bench("bench_calls", ("--calls", "1000", "--interval", "2", "--setup-deadline", "300",
                          "--end-deadline", "120"), 600),
    Bench("bench_probe", (), 240),
    Bench("bench_scale", (), 420),
)


def run_one(bench: Bench, *, python: str = sys.executable, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one benchmark in its own process group; its entry with status `ok`, `timeout`,
    `exit N` or `no figures`."""
    show = echo or (lambda line: print(line, end="", flush=True))
    started = time.monotonic()
    proc = subprocess.Popen([python, "-m", f"loadtests.{bench.name}", *bench.args], cwd=report.ROOT,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(bench.timeout_s, kill)
    timer.start()
    out: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            show(line)
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    entries = [e for e in parse("".join(out)) if e["name"] == bench.name]
    entry = entries[-1] if entries else {"name": bench.name, "command": command_line(bench.name, bench.args),
                                         "doc": "", "figures": []}
    if timed_out.is_set():
        status = f"timeout after {bench.timeout_s:g} s"
    elif code != 0:
        status = f"exit {code}"
    else:
        status = "ok" if entries else "no figures"
    return {**entry, "status": status, "seconds": round(time.monotonic() - started, 1)}


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip('"')
        except OSError:
            pass
        return "unknown"

    mem = first("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB" if mem != "unknown" else mem
    return {"cores": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"), "ram": ram,
            "python": platform.python_version(),
            "os": f"{first('/etc/os-release', 'PRETTY_NAME=')}, {platform.system()} {platform.release()}"}


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=report.ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def merge(previous: dict[str, Any] | None, fresh: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fresh entries replace the previous ones of the same name; the suite's order is kept."""
    by_name = {e["name"]: e for e in (previous or {}).get("benchmarks", [])}
    by_name.update({e["name"]: e for e in fresh})
    order = [b.name for b in SUITE] + sorted(set(by_name) - {b.name for b in SUITE})
    return {"generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "benchmarks": [by_name[name] for name in order if name in by_name]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated benchmark names (default: all of SUITE)")
    args = parser.parse_args(argv)
    names = {b.name for b in SUITE}
    wanted = [n for n in (args.only or "").split(",") if n] or [b.name for b in SUITE]
    unknown = sorted(set(wanted) - names)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    commit, today = git_commit(), dt.date.today().isoformat()
    fresh = []
    for bench in (b for b in SUITE if b.name in wanted):
        print(f"\n=== {bench.name} (cap {bench.timeout_s:g} s) ===", flush=True)
        fresh.append({**run_one(bench), "measured": today, "commit": commit})
    previous = report.load() if report.RESULTS.exists() and args.only else None
    results = merge(previous, fresh)
    report.RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report.RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    report.write_all(results)
    print(f"\n=== summary ({report.RESULTS.relative_to(report.ROOT)}, BENCHMARKS.md, README.md) ===")
    for entry in fresh:
        print(f"{entry['name']}: {entry['status']} in {entry['seconds']:g} s")
        for f in entry["figures"]:
            print(f"  {f['what']}: {report.quantity(f['value'], f['unit'])}   baseline {report.baseline_text(f)}")
    return 0 if all(e["status"] == "ok" for e in fresh) else 1


if __name__ == "__main__":
    sys.exit(main())
