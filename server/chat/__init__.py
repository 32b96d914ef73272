"""Metered 1:1 chat: domain logic and storage, free of any transport (see docs/chat.md)."""
