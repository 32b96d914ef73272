"""The lean Engine.IO pieces (server/eio.py): the queue keeps asyncio.Queue's semantics, and the real
app refuses permessage-deflate while WebSocket and long-polling clients work as before."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from server.app import SIO
from server.eio import LeanEngineServer, LeanQueue
from tests.support.clients import token_for


async def test_fifo_and_nowait() -> None:
    q: LeanQueue[int] = LeanQueue()
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    for i in range(3):
        await q.put(i)
    assert q.qsize() == 3
    assert [await q.get(), q.get_nowait(), await q.get()] == [0, 1, 2]
    assert q.empty()


async def test_get_waits_for_a_put() -> None:
    q: LeanQueue[str] = LeanQueue()
    getter = q.get()
    await asyncio.sleep(0)
    assert not getter.done()
    q.put_nowait("x")
    assert await getter == "x"


async def test_getters_are_served_in_order() -> None:
    q: LeanQueue[int] = LeanQueue()
    first, second = q.get(), q.get()
    await asyncio.sleep(0)
    q.put_nowait(1)
    q.put_nowait(2)
    assert (await first, await second) == (1, 2)


async def test_a_getter_that_gave_up_is_skipped() -> None:
    q: LeanQueue[int] = LeanQueue()
    first, second = q.get(), q.get()
    first.cancel()  # e.g. its wait_for timed out
    q.put_nowait(7)
    assert await second == 7
    assert first.cancelled()
    assert q.empty()


async def test_get_is_a_future_so_wait_for_wraps_no_task() -> None:
    # Engine.IO's writer idles in wait_for(queue.get(), ...): a coroutine there would be a task per socket.
    q: LeanQueue[int] = LeanQueue()
    probe = q.get()
    assert isinstance(probe, asyncio.Future)
    probe.cancel()
    waiting = asyncio.ensure_future(asyncio.wait_for(q.get(), 5))
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == 2  # this test and the wait_for: no task around the get
    q.put_nowait(4)
    assert await waiting == 4


async def test_wait_for_timeout_loses_nothing() -> None:
    q: LeanQueue[int] = LeanQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.01)
    q.put_nowait(3)
    assert q.get_nowait() == 3


async def test_join_waits_for_task_done() -> None:
    q: LeanQueue[int] = LeanQueue()
    await q.join()  # nothing put: returns at once
    q.put_nowait(1)
    q.put_nowait(2)
    joiner = asyncio.create_task(q.join())
    q.get_nowait()
    q.task_done()
    await asyncio.sleep(0)
    assert not joiner.done()
    q.get_nowait()
    q.task_done()
    await joiner
    with pytest.raises(ValueError):
        q.task_done()


async def test_a_result_that_arrives_as_wait_for_times_out_is_not_lost() -> None:
    q: LeanQueue[int] = LeanQueue()
    for i in range(50):
        waiting = asyncio.ensure_future(asyncio.wait_for(q.get(), 0))
        q.put_nowait(i)
        try:
            got = await waiting
        except TimeoutError:
            got = q.get_nowait()  # the getter gave up first: the item stayed queued
        assert got == i
    assert q.empty()


def test_the_server_uses_the_lean_queue_only_when_unbounded() -> None:
    eio = LeanEngineServer(async_mode="aiohttp")
    assert isinstance(eio.create_queue(), LeanQueue)
    assert isinstance(eio.create_queue(5), asyncio.Queue)


async def _connect_ws(
    url: str, token: str, compress: int
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", compress=compress)
    assert (await ws.receive_str()).startswith("0")
    await ws.send_str("40/chat," + json.dumps({"token": token}))
    assert (await ws.receive_str()).startswith("40/chat,")
    return http, ws


async def test_deflate_is_refused_and_the_socket_works(app_server) -> None:
    http, ws = await _connect_ws(app_server.url, token_for(app_server.settings, "deflater"), compress=15)
    try:
        assert ws.compress == 0  # the server did not accept permessage-deflate
        await ws.send_str('42/chat,1["typing",{"to":"nobody","state":"start"}]')
        await ws.send_str('42/chat,2["no:such:event",{}]')
        while True:  # the typing event is dropped silently; the unknown one is answered
            text = await ws.receive_str()
            if text.startswith("43/chat,2"):
                break
        assert json.loads(text[len("43/chat,2"):])[0]["error"]["code"] == "invalid_payload"
    finally:
        await ws.close()
        await http.close()


async def test_pings_are_timers_not_tasks(app_server) -> None:
    eio = app_server.app[SIO].eio
    eio.ping_interval = 0.2
    http, ws = await _connect_ws(app_server.url, token_for(app_server.settings, "pinged"), compress=0)
    try:
        pings = 0
        while pings < 3:  # a ping every interval, each answered: the next one is scheduled on the pong
            text = await asyncio.wait_for(ws.receive_str(), 5)
            if text == "2":
                pings += 1
                await ws.send_str("3")
                await asyncio.sleep(0.05)  # the pong has scheduled the next ping, due in 0.2 s
                assert not [t for t in asyncio.all_tasks() if "_send_ping" in repr(t.get_coro())]
        assert eio.sockets  # still connected
    finally:
        await ws.close()
        await http.close()


async def test_long_polling_still_works(app_server) -> None:
    token = token_for(app_server.settings, "poller")
    async with aiohttp.ClientSession() as http:
        base = f"{app_server.url}/socket.io/?EIO=4&transport=polling"
        async with http.get(base) as resp:
            sid = json.loads((await resp.text())[1:])["sid"]
        async with http.post(f"{base}&sid={sid}", data="40/chat," + json.dumps({"token": token})) as resp:
            assert resp.status == 200
        async with http.get(f"{base}&sid={sid}") as resp:
            assert (await resp.text()).startswith("40/chat,")


def test_the_lean_environ_reads_headers_and_constants_on_demand() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    from server.eio import LeanEnviron

    headers = CIMultiDictProxy(CIMultiDict([("Origin", "https://a.example"), ("X-Forwarded-For", "1.2.3.4"),
                                            ("X-Forwarded-For", "5.6.7.8"), ("Content-Type", "text/plain")]))
    full = {"REQUEST_METHOD": "GET", "QUERY_STRING": "EIO=4", "wsgi.run_once": False, "SERVER_PORT": "0",
            "HTTP_ORIGIN": "https://a.example", "HTTP_X_FORWARDED_FOR": "1.2.3.4,5.6.7.8",
            "CONTENT_TYPE": "text/plain", "aiohttp.request": object()}
    env = LeanEnviron(full, headers)
    assert set(env) == {"REQUEST_METHOD", "QUERY_STRING", "CONTENT_TYPE", "aiohttp.request"}  # stored
    for key, value in full.items():  # every entry engineio's driver made reads the same
        assert env[key] == value and env.get(key) == value and key in env
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4,5.6.7.8"  # repeated headers joined as the driver joins them
    assert "HTTP_COOKIE" not in env and env.get("HTTP_COOKIE", "none") == "none"
    with pytest.raises(KeyError):
        env["HTTP_COOKIE"]
    env["wsgi.input"] = "body"  # set entries are stored as in a dict
    assert env["wsgi.input"] == "body"


async def test_the_app_sees_headers_through_the_lean_environ(app_server) -> None:
    # The connect handler reads the token from the Authorization header when the auth payload has none.
    token = token_for(app_server.settings, "header-auth")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{app_server.url}/socket.io/?EIO=4&transport=websocket",
                                   headers={"Authorization": f"Bearer {token}"})
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40/chat,")
        assert (await ws.receive_str()).startswith("40/chat,{\"sid\"")
        await ws.close()
