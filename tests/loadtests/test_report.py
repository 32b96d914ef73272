"""The committed results, BENCHMARKS.md and the README table agree: both files are exactly what the
generator renders from `loadtests/results/latest.json`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from loadtests import report
from loadtests.run_all import SUITE


def test_readme_table_is_generated_from_the_committed_results() -> None:
    results = report.load()
    readme = report.README.read_text()
    assert readme.count(report.BEGIN) == readme.count(report.END) == 1
    assert report.replace_block(readme, report.render_table(results)) == readme


def test_benchmarks_md_is_generated_from_the_committed_results() -> None:
    assert report.BENCHMARKS.read_text() == report.render_benchmarks(report.load())
    assert report.main(["--check"]) == 0


def test_committed_results_hold_every_suite_benchmark_with_its_command_and_date() -> None:
    results = report.load()
    assert [e["name"] for e in results["benchmarks"]] == [b.name for b in SUITE]
    for entry in results["benchmarks"]:
        assert entry["command"].startswith(f".venv/bin/python -m loadtests.{entry['name']}")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", entry["measured"])
        assert entry["status"] == "ok" and entry["figures"]
        assert all(f["value"] is not None for f in entry["figures"])
        assert (report.ROOT / entry["doc"].split("#")[0]).is_file()
    for key in ("cores", "cpu", "ram", "python", "os"):
        assert results["machine"][key]


@pytest.mark.parametrize(("value", "text"), [
    (35.7, "35.7"), (0.0231, "0.0231"), (0.48, "0.48"), (10.0, "10"), (145.0, "145"), (1225.4, "1,225"),
    (43520, "43,520"), (0, "0"), (None, "n/a"), (float("nan"), "n/a"), (-2.5, "-2.5"),
])
def test_number_keeps_three_significant_digits(value: float | None, text: str) -> None:
    assert report.number(value) == text


def test_quantity_and_baseline_text() -> None:
    assert report.quantity(44.5, "%") == "44.5%"
    assert report.quantity(1.25, "x") == "1.25x"
    assert report.quantity(9823, "msg/s") == "9,823 msg/s"
    assert report.baseline_text({"baseline": 32.8, "unit": "KB", "baseline_what": "bare"}) == "bare: 32.8 KB"
    assert report.baseline_text({"baseline": None, "unit": "KB"}) == "—"


def test_replace_block_changes_only_the_block(tmp_path: Path) -> None:
    text = f"before\n{report.BEGIN}\nold | table\n{report.END}\nafter\n"
    assert report.replace_block(text, f"{report.BEGIN}\nnew\n{report.END}") == \
        f"before\n{report.BEGIN}\nnew\n{report.END}\nafter\n"
    with pytest.raises(ValueError, match="bench:begin"):
        report.replace_block("no markers", "x")


def test_table_cells_escape_pipes() -> None:
    results: dict[str, Any] = {"generated": "d", "machine": {}, "benchmarks": [{
        "name": "b", "command": "python -m x --a '1|2'", "doc": "", "measured": "2026-01-01", "status": "exit 1",
        "figures": [{"what": "a | b", "value": 1.0, "unit": "ms", "baseline": None}]}]}
    table = report.render_table(results)
    assert "a \\| b" in table and "'1\\|2'" in table and "**exit 1**" in table
    assert report.render_benchmarks({**results, "benchmarks": [{**results["benchmarks"][0], "figures": []}]}) \
        .count("no figures") == 1
