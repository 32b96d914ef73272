"""The pure transition rules, case by case (the functional tests cover them end to end)."""

from __future__ import annotations

import pytest

from config.settings import ConfigError, Env
from server.presence import model
from server.presence.model import PresenceConfig, Record

CFG = PresenceConfig(away_after_s=60, grace_s=5, node_ttl_s=15)


def test_grace_keeps_the_status_until_it_ends_then_dates_offline_at_the_departure() -> None:
    rec = model.connect(Record(), "s1", "A", 100.0, CFG)
    assert rec.view == model.View("online", None)
    gone = model.disconnect(rec, "s1", "A", 200.0, CFG)
    assert (gone.status, gone.left_at, gone.left_node) == ("online", 200.0, "A")
    assert model.settle(gone, 204.9, CFG) == gone
    assert model.settle(gone, 205.0, CFG).view == model.View("offline", 200.0)
    back = model.connect(gone, "s2", "B", 203.0, CFG)
    assert (back.status, back.left_at, set(back.devices)) == ("online", None, {"s2"})


def test_invisible_looks_like_leaving_and_its_departure_reveals_nothing() -> None:
    rec = model.connect(Record(last_seen=10.0), "s1", "A", 100.0, CFG)
    hidden = model.set_mode(rec, "invisible", 150.0, CFG)
    assert hidden.view == model.View("offline", 150.0)
    left = model.disconnect(hidden, "s1", "A", 400.0, CFG)
    assert left.view == model.View("offline", 150.0) and left.left_at is None
    again = model.connect(left, "s2", "A", 500.0, CFG)  # the mode is sticky
    assert again.view == model.View("offline", 150.0)
    assert model.set_mode(again, "auto", 510.0, CFG).view == model.View("online", None)


def test_idle_and_explicit_away() -> None:
    rec = model.connect(Record(), "s1", "A", 100.0, CFG)
    assert model.touch(rec, 100.0, 159.0, CFG).status == "online"
    idle = model.touch(rec, 100.0, 160.0, CFG)
    assert idle.status == "away"
    assert model.touch(idle, 161.0, 161.0, CFG).status == "online"
    away = model.set_mode(rec, "away", 120.0, CFG)
    assert model.touch(away, 130.0, 130.0, CFG).status == "away"  # activity does not end an explicit away


def test_a_dead_node_takes_only_what_it_held() -> None:
    two = model.connect(model.connect(Record(), "a1", "A", 100.0, CFG), "b1", "B", 100.0, CFG)
    survivor = model.drop_node(two, "B", 130.0, 150.0, CFG)
    assert (survivor.view, dict(survivor.devices)) == (model.View("online", None), {"a1": "A"})
    only_b = model.connect(Record(), "b1", "B", 100.0, CFG)
    assert model.drop_node(only_b, "B", 300.0, 320.0, CFG).view == model.View("offline", 300.0)
    # B was waiting out a grace: offline, dated at the departure.
    leaving = model.disconnect(only_b, "b1", "B", 290.0, CFG)
    assert model.drop_node(leaving, "B", 300.0, 320.0, CFG).view == model.View("offline", 290.0)
    # A live node C waits out this one: left to C.
    elsewhere = model.disconnect(model.connect(Record(), "c1", "C", 100.0, CFG), "c1", "C", 310.0, CFG)
    assert model.drop_node(elsewhere, "B", 300.0, 311.0, CFG) == elsewhere


def test_dead_devices_are_ignored_by_snapshots_before_the_cleanup() -> None:
    rec = model.connect(Record(), "b1", "B", 100.0, CFG)
    assert model.visible(rec, {}).status == "online"
    assert model.visible(rec, {"B": 290.0}) == model.View("offline", 290.0)
    assert model.visible(None, {}) == model.HIDDEN


def test_config_from_env_names_the_bad_variable() -> None:
    assert PresenceConfig.from_env(Env({})) == PresenceConfig()
    with pytest.raises(ConfigError, match="PAIRLY_PRESENCE_GRACE_S"):
        PresenceConfig.from_env(Env({"PAIRLY_PRESENCE_GRACE_S": "soon"}))
    with pytest.raises(ConfigError, match="PAIRLY_PRESENCE_MAX_SUBSCRIPTIONS"):
        PresenceConfig.from_env(
            Env({"PAIRLY_PRESENCE_MAX_SUBSCRIBE": "600", "PAIRLY_PRESENCE_MAX_SUBSCRIPTIONS": "500"}))
    assert PresenceConfig().tick_s == 1.0
    assert PresenceConfig(away_after_s=0.6, grace_s=0.4, node_ttl_s=1.5).tick_s == pytest.approx(0.06)
