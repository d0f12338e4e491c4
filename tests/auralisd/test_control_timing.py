"""The control transport's deadlines on trio's MockClock: in-memory streams, the real ``ControlServer``.

A TCP client that has not authenticated within ``AUTH_TIMEOUT_S`` is closed at exactly that moment,
and an authenticated one stays. (The real-daemon test in ``test_protocol.py`` checks the same on a real
socket by events only; the timing is checked here, in virtual time, so load cannot make it flaky.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from auralisd.actors.events import EventHub
from auralisd.transport.control import AUTH_TIMEOUT_S, ControlServer

TOKEN = "control-timing-token"


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose connections are in-memory stream pairs made by :meth:`connect`."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](16)

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self._receive.close()


async def call(stream: trio.abc.Stream, msgid: int, method: str, params: dict[str, Any]) -> list[Any]:
    await stream.send_all(msgpack.packb([0, msgid, method, params], use_bin_type=True))
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        data = await stream.receive_some(65536)
        assert data, "the server closed the connection"
        unpacker.feed(data)
        for message in unpacker:
            if message[0] == 1:
                return message


async def test_an_idle_tcp_client_is_closed_at_the_auth_deadline_and_an_authenticated_one_stays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = ControlServer(SimpleNamespace(hub=EventHub()), token=TOKEN)  # type: ignore[arg-type]
    listener = MemoryListener()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, [(listener, True)])
        connected_at = trio.current_time()
        idle = await listener.connect()
        good = await listener.connect()
        assert await call(good, 1, "auth", {"token": TOKEN}) == [1, 1, None, True]
        with trio.fail_after(2 * AUTH_TIMEOUT_S):  # virtual time: a server that never closes it fails here
            assert await idle.receive_some(1) == b""  # the server closed it ...
        assert trio.current_time() - connected_at == pytest.approx(AUTH_TIMEOUT_S)  # ... at the deadline
        await trio.sleep(10 * AUTH_TIMEOUT_S)  # virtual: long after the deadline
        assert await call(good, 2, "ping", {}) == [1, 2, None, "pong"]
        nursery.cancel_scope.cancel()
