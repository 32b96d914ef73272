"""requirements.lock: generated from pip's resolver report, and kept in step with pyproject.toml."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tools.lock import lock_lines, main

ROOT = Path(__file__).resolve().parents[2]


def item(name: str, version: str) -> dict[str, object]:
    return {"metadata": {"name": name, "version": version}}


def test_lock_lines_pin_everything_but_the_project_sorted_and_normalised() -> None:
    report = {"install": [item("pairly-realtime", "0.1.0"), item("PyYAML", "6.0.3"), item("aiohttp", "3.14.5"),
                          item("typing_extensions", "4.16.0")]}
    assert lock_lines(report) == ["aiohttp==3.14.5", "pyyaml==6.0.3", "typing-extensions==4.16.0"]


def test_main_writes_the_lock_with_a_header(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"pip_version": "26.3", "install": [item("redis", "8.1.0")]}))
    assert main([str(report), str(tmp_path / "lock")]) == 0
    lines = (tmp_path / "lock").read_text().splitlines()
    assert lines[0].startswith("# ") and "make lock" in lines[0] and lines[-1] == "redis==8.1.0"
    assert main([str(report)]) == 2  # usage


def test_the_committed_lock_satisfies_pyproject() -> None:
    """Every direct dependency (runtime and dev) is pinned, inside its range: rerun `make lock` otherwise."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(line.split("==") for line in (ROOT / "requirements.lock").read_text().splitlines()
                if line and not line.startswith("#"))
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} missing from requirements.lock: run `make lock`"
        assert pins[name] in req.specifier, f"{name}=={pins[name]} outside {req.specifier}: run `make lock`"
