"""make audit's verdict on pip-audit's JSON: vulnerabilities fail, and so does an audit that checked nothing."""

from __future__ import annotations

from tools.audit import OK, UNCHECKED, VULNERABLE, main, summarise

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
