"""Request bodies: read (size cap, JSON object, valid Unicode) and validated against the JSON Schema
their route publishes in the OpenAPI document — every REST route with a body uses `body()`.

One mechanism: a route's `requestBody` schema, given to `rest.openapi.describe`, is both what
`/api/openapi.json` shows and what `body()` checks, so the two cannot drift. The checker covers the
subset of JSON Schema the admin routes use (type, required, properties, additionalProperties,
enum, minLength/maxLength, minProperties, minimum/maximum, pattern, items, format date-time) and answers the first
problem as `invalid_payload` naming the field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from aiohttp import web

from config.errors import InvalidPayload
from rest.openapi import request_schema

Doc = dict[str, Any]

MAX_BODY_BYTES = 16 * 1024

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,),
    "array": (list,), "null": (type(None),),
}


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or InvalidPayload."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise InvalidPayload("body too large")
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidPayload("body too large")
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidPayload("body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidPayload("body must be a JSON object")
    try:  # "\ud800" is valid JSON but not storable: refuse it here, not at the store
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidPayload("strings must be valid Unicode (no lone surrogates)") from None
    return body


async def body(request: web.Request) -> Doc:
    """The request's JSON object body, validated against its route's published schema."""
    route = request.match_info.route.resource
    path = route.canonical if route is not None else request.path
    schema = request_schema(request.method, path)
    raw = await request.read()
    data: Doc = await read_json(request) if raw or schema is None else {}
    if schema is not None:
        check(schema, data, "body")
    return data


def check(schema: Doc, value: Any, where: str) -> None:
    """Raise InvalidPayload naming `where` when `value` does not satisfy `schema`."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is(value, n) for n in names):
            raise InvalidPayload(f"{where} must be {' or '.join(names)}")
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidPayload(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        _check_string(schema, value, where)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidPayload(f"{where} must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidPayload(f"{where} must be <= {schema['maximum']}")
    elif isinstance(value, dict):
        _check_object(schema, value, where)
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidPayload(f"{where} has more than {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise InvalidPayload(f"{where} needs at least {schema['minItems']} items")
        for n, item in enumerate(value):
            if "items" in schema:
                check(schema["items"], item, f"{where}[{n}]")


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES.get(name, (object,)))


def _check_string(schema: Doc, value: str, where: str) -> None:
    if "minLength" in schema and len(value.strip()) < schema["minLength"]:
        raise InvalidPayload(f"{where} must have at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise InvalidPayload(f"{where} must have at most {schema['maxLength']} characters")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        raise InvalidPayload(f"{where} must match {schema['pattern']}")
    if schema.get("format") == "date-time":
        parse_time(value, where)


def _check_object(schema: Doc, value: Doc, where: str) -> None:
    if len(value) < schema.get("minProperties", 0):
        raise InvalidPayload(f"{where} needs at least {schema['minProperties']} field(s)")
    for name in schema.get("required", ()):
        if name not in value:
            raise InvalidPayload(f"{where}.{name} is required")
    props: Doc = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(value) - set(props))
        if unknown:
            raise InvalidPayload(f"{where}: unknown fields {', '.join(unknown)}")
    for name, sub in props.items():
        if name in value:
            check(sub, value[name], f"{where}.{name}")


def parse_time(value: str, where: str) -> dt.datetime:
    """An ISO 8601 time (UTC when it has no offset), or InvalidPayload naming `where`."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidPayload(f"{where} must be an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
