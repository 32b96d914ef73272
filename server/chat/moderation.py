"""Pluggable text moderation applied before a message (or an edit) is stored.

A filter returns the text to store (possibly masked) or raises `InvalidPayload` with a reason.
The default is a configurable word list plus regular expressions; another implementation (a
classifier service, say) only needs the same `check` method.
"""

from __future__ import annotations

import re
from typing import Protocol

from config.errors import InvalidPayload


class TextFilter(Protocol):
    def check(self, text: str) -> str: ...


class NoFilter:
    def check(self, text: str) -> str:
        return text


class WordListFilter:
    """Case-insensitive whole-word matches of `words`, plus any match of `patterns`.

    `action="reject"` refuses the text (`invalid_payload`, reason "message rejected by moderation");
    `action="mask"` replaces every match with asterisks of the same length.
    """

    def __init__(self, words: tuple[str, ...], patterns: tuple[str, ...], action: str = "reject") -> None:
        parts = [rf"(?<!\w){re.escape(w)}(?!\w)" for w in words if w]
        parts += [f"(?:{p})" for p in patterns if p]
        self._re = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self._mask = action == "mask"

    def check(self, text: str) -> str:
        if self._re is None:
            return text
        if self._mask:
            return self._re.sub(lambda m: "*" * len(m.group(0)), text)
        if self._re.search(text) is not None:
            raise InvalidPayload("message rejected by moderation", reason="moderation")
        return text


def make_filter(words: tuple[str, ...], patterns: tuple[str, ...], action: str) -> TextFilter:
    if not words and not patterns:
        return NoFilter()
    return WordListFilter(words, patterns, action)
