"""The BENCH-JSON line every benchmark prints: round trip, NaN as null, schema errors named."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from loadtests.benchjson import PREFIX, Figure, command_line, emit, parse, validate


def test_emit_round_trips_through_parse(capsys: pytest.CaptureFixture[str]) -> None:
    print("ordinary output stays as it was")
    emit("bench_x", [Figure("rate", 12.5, "msg/s", 50.0, "bare", "n"), Figure("p99", float("nan"), "ms")],
         doc="docs/x.md", argv=["--pairs", "2"])
    entries = parse(capsys.readouterr().out)
    assert entries == [{
        "name": "bench_x", "command": ".venv/bin/python -m loadtests.bench_x --pairs 2", "doc": "docs/x.md",
        "figures": [
            {"what": "rate", "value": 12.5, "unit": "msg/s", "baseline": 50.0, "baseline_what": "bare", "note": "n"},
            {"what": "p99", "value": None, "unit": "ms", "baseline": None, "baseline_what": "", "note": ""},
        ],
    }]


def test_command_line_quotes_arguments() -> None:
    assert command_line("bench_probe", ["--probes", "0,5", "--x", "a b"]) == \
        ".venv/bin/python -m loadtests.bench_probe --probes 0,5 --x 'a b'"


GOOD: dict[str, Any] = {"name": "b", "command": "c", "figures": [{"what": "w", "value": 1, "unit": "u"}]}


@pytest.mark.parametrize(("patch", "field"), [
    ({"name": ""}, "name"),
    ({"command": 3}, "command"),
    ({"figures": {}}, "figures"),
    ({"figures": [{"what": "w", "value": "1", "unit": "u"}]}, "figures[0].value"),
    ({"figures": [{"what": "w", "value": True, "unit": "u"}]}, "figures[0].value"),
    ({"figures": [{"what": "w", "value": 1, "unit": "u", "baseline": "x"}]}, "figures[0].baseline"),
    ({"figures": [{"value": 1, "unit": "u"}]}, "figures[0].what"),
])
def test_validate_names_the_field_at_fault(patch: dict[str, Any], field: str) -> None:
    assert validate(GOOD) is GOOD
    with pytest.raises(ValueError, match="^" + re.escape(field)):
        validate({**GOOD, **patch})


def test_parse_rejects_a_malformed_line() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse(PREFIX + "{not json")
    with pytest.raises(ValueError, match=r"^figures"):
        parse(PREFIX + json.dumps({"name": "b", "command": "c"}))
