"""`make audit`: pip-audit over requirements.lock, failing loudly when nothing could be checked.

pip-audit reports a package it cannot look up as skipped ("not found on PyPI") and still exits 0
with "No known vulnerabilities found". Here a skipped package fails the audit: it means the
vulnerability service (PyPI's JSON API) was not reachable, and a pass would be a lie.

    python -m tools.audit requirements.lock [--ignore-vuln ID ...]

Offline, where that service is unreachable: the lock against a local copy of an OSV advisory
database (the PyPA advisory database layout, `vulns/<package>/<ID>.yaml`; `.json` records too).
Same statuses; it also prints the database's freshness and warns when it is stale.

    python -m tools.audit requirements.lock --osv-dir DIR [--ignore-vuln ID ...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from tools.lock import normalise

OK, VULNERABLE, UNCHECKED = 0, 1, 2


def summarise(result: dict[str, Any]) -> tuple[int, str]:
    """Exit status and message for pip-audit's JSON (`-f json`)."""
    deps = result.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    if not deps or skipped:
        first = skipped[0]["skip_reason"] if skipped else "no dependencies in the report"
        return UNCHECKED, (f"AUDIT NOT DONE: {len(skipped)} of {len(deps)} locked packages could not be checked "
                           f"({first}). The vulnerability service (https://pypi.org/pypi/<name>/<version>/json) is "
                           "not reachable from this machine; run `make audit` where it is (docs/dependencies.md).")
    found = [(d["name"], d["version"], v) for d in deps for v in d.get("vulns", [])]
    if found:
        lines = [f"  {name} {version}: {v['id']} (fixed in {', '.join(v.get('fix_versions', [])) or 'no release'})"
                 for name, version, v in found]
        return VULNERABLE, "\n".join([f"{len(found)} known vulnerabilities (accept one only with a reason in "
                                      "docs/dependencies.md and AUDIT_IGNORE):", *lines])
    return OK, f"{len(deps)} locked packages audited: no known vulnerabilities"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return UNCHECKED
    if any(arg == "--osv-dir" or arg.startswith("--osv-dir=") for arg in argv):
        return main_offline(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        # --no-deps: the lock is already the full, exactly pinned set; nothing to resolve.
        cmd = [sys.executable, "-m", "pip_audit", "-r", argv[0], *argv[1:], "--no-deps",
               "--progress-spinner", "off", "-f", "json", "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"AUDIT NOT DONE: pip-audit failed ({tail[0]}); is the vulnerability service reachable?")
            return UNCHECKED
        code, message = summarise(json.loads(out.read_text()))
    print(message)
    return code


# --- Offline mode: the lock against a local copy of an OSV advisory database -------------------------------------

STALE_AFTER_DAYS = 90
_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def read_lock(text: str) -> list[tuple[str, str]]:
    """(name, version) for every `name==version` line; anything else that is not a comment is an error."""
    pins = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LOCK_LINE.match(line)
        if match is None:
            raise ValueError(f"not an exact `name==version` pin: {line!r}")
        pins.append((match[1], match[2]))
    return pins


@dataclass
class Advisory:
    id: str
    aliases: list[str]
    affected: list[dict[str, Any]]
    withdrawn: bool = False


@dataclass
class Database:
    advisories: list[Advisory] = field(default_factory=list)
    files: int = 0
    unreadable: list[str] = field(default_factory=list)
    newest_modified: datetime | None = None


def _parse_time(value: object) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _parse_record(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        # Every scalar as a string: an unquoted version such as 1.10 must not become the float 1.1.
        data = yaml.load(text, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ValueError("not an OSV record (no `id`)")
    if not isinstance(data.get("affected", []), list):
        raise ValueError("`affected` is not a list")
    return data


def load_database(osv_dir: Path) -> Database:
    """Every OSV record (`.yaml`, `.yml`, `.json`) in DIR/vulns/<package>/ (or DIR/<package>/ without `vulns/`)."""
    root = osv_dir / "vulns" if (osv_dir / "vulns").is_dir() else osv_dir
    db = Database()
    paths = (p for pattern in ("*", "*/*") for p in root.glob(pattern))
    for path in sorted(p for p in paths if p.suffix in (".yaml", ".yml", ".json") and p.is_file()):
        db.files += 1
        try:
            data = _parse_record(path)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            db.unreadable.append(f"{path.relative_to(osv_dir)} ({str(exc).splitlines()[0] if str(exc) else exc})")
            continue
        aliases = [str(a) for a in data.get("aliases") or [] if a]
        withdrawn = str(data.get("withdrawn") or "").strip() not in ("", "null", "~")
        db.advisories.append(Advisory(data["id"], aliases, [a for a in data.get("affected") or []
                                                            if isinstance(a, dict)], withdrawn))
        modified = _parse_time(data.get("modified"))
        if modified and (db.newest_modified is None or modified > db.newest_modified):
            db.newest_modified = modified
    return db


def _event_key(event: tuple[str, str]) -> tuple[int, Version]:
    kind, value = event
    # `introduced: "0"` is before every version, pre-releases of 0 included.
    return (0, Version("0")) if kind == "introduced" and value == "0" else (1, Version(value))


def range_covers(version: Version, events: list[dict[str, Any]]) -> bool:
    """OSV's evaluation of an ECOSYSTEM range: events sorted by version, walked, the last one that applies wins.

    Raises InvalidVersion when an event's version is not PEP 440 (the range cannot be evaluated).
    """
    pairs = [(kind, str(value)) for event in events if isinstance(event, dict) for kind, value in event.items()]
    limits = [value for kind, value in pairs if kind == "limit"]
    if limits and not any(limit == "*" or version < Version(limit) for limit in limits):
        return False
    affected = False
    for kind, value in sorted((p for p in pairs if p[0] in ("introduced", "fixed", "last_affected")), key=_event_key):
        if kind == "introduced":
            affected = affected or value == "0" or version >= Version(value)
        elif kind == "fixed":
            affected = affected and version < Version(value)
        else:  # last_affected: inclusive
            affected = affected and version <= Version(value)
    return affected


def _fixed_after(version: Version | None, ranges: list[Any]) -> list[str]:
    fixed = {str(value) for r in ranges if isinstance(r, dict) and r.get("type") == "ECOSYSTEM"
             for event in r.get("events") or [] if isinstance(event, dict)
             for kind, value in event.items() if kind == "fixed"}
    out = []
    for value in fixed:
        try:
            if version is None or Version(value) > version:
                out.append(value)
        except InvalidVersion:
            out.append(value)
    return sorted(out, key=_version_order)


def _valid(value: str) -> bool:
    try:
        Version(value)
    except InvalidVersion:
        return False
    return True


def _version_order(value: str) -> tuple[int, Version, str]:
    return (0, Version(value), value) if _valid(value) else (1, Version("0"), value)


@dataclass
class Finding:
    package: str
    version: str
    id: str
    aliases: list[str]
    fixed: list[str]

    def names(self) -> set[str]:
        return {n.casefold() for n in (self.id, *self.aliases)}

    def line(self) -> str:
        aliases = f" (aliases: {', '.join(self.aliases)})" if self.aliases else ""
        return (f"  {self.package} {self.version}: {self.id}{aliases} "
                f"(fixed in {', '.join(self.fixed) or 'no release listed'})")


def match(name: str, version: str, advisory: Advisory) -> tuple[bool, list[str], str | None]:
    """(affected?, fixed versions above it, why it could not be evaluated or None) for one locked pin."""
    try:
        parsed: Version | None = Version(version)
    except InvalidVersion:
        parsed = None
    hit, problem = False, None
    ranges: list[Any] = []
    for entry in advisory.affected:
        package = entry.get("package") or {}
        if not isinstance(package, dict) or package.get("ecosystem") != "PyPI" \
                or normalise(str(package.get("name", ""))) != normalise(name):
            continue
        ranges += entry.get("ranges") or []
        for listed in entry.get("versions") or []:
            listed = str(listed)
            if listed == version or (parsed is not None and _valid(listed) and Version(listed) == parsed):
                hit = True
        for r in entry.get("ranges") or []:
            if not isinstance(r, dict) or r.get("type") != "ECOSYSTEM":
                continue  # GIT ranges name commits; their versions are in `versions`
            try:
                if parsed is None:
                    raise InvalidVersion(f"locked version {version!r} is not PEP 440")
                hit = range_covers(parsed, r.get("events") or []) or hit
            except InvalidVersion as exc:
                problem = str(exc)
    return hit, _fixed_after(parsed, ranges) if hit else [], None if hit else problem


def audit_offline(pins: list[tuple[str, str]], db: Database, ignore: list[str], osv_dir: Path,
                  today: date) -> tuple[int, str]:
    """Exit status and report for the lock against a loaded OSV database."""
    head = [f"offline audit against {osv_dir}: {db.files} advisory files read"
            + (f", {len(db.unreadable)} unreadable" if db.unreadable else "")]
    parsed = len(db.advisories)
    if db.files == 0 or parsed == 0:
        why = "no OSV files (*.yaml, *.json) found" if db.files == 0 else "no file could be parsed as an OSV record"
        return UNCHECKED, "\n".join([*head, *(f"  unreadable: {u}" for u in db.unreadable[:5]),
                                     f"AUDIT NOT DONE: {osv_dir} is not an OSV advisory database ({why})."])
    if db.newest_modified is None:
        head.append("WARNING: FRESHNESS UNKNOWN: no `modified` timestamp in any file; the database may be stale.")
    else:
        newest = db.newest_modified.astimezone(UTC)
        age = (today - newest.date()).days
        head.append(f"database freshness: newest entry modified {newest.isoformat(timespec='seconds')} "
                    f"({age} days before {today.isoformat()})")
        if age > STALE_AFTER_DAYS:
            head.append(f"WARNING: STALE DATABASE: the newest advisory is {age} days old (over "
                        f"{STALE_AFTER_DAYS}). Advisories published after {newest.date().isoformat()} are not in "
                        "it: a clean result only shows that none published before that date applies.")
    live = [a for a in db.advisories if not a.withdrawn]
    if len(live) < parsed:
        head.append(f"{parsed - len(live)} withdrawn advisories not applied")
    if not pins:
        return UNCHECKED, "\n".join([*head, "AUDIT NOT DONE: the lock pins no packages."])
    by_package: dict[str, list[Advisory]] = {}
    for advisory in live:
        for key in {normalise(str(entry["package"].get("name", ""))) for entry in advisory.affected
                    if isinstance(entry.get("package"), dict) and entry["package"].get("ecosystem") == "PyPI"}:
            by_package.setdefault(key, []).append(advisory)
    all_findings: list[Finding] = []
    problems = []
    for name, version in pins:
        mine: list[Finding] = []
        for advisory in by_package.get(normalise(name), []):
            hit, fixed, problem = match(name, version, advisory)
            if problem:
                problems.append(f"  {name} {version}: {advisory.id} ({problem})")
            if not hit:
                continue
            finding = Finding(name, version, advisory.id, advisory.aliases, fixed)
            same = next((f for f in mine if f.names() & finding.names()), None)
            if same is None:
                mine.append(finding)
            else:  # one vulnerability recorded under several ids (e.g. a PYSEC and a GHSA file)
                extra = [n for n in (finding.id, *finding.aliases) if n.casefold() not in same.names()]
                same.aliases = [*same.aliases, *extra]
                same.fixed = sorted(set(same.fixed) | set(finding.fixed), key=_version_order)
        all_findings += mine
    ignored = {i.casefold() for i in ignore}
    found = [f for f in all_findings if not f.names() & ignored]
    skipped = [f for f in all_findings if f.names() & ignored]
    lines = head
    if found:
        lines += [f"{len(found)} known vulnerabilities (accept one only with a reason in docs/dependencies.md and "
                  "AUDIT_IGNORE):", *(f.line() for f in found)]
    if skipped:
        lines += [f"{len(skipped)} ignored (--ignore-vuln):", *(f.line() for f in skipped)]
    if db.unreadable or problems:
        more = [f"  ... and {len(db.unreadable) - 10} more"] if len(db.unreadable) > 10 else []
        lines += [*(f"  unreadable: {u}" for u in db.unreadable[:10]), *more, *problems,
                  f"AUDIT NOT DONE: {len(db.unreadable)} advisory files unreadable, {len(problems)} advisories "
                  "for locked packages could not be evaluated; the audit is incomplete."]
        return UNCHECKED, "\n".join(lines)
    if found:
        return VULNERABLE, "\n".join(lines)
    concern = len({a.id for name, _ in pins for a in by_package.get(normalise(name), [])})
    lines.append(f"{len(pins)} locked packages checked against {len(live)} advisories ({concern} of them name a "
                 "locked package): no known vulnerabilities in this database")
    return OK, "\n".join(lines)


def main_offline(argv: list[str], today: date | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.audit", description="offline audit (--osv-dir)")
    parser.add_argument("lock", type=Path)
    parser.add_argument("--osv-dir", type=Path, required=True)
    parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID")
    args = parser.parse_args(argv)
    if not args.osv_dir.is_dir():
        print(f"AUDIT NOT DONE: advisory database {args.osv_dir} is not a directory.")
        return UNCHECKED
    try:
        pins = read_lock(args.lock.read_text())
    except (OSError, ValueError) as exc:
        print(f"AUDIT NOT DONE: cannot read {args.lock}: {exc}")
        return UNCHECKED
    code, message = audit_offline(pins, load_database(args.osv_dir), args.ignore_vuln, args.osv_dir,
                                  today or datetime.now(UTC).date())
    print(message)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
