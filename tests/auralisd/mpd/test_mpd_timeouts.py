"""The MPD listener's time limits on trio's MockClock: a silent client is closed after
CONNECTION_TIMEOUT_S, an idle client is not (it may wait for changes as long as it likes)."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from auralisd.actors.events import EventHub
from auralisd.app.mpd import make_server
from auralisd.transport.mpd import CONNECTION_TIMEOUT_S, MpdListener


async def _serve(nursery: trio.Nursery) -> int:
    services = SimpleNamespace(hub=EventHub())  # the greeting, idle and the read loop need only the hub
    listener = MpdListener(make_server(services), require_password=False)  # type: ignore[arg-type]
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    return await nursery.start(listener.serve, listeners)


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(4096):
        data += chunk
    return data


async def test_a_silent_client_is_closed_after_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert await stream.receive_some(100) == b"OK MPD 0.23.0\n"
        started = trio.current_time()
        assert await _read_until_closed(stream) == b""
        assert trio.current_time() - started == CONNECTION_TIMEOUT_S
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_an_idle_client_is_never_timed_out(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert await stream.receive_some(100) == b"OK MPD 0.23.0\n"
        await stream.send_all(b"idle\n")
        with trio.move_on_after(10 * CONNECTION_TIMEOUT_S) as waited:
            await stream.receive_some(100)  # nothing changes: no answer, and not closed
        assert waited.cancelled_caught
        await stream.send_all(b"noidle\n")
        assert await stream.receive_some(100) == b"OK\n"
        await stream.aclose()
        nursery.cancel_scope.cancel()
