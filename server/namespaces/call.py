"""`/call` namespace. Connect auth and caps come from `BaseNamespace`; events are added by its issue."""

from __future__ import annotations

from server.namespaces.base import BaseNamespace


class CallNamespace(BaseNamespace):
    pass
