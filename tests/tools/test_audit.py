"""make audit's verdict on pip-audit's JSON, and the offline check against a local OSV database: vulnerabilities
fail, and so does an audit that checked nothing."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from tools.audit import OK, UNCHECKED, VULNERABLE, main, range_covers, summarise

CLEAN = {"name": "aiohttp", "version": "3.14.5", "vulns": []}


def test_no_vulnerabilities_passes() -> None:
    code, message = summarise({"dependencies": [CLEAN, {"name": "redis", "version": "8.1.0", "vulns": []}]})
    assert code == OK and "2 locked packages audited" in message


def test_a_vulnerability_fails_with_its_id_and_fix() -> None:
    vuln = {"id": "PYSEC-2024-1", "fix_versions": ["3.9.4"], "aliases": [], "description": "x"}
    code, message = summarise({"dependencies": [CLEAN, {"name": "aiohttp", "version": "3.8.0", "vulns": [vuln]}]})
    assert code == VULNERABLE and "aiohttp 3.8.0: PYSEC-2024-1 (fixed in 3.9.4)" in message


def test_packages_the_service_could_not_look_up_fail_the_audit() -> None:
    # What pip-audit writes when PyPI's JSON API is unreachable: every package skipped, exit status 0.
    skipped = {"name": "redis", "version": "8.1.0",
               "skip_reason": "Dependency not found on PyPI and could not be audited: redis (8.1.0)"}
    code, message = summarise({"dependencies": [CLEAN, skipped], "fixes": []})
    assert code == UNCHECKED and message.startswith("AUDIT NOT DONE: 1 of 2")
    assert summarise({"dependencies": []})[0] == UNCHECKED


def test_without_a_lock_argument_it_refuses() -> None:
    assert main([]) == UNCHECKED


# --- offline mode: requirements.lock against a local OSV database (--osv-dir) -----------------------------------

def stamp(days_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(vid: str, package: str, *, ranges: list[list[dict[str, str]]] | None = None,
           versions: list[str] | None = None, aliases: list[str] | None = None, days_ago: int = 3,
           ecosystem: str = "PyPI", **extra: Any) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"name": package, "ecosystem": ecosystem}}
    if ranges is not None:
        affected["ranges"] = [{"type": "GIT", "repo": "https://example.invalid/x",
                               "events": [{"introduced": "0"}, {"fixed": "abc123"}]}]
        affected["ranges"] += [{"type": "ECOSYSTEM", "events": events} for events in ranges]
    if versions is not None:
        affected["versions"] = versions
    return {"id": vid, "aliases": aliases or [], "modified": stamp(days_ago), "affected": [affected], **extra}


def database(tmp_path: Path, *records: dict[str, Any]) -> Path:
    """The PyPA advisory-database layout: vulns/<package>/<ID>.yaml."""
    for rec in records:
        folder = tmp_path / "db" / "vulns" / rec["affected"][0]["package"]["name"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{rec['id']}.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))
    return tmp_path / "db"


def audit(tmp_path: Path, db: Path, pins: list[str], *extra: str) -> int:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header comment\n" + "".join(f"{pin}\n" for pin in pins))
    return main([str(lock), "--osv-dir", str(db), *extra])


# A database mirroring real shapes: PYSEC record with a GHSA alias, several fixed branches, a list-only record.
ADVISORIES = [
    record("PYSEC-2099-1", "demo-pkg", ranges=[[{"introduced": "1.0"}, {"fixed": "1.5"}]],
           aliases=["CVE-2099-0001", "GHSA-aaaa-bbbb-cccc"]),
    record("PYSEC-2099-2", "listed", versions=["2.0.0", "2.0.1"]),
    # Two affected windows in one range, events deliberately not in version order.
    record("PYSEC-2099-3", "twowin", ranges=[[{"fixed": "2.3"}, {"introduced": "2.0"}, {"fixed": "1.2"},
                                              {"introduced": "0"}]]),
    record("PYSEC-2099-4", "lastaff", ranges=[[{"introduced": "3.0"}, {"last_affected": "3.2"}]]),
    record("GHSA-zzzz-0000-npm1", "demo-pkg", ranges=[[{"introduced": "0"}]], ecosystem="npm"),
]


@pytest.mark.parametrize(("pin", "expected"), [
    ("Demo_Pkg==1.2", "Demo_Pkg 1.2: PYSEC-2099-1 (aliases: CVE-2099-0001, GHSA-aaaa-bbbb-cccc) (fixed in 1.5)"),
    ("listed==2.0.1", "listed 2.0.1: PYSEC-2099-2"),
    ("twowin==1.1", "twowin 1.1: PYSEC-2099-3 (fixed in 1.2, 2.3)"),
    ("twowin==2.1", "twowin 2.1: PYSEC-2099-3 (fixed in 2.3)"),
    ("lastaff==3.2", "lastaff 3.2: PYSEC-2099-4 (fixed in no release listed)"),
])
def test_a_covered_version_is_a_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str], pin: str,
                                        expected: str) -> None:
    db = database(tmp_path, *ADVISORIES)
    assert audit(tmp_path, db, ["aiohttp==3.14.5", pin]) == VULNERABLE
    out = capsys.readouterr().out
    assert "1 known vulnerabilities" in out and expected in out


@pytest.mark.parametrize("pin", [
    "demo-pkg==1.5",     # the fixed release
    "demo-pkg==0.9",     # before `introduced`
    "listed==2.0.2",     # not in the explicit list
    "twowin==1.2",       # first window fixed ...
    "twowin==1.9",       # ... and the gap before the second one
    "twowin==2.3",
    "lastaff==3.2.1",    # just after last_affected
    "lastaff==2.9",
])
def test_a_version_outside_every_window_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 pin: str) -> None:
    db = database(tmp_path, *ADVISORIES)
    assert audit(tmp_path, db, [pin]) == OK
    out = capsys.readouterr().out
    assert "1 locked packages checked against 5 advisories" in out and "STALE" not in out


def test_range_walk_follows_osv_event_order() -> None:
    events = [{"introduced": "2.0"}, {"fixed": "1.2"}, {"introduced": "0"}, {"fixed": "2.3"}]
    versions = ("0.1", "1.1", "1.2", "1.9", "2.0", "2.2.9", "2.3", "3.0")
    covered = [v for v in versions if range_covers(Version(v), events)]
    assert covered == ["0.1", "1.1", "2.0", "2.2.9"]
    assert range_covers(Version("9.0"), [{"introduced": "1.0"}])  # no fix: everything since
    assert not range_covers(Version("1.0"), [{"fixed": "2.0"}])  # a fix without an introduction covers nothing
    limited = [{"introduced": "0"}, {"limit": "2.0"}]  # `limit`: nothing at or above it is covered
    assert range_covers(Version("1.9"), limited) and not range_covers(Version("2.0"), limited)


def test_only_pypi_records_of_that_package_match(tmp_path: Path) -> None:
    # The npm entries for "demo-pkg" cover every version; they must not apply to the PyPI package.
    mixed = record("GHSA-zzzz-0000-mix1", "demo-pkg", ranges=[[{"introduced": "9.0"}]])
    mixed["affected"].append({"package": {"name": "demo-pkg", "ecosystem": "npm"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]})
    db = database(tmp_path, *ADVISORIES, mixed)
    assert audit(tmp_path, db, ["demo-pkg==1.6", "other==1.2"]) == OK
    assert audit(tmp_path, db, ["demo-pkg==9.1"]) == VULNERABLE


def test_ignore_vuln_matches_an_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = database(tmp_path, *ADVISORIES)
    assert audit(tmp_path, db, ["demo-pkg==1.2"], "--ignore-vuln", "GHSA-aaaa-bbbb-cccc") == OK
    assert "1 ignored (--ignore-vuln)" in capsys.readouterr().out
    assert audit(tmp_path, db, ["demo-pkg==1.2"], "--ignore-vuln", "CVE-2099-9999") == VULNERABLE


def test_one_vulnerability_under_two_ids_is_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twin = record("GHSA-aaaa-bbbb-cccc", "demo-pkg", ranges=[[{"introduced": "0"}, {"fixed": "1.5"}]],
                  aliases=["CVE-2099-0001"])
    db = database(tmp_path, *ADVISORIES, twin)
    assert audit(tmp_path, db, ["demo-pkg==1.2"]) == VULNERABLE
    out = capsys.readouterr().out
    assert "1 known vulnerabilities" in out and "GHSA-aaaa-bbbb-cccc" in out


def test_json_records_and_withdrawn_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = database(tmp_path, *ADVISORIES)
    (db / "vulns" / "jsonpkg").mkdir()
    (db / "vulns" / "jsonpkg" / "PYSEC-2099-7.json").write_text(
        json.dumps(record("PYSEC-2099-7", "jsonpkg", ranges=[[{"introduced": "0"}, {"fixed": "4.0"}]])))
    gone = record("PYSEC-2099-8", "demo-pkg", ranges=[[{"introduced": "0"}]], withdrawn=stamp(1))
    database(tmp_path, gone)
    assert audit(tmp_path, db, ["jsonpkg==3.9", "demo-pkg==2.0"]) == VULNERABLE
    out = capsys.readouterr().out
    assert "jsonpkg 3.9: PYSEC-2099-7" in out and "PYSEC-2099-8" not in out and "1 withdrawn" in out


def test_a_stale_database_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = database(tmp_path, record("PYSEC-2000-1", "old", versions=["1.0"], days_ago=120),
                  record("PYSEC-2000-2", "old", versions=["1.1"], days_ago=95))
    assert audit(tmp_path, db, ["old==2.0"]) == OK
    out = capsys.readouterr().out
    newest = (datetime.now(UTC) - timedelta(days=95)).date().isoformat()
    assert f"newest entry modified {newest}" in out and "WARNING: STALE DATABASE" in out


def test_a_fresh_database_is_not_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = database(tmp_path, record("PYSEC-2000-1", "old", versions=["1.0"], days_ago=400),
                  record("PYSEC-2000-2", "old", versions=["1.1"], days_ago=80))
    assert audit(tmp_path, db, ["old==2.0"]) == OK
    assert "STALE" not in capsys.readouterr().out


def test_no_database_means_no_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit(tmp_path, tmp_path / "missing", ["demo-pkg==1.2"]) == UNCHECKED
    assert "AUDIT NOT DONE" in capsys.readouterr().out
    (tmp_path / "empty" / "vulns").mkdir(parents=True)
    assert audit(tmp_path, tmp_path / "empty", ["demo-pkg==1.2"]) == UNCHECKED
    (tmp_path / "notosv" / "x").mkdir(parents=True)
    (tmp_path / "notosv" / "x" / "compose.yaml").write_text("services: {}\n")
    assert audit(tmp_path, tmp_path / "notosv", ["demo-pkg==1.2"]) == UNCHECKED


def test_an_unreadable_record_makes_the_audit_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = database(tmp_path, *ADVISORIES)
    (db / "vulns" / "demo-pkg" / "PYSEC-2099-9.yaml").write_text("id: [unterminated\n")
    assert audit(tmp_path, db, ["demo-pkg==1.6"]) == UNCHECKED
    assert "PYSEC-2099-9.yaml" in capsys.readouterr().out


def test_without_osv_dir_it_still_runs_pip_audit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ConnectionError: unreachable")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert main(["requirements.lock", "--ignore-vuln", "X-1"]) == UNCHECKED
    assert calls and calls[0][1:7] == ["-m", "pip_audit", "-r", "requirements.lock", "--ignore-vuln", "X-1"]
