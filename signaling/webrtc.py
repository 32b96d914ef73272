"""Which local addresses aiortc peers gather ICE host candidates on (`PAIRLY_ICE_HOST_ADDRESSES`).

aioice 0.13 has no option for it: `Connection.gather_candidates` calls the module function
`aioice.ice.get_host_addresses`, which lists every interface's address except 127.0.0.1. We wrap
that function once, and the wrapper answers from a context variable when it is set: a peer that sets
its description inside `host_addresses([...])` gathers on exactly those addresses (aiortc gathers in
tasks created from that context, which inherit it), every other peer gathers as aioice would. So
the server pins its probe peers to the configured addresses (127.0.0.1 in tests) and test clients
pin theirs the same way, without touching other users of aioice in the process.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence

import aioice.ice

_pinned: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("pairly_ice_hosts", default=None)
_original: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    pinned = _pinned.get()
    if pinned is None:
        return _original(use_ipv4, use_ipv6)
    return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def install() -> None:
    """Idempotent: route aioice's host-address lookup through the context variable."""
    if aioice.ice.get_host_addresses is not _host_addresses:
        aioice.ice.get_host_addresses = _host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather host candidates on `addresses` (None: aioice's default, every interface but loopback)."""
    install()
    token = _pinned.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _pinned.reset(token)


def machine_addresses() -> list[str]:
    """What aioice would gather on: the default of `PAIRLY_ICE_HOST_ADDRESSES`."""
    return _original(True, True)
