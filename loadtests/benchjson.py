"""The common result schema every `bench_*.py` prints as one `BENCH-JSON {...}` line at its end.

A line on stdout (rather than a `--json PATH` option) keeps each script's options as they were and
lets `run_all` collect the figures from the output it streams anyway. Schema of one benchmark:
`{"name", "command", "doc", "figures": [{"what", "value", "unit", "baseline", "baseline_what", "note"}]}`
where `baseline` is the same-run reference figure (in `unit`) or null when there is none.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

PREFIX = "BENCH-JSON "


@dataclass(frozen=True)
class Figure:
    what: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_what: str = ""
    note: str = ""


def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run, as a user types it from the repository root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", "-m", f"loadtests.{name}", *args])


def emit(name: str, figures: Sequence[Figure], *, doc: str = "", argv: Sequence[str] | None = None) -> None:
    entry = {"name": name, "command": command_line(name, argv), "doc": doc,
             "figures": [_clean(asdict(f)) for f in figures]}
    print(PREFIX + json.dumps(validate(entry)), flush=True)


def _clean(figure: dict[str, Any]) -> dict[str, Any]:
    # NaN is not JSON: a figure a run could not measure is reported as null.
    for key in ("value", "baseline"):
        value = figure[key]
        if value is not None and not math.isfinite(value):
            figure[key] = None
    return figure


def parse(output: str) -> list[dict[str, Any]]:
    """Every benchmark entry printed in `output`, validated."""
    return [validate(json.loads(line[len(PREFIX):])) for line in output.splitlines() if line.startswith(PREFIX)]


def validate(entry: Any) -> dict[str, Any]:
    """Check one entry against the schema; ValueError names the first field at fault."""
    if not isinstance(entry, dict):
        raise ValueError("entry: not an object")
    for key in ("name", "command"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ValueError(f"{key}: missing or not a string")
    if not isinstance(entry.get("doc", ""), str):
        raise ValueError("doc: not a string")
    figures = entry.get("figures")
    if not isinstance(figures, list):
        raise ValueError("figures: not a list")
    for i, figure in enumerate(figures):
        if not isinstance(figure, dict):
            raise ValueError(f"figures[{i}]: not an object")
        for key in ("what", "unit"):
            if not isinstance(figure.get(key), str):
                raise ValueError(f"figures[{i}].{key}: not a string")
        for key in ("baseline_what", "note"):
            if not isinstance(figure.get(key, ""), str):
                raise ValueError(f"figures[{i}].{key}: not a string")
        for key in ("value", "baseline"):
            value = figure.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"figures[{i}].{key}: not a number or null")
    return entry
