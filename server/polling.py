"""HTTP long-polling bodies, read whole or refused at once.

Two defects of the long-polling POST path as python-engineio's aiohttp driver runs it:
- a body declared larger than the frame limit raises inside engineio, which then tries to close the
  session and waits on it: the request is never answered and its memory is never freed (an
  unauthenticated client could grow the process at will). `oversized_polling_refusal` answers such a
  POST with 413 before engineio sees it, without reading the body;
- a body within the limit is read with `StreamReader.read(n)`, which returns whatever has arrived —
  part of a large body — so a 0.5 to 1 MB packet failed to decode. `read_polling_bodies_whole` wraps the
  driver's request translation so engineio reads exactly the declared length.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

log = structlog.get_logger(__name__)


class _ExactBody:
    """What engineio reads a POST body from: exactly `n` bytes, however they arrive."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data: bytes = await self._stream.read()
            return data
        exact: bytes = await self._stream.readexactly(n)
        return exact


def read_polling_bodies_whole(eio: Any) -> None:
    """Wrap the engineio server's request translation (aiohttp driver) to read bodies exactly."""
    translate: Callable[..., dict[str, Any]] = eio._async["translate_request"]

    def translate_exact(*args: Any, **kwargs: Any) -> dict[str, Any]:
        environ = translate(*args, **kwargs)
        body = environ.get("wsgi.input")
        if environ.get("REQUEST_METHOD") == "POST" and body is not None and not isinstance(body, _ExactBody):
            environ["wsgi.input"] = _ExactBody(body)
        return environ

    # The driver table is shared by every engineio server in the process: replace it, don't mutate it.
    eio._async = {**eio._async, "translate_request": translate_exact}


async def _answer(response: web.StreamResponse) -> web.StreamResponse:
    return response


def oversized_polling_refusal(max_bytes: int, path: str = "/socket.io") -> Callable[..., Awaitable[Any]]:
    """aiohttp middleware: a polling POST declaring more than `max_bytes` gets 413 at once."""

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.method == "POST" and request.path.startswith(path):
            declared = request.content_length
            if declared is None and request.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return _answer(web.Response(status=411, text="Content-Length required"))
            if declared is not None and declared > max_bytes:
                log.info("polling_body_too_large", declared=declared, limit=max_bytes)
                response = web.Response(status=413, text="payload too large")
                response.force_close()  # the unread body is dropped with the connection
                return _answer(response)
        # Handed on, not awaited here: a WebSocket lives inside this call for hours and an awaiting
        # middleware's frame with it (docs/memory.md).
        return handler(request)

    return middleware
