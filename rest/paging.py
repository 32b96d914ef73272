"""Query parameters of a newest-first, cursor-paginated listing: `?limit=1..100` (50), `?before=`."""

from __future__ import annotations

from aiohttp import web

from config.errors import InvalidPayload

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
_MAX_CURSOR = 40


def page(request: web.Request) -> tuple[int, str | None]:
    """(limit, before cursor) from the query, or `InvalidPayload` naming what is wrong."""
    raw = request.query.get("limit")
    limit = DEFAULT_LIMIT
    if raw:
        try:
            limit = int(raw)
        except ValueError:
            raise InvalidPayload(f"limit must be an integer 1..{MAX_LIMIT}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidPayload(f"limit must be an integer 1..{MAX_LIMIT}")
    before = request.query.get("before") or None
    if before is not None and len(before) > _MAX_CURSOR:
        raise InvalidPayload("bad cursor")
    return limit, before
