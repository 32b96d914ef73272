"""Chat settings: defaults, and errors that name the variable."""

from __future__ import annotations

import pytest

from config.settings import ConfigError, Env
from server.chat.config import ChatSettings
from server.chat.moderation import NoFilter, make_filter


def test_defaults() -> None:
    s = ChatSettings.from_env(Env({}))
    assert (s.max_text, s.edit_window_s, s.moderation_action, s.push.enabled) == (4000, 900.0, "reject", False)
    assert isinstance(make_filter(s.banned_words, s.banned_patterns, s.moderation_action), NoFilter)


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"PAIRLY_CHAT_MAX_TEXT": "0"}, "PAIRLY_CHAT_MAX_TEXT"),
        ({"PAIRLY_CHAT_EDIT_WINDOW_S": "soon"}, "PAIRLY_CHAT_EDIT_WINDOW_S"),
        ({"PAIRLY_CHAT_MODERATION_ACTION": "shout"}, "PAIRLY_CHAT_MODERATION_ACTION"),
        ({"PAIRLY_CHAT_BANNED_PATTERNS": "(unclosed"}, "PAIRLY_CHAT_BANNED_PATTERNS"),
        ({"PAIRLY_PUSH_WEBHOOK_URL": "ftp://x"}, "PAIRLY_PUSH_WEBHOOK_URL"),
        ({"PAIRLY_PUSH_WEBHOOK_URL": "http://127.0.0.1:1/p"}, "PAIRLY_PUSH_WEBHOOK_SECRET"),
        ({"PAIRLY_PUSH_MAX_ATTEMPTS": "0"}, "PAIRLY_PUSH_MAX_ATTEMPTS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as err:
        ChatSettings.from_env(Env(env))
    assert err.value.var == var


def test_mask_filter() -> None:
    f = make_filter(("darn",), (r"\bcard \d+",), "mask")
    assert f.check("Darn it, card 1234, darned") == "**** it, *********, darned"
