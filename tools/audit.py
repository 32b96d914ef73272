"""`make audit`: pip-audit over requirements.lock, failing loudly when nothing could be checked.

pip-audit reports a package it cannot look up as skipped ("not found on PyPI") and still exits 0
with "No known vulnerabilities found". Here a skipped package fails the audit: it means the
vulnerability service (PyPI's JSON API) was not reachable, and a pass would be a lie.

    python -m tools.audit requirements.lock [--ignore-vuln ID ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
