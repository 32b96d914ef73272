"""Source-level checks that hold for every supported Python, also the ones CI does not run.

Python 3.13 cleans docstrings at compile time and cannot encode a lone surrogate written as an escape
in one: `server/namespaces/base.py` once failed to import there because a docstring said "\\ud800"
with one backslash. This finds such docstrings on any Python version.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "rest", "billing", "signaling", "config", "loadtests", "tools", "tests")


def _docstrings(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                found.append((getattr(node, "lineno", 1), doc))
    return found


def test_no_docstring_holds_a_lone_surrogate() -> None:
    bad = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, doc in _docstrings(ast.parse(path.read_text(encoding="utf-8"))):
                if any(0xD800 <= ord(ch) <= 0xDFFF for ch in doc):
                    bad.append(f"{path.relative_to(ROOT)}:{line}")
    assert bad == [], f"docstrings with a lone surrogate (write the escape as \\\\uXXXX): {bad}"
