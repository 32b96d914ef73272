"""The in-process connection registry (one node, no Redis): the cap, removal and counts behave the
same from one sid to many and back (the shape a leaner layout must keep, docs/memory.md)."""

from __future__ import annotations

from server.connections import LocalConnections


async def test_caps_counts_and_removal_across_one_and_many() -> None:
    reg = LocalConnections()
    assert await reg.add("/chat", "u", "s1", 2)
    assert await reg.count("/chat", "u") == 1
    assert await reg.live_sids("/chat", "u") == {"s1"}
    assert await reg.add("/chat", "u", "s2", 2)
    assert not await reg.add("/chat", "u", "s3", 2)  # at the cap
    assert await reg.live_sids("/chat", "u") == {"s1", "s2"}
    assert await reg.where("/chat", "u") == {"s1": "local", "s2": "local"}
    assert await reg.count("/presence", "u") == 0  # per namespace
    await reg.remove("/chat", "u", "s1")
    assert await reg.live_sids("/chat", "u") == {"s2"}
    assert await reg.add("/chat", "u", "s3", 2)  # the slot is free again
    await reg.remove("/chat", "u", "s2")
    await reg.remove("/chat", "u", "s3")
    assert await reg.count("/chat", "u") == 0
    await reg.remove("/chat", "u", "s3")  # removing twice changes nothing


async def test_removing_another_sid_keeps_the_one_held() -> None:
    reg = LocalConnections()
    assert await reg.add("/call", "u", "s1", 1)
    await reg.remove("/call", "u", "other")
    assert await reg.live_sids("/call", "u") == {"s1"}
    assert not await reg.add("/call", "u", "s2", 1)


async def test_a_zero_cap_refuses_the_first_connection() -> None:
    reg = LocalConnections()
    assert not await reg.add("/chat", "u", "s1", 0)
    assert await reg.count("/chat", "u") == 0
