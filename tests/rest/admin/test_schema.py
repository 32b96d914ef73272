"""The request-body checker admin routes share: each rule of the published schema is enforced, and
bad settings of the admin features stop start-up naming the variable."""

from __future__ import annotations

import pytest

from config.errors import InvalidPayload
from config.settings import ConfigError
from rest.schema import check
from server.app import create_app
from tests.support.apps import make_settings

SCHEMA = {"type": "object", "required": ["n"], "additionalProperties": False, "properties": {
    "n": {"type": "integer", "minimum": 1, "maximum": 5}, "s": {"type": "string", "minLength": 2, "maxLength": 4},
    "e": {"enum": ["a", "b"]}, "t": {"type": "string", "format": "date-time"},
    "l": {"type": "array", "maxItems": 2, "items": {"type": "integer"}}, "o": {"type": ["string", "null"]}}}


@pytest.mark.parametrize(("value", "problem"), [
    ({}, "body.n is required"), ({"n": True}, "body.n must be integer"), ({"n": 0}, "body.n must be >= 1"),
    ({"n": 6}, "body.n must be <= 5"), ({"n": 1, "s": " x "}, "at least 2"), ({"n": 1, "s": "xxxxx"}, "at most 4"),
    ({"n": 1, "e": "c"}, "body.e must be one of a, b"), ({"n": 1, "t": "soon"}, "ISO 8601"),
    ({"n": 1, "l": [1, 2, 3]}, "more than 2"), ({"n": 1, "l": ["x"]}, "body.l[0] must be integer"),
    ({"n": 1, "z": 1}, "unknown fields z"), ({"n": 1, "o": 3}, "body.o must be string or null"),
    ([], "body must be object")])
def test_each_rule_is_enforced(value: object, problem: str) -> None:
    with pytest.raises(InvalidPayload, match=problem.replace("[", r"\[").replace("]", r"\]")):
        check(SCHEMA, value, "body")


def test_a_valid_body_passes() -> None:
    check(SCHEMA, {"n": 3, "s": "abc", "e": "a", "t": "2026-01-01T00:00:00Z", "l": [1], "o": None}, "body")


@pytest.mark.parametrize("var", ["PAIRLY_PRICING_POLL_S", "PAIRLY_ADMIN_STATS_PUBLISH_S",
                                 "PAIRLY_ADMIN_NOTICE_MAX_CHARS", "PAIRLY_ADMIN_SCAN_MAX",
                                 "PAIRLY_ADMIN_REPORT_CONTEXT"])
def test_bad_admin_settings_name_the_variable(base_env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(make_settings({**base_env, var: "-1"}))
    assert caught.value.var == var
