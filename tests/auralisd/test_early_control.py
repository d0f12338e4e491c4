"""The control socket answers ``ping`` from the first instant and holds the rest until the daemon serves.

``transport/early.py`` on real Unix sockets, then the whole in-process daemon with its start-up
held at the database: ``ping`` is answered before any actor runs, a ``status`` sent on the same
connection is answered once the daemon is up, in order, as if it had just arrived.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest
import trio
import trio.testing

from auralisd.config import Settings
from auralisd.hooks import Hooks
from auralisd.protocol.codec import encode_request
from auralisd.transport.early import EarlyControl, PrefixedStream, open_unix_listener

BOUND_S = 60.0  # real sockets and processes: a generous bound, never a timing assertion


async def read_messages(stream: trio.abc.Stream, count: int) -> list:
    unpacker = msgpack.Unpacker(raw=False)
    out: list = []
    while len(out) < count:
        data = await stream.receive_some(65536)
        assert data, "the connection closed"
        unpacker.feed(data)
        out += list(unpacker)
    return out


async def test_ping_is_answered_and_the_rest_is_handed_over_byte_exact(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "control.sock")
    listener = await open_unix_listener(path)
    early = EarlyControl([(listener, False)])
    status = encode_request(2, "status", {})
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(early.serve)
            client = await trio.open_unix_socket(path)
            # a ping, then a status and half of a second status in the same write
            await client.send_all(encode_request(1, "ping") + status + status[:3])
            assert await read_messages(client, 1) == [[1, 1, None, "pong"]]
            leaver = await trio.open_unix_socket(path)  # pings, reads its pong and leaves
            await leaver.send_all(encode_request(7, "ping"))
            assert await read_messages(leaver, 1) == [[1, 7, None, "pong"]]
            await leaver.aclose()
            held = await early.hand_over()
            assert early.pings_answered == 2
            assert len(held) == 1 and held[0].require_auth is False
            stream = held[0].stream
            assert isinstance(stream, PrefixedStream)
            await client.send_all(status[3:])
            received = b""
            while len(received) < 2 * len(status):
                received += await stream.receive_some(65536)
            assert received == status + status  # nothing answered twice, nothing lost
            await stream.send_all(b"\x90")
            assert await client.receive_some(10) == b"\x90"  # the same connection, both ways
            await stream.aclose()
            await client.aclose()
            # the listener stays open for the real server
            third = await trio.open_unix_socket(path)
            await third.aclose()
            await listener.aclose()


async def test_a_failed_start_closes_the_held_connections_and_the_listener(tmp_path: Path) -> None:
    path = str(tmp_path / "control.sock")
    listener = await open_unix_listener(path)
    early = EarlyControl([(listener, False)])
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(early.serve)
            client = await trio.open_unix_socket(path)
            await client.send_all(encode_request(3, "status"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # start-up failed before the hand-over
        assert await client.receive_some(10) == b""  # closed, not left hanging
        await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()


async def test_the_daemon_answers_ping_before_its_actors_start(tmp_path: Path, monkeypatch) -> None:
    from auralisd.actors.database import Database
    from auralisd.main import Daemon

    gate = trio.Event()
    entered = trio.Event()
    real_run = Database.run

    async def held_run(self, *, task_status=trio.TASK_STATUS_IGNORED):  # start-up held here by the test
        entered.set()
        await gate.wait()
        await real_run(self, task_status=task_status)

    monkeypatch.setattr(Database, "run", held_run)
    settings = Settings(
        state_dir=str(tmp_path / "state"), runtime_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
        http_port=0, mpd_port=0, workers=1, cache_mib=16,
    )  # fmt: skip
    daemon = Daemon(settings, hooks=Hooks(), handle_signals=False, initial_scan=False)
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.run)
            await entered.wait()
            assert not daemon.ready.is_set()
            client = await trio.open_unix_socket(settings.control_socket_path)
            await client.send_all(encode_request(1, "ping"))
            assert await read_messages(client, 1) == [[1, 1, None, "pong"]]
            await client.send_all(encode_request(2, "status") + encode_request(3, "ping"))
            await trio.testing.wait_all_tasks_blocked()
            assert not daemon.ready.is_set()  # the status waits for the daemon; nothing was answered
            gate.set()
            replies = await read_messages(client, 2)
            assert [r[:3] for r in replies] == [[1, 2, None], [1, 3, None]]
            assert replies[0][3]["state"] == "stop" and replies[1][3] == "pong"
            await client.aclose()
            await daemon.stop()


def test_importing_the_daemon_entry_loads_only_what_answering_ping_needs() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import auralisd.main
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(result.stdout)
    assert "trio" in loaded and "msgpack" in loaded and "auralisd.transport.early" in loaded
    for heavy in ("numpy", "sqlite3", "trio_parallel", "auralisd.actors.player", "auralisd.transport.control", "auralis"):
        assert heavy not in loaded, f"import auralisd.main loads {heavy} before the control socket answers"
