"""`/chat` namespace. Connect auth and caps come from `BaseNamespace`; events are added by its issue."""

from __future__ import annotations

from server.namespaces.base import BaseNamespace


class ChatNamespace(BaseNamespace):
    pass
