"""Chat settings, read once from the environment through `Env` (documented in config/example.env)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from config.settings import ConfigError, Env


@dataclass(frozen=True)
class PushSettings:
    url: str | None = None
    secret: str | None = None
    max_attempts: int = 6
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    timeout_s: float = 5.0
    queue_size: int = 10_000
    preview_chars: int = 100

    @property
    def enabled(self) -> bool:
        return self.url is not None


@dataclass(frozen=True)
class ChatSettings:
    max_text: int = 4000
    edit_window_s: float = 900.0
    banned_words: tuple[str, ...] = ()
    banned_patterns: tuple[str, ...] = ()
    moderation_action: str = "reject"
    history_max: int = 100
    sync_page: int = 200
    typing_throttle_s: float = 2.0
    views_linger_s: float = 0.25
    recover_every_s: float = 5.0
    recover_after_s: float = 15.0
    max_report_reason: int = 500
    max_client_id: int = 64
    push: PushSettings = PushSettings()

    @classmethod
    def from_env(cls, env: Env) -> ChatSettings:
        patterns = env.items("PAIRLY_CHAT_BANNED_PATTERNS")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError("PAIRLY_CHAT_BANNED_PATTERNS", f"bad regex {pattern!r}: {exc}") from None
        url = env.text("PAIRLY_PUSH_WEBHOOK_URL")
        secret = env.text("PAIRLY_PUSH_WEBHOOK_SECRET")
        if url is not None:
            if not url.startswith(("http://", "https://")):
                raise ConfigError("PAIRLY_PUSH_WEBHOOK_URL", "must start with http:// or https://")
            if secret is None:
                raise ConfigError("PAIRLY_PUSH_WEBHOOK_SECRET", "is required when PAIRLY_PUSH_WEBHOOK_URL is set")
        push = PushSettings(
            url=url,
            secret=secret,
            max_attempts=env.integer("PAIRLY_PUSH_MAX_ATTEMPTS", PushSettings.max_attempts, min_value=1),
            backoff_s=env.number("PAIRLY_PUSH_BACKOFF_S", PushSettings.backoff_s, min_value=0.001),
            backoff_max_s=env.number("PAIRLY_PUSH_BACKOFF_MAX_S", PushSettings.backoff_max_s, min_value=0.001),
            timeout_s=env.number("PAIRLY_PUSH_TIMEOUT_S", PushSettings.timeout_s, min_value=0.1),
            queue_size=env.integer("PAIRLY_PUSH_QUEUE_SIZE", PushSettings.queue_size, min_value=1),
            preview_chars=env.integer("PAIRLY_PUSH_PREVIEW_CHARS", PushSettings.preview_chars, min_value=0),
        )
        return cls(
            max_text=env.integer("PAIRLY_CHAT_MAX_TEXT", cls.max_text, min_value=1),
            edit_window_s=env.number("PAIRLY_CHAT_EDIT_WINDOW_S", cls.edit_window_s, min_value=0),
            banned_words=tuple(w.lower() for w in env.items("PAIRLY_CHAT_BANNED_WORDS")),
            banned_patterns=patterns,
            moderation_action=env.choice("PAIRLY_CHAT_MODERATION_ACTION", cls.moderation_action, ("reject", "mask")),
            history_max=cls.history_max,
            sync_page=env.integer("PAIRLY_CHAT_SYNC_PAGE", cls.sync_page, min_value=1),
            typing_throttle_s=env.number("PAIRLY_CHAT_TYPING_THROTTLE_S", cls.typing_throttle_s, min_value=0),
            views_linger_s=env.number("PAIRLY_CHAT_VIEWS_LINGER_S", cls.views_linger_s, min_value=0),
            recover_every_s=env.number("PAIRLY_CHAT_VIEWS_MARK_EVERY_S", cls.recover_every_s, min_value=0.1),
            recover_after_s=env.number("PAIRLY_CHAT_VIEWS_STALE_AFTER_S", cls.recover_after_s, min_value=0.5),
            push=push,
        )
