"""The outputs actor: states, back-off, persistence and failure isolation, over real sockets, pipes and SQLite.

The player here is a small stand-in that publishes :class:`PcmBlock` records on real
:class:`PcmSubscription` channels (the output side of the player is what is under test; the player itself
is tested in test_player.py); the outputs write to real TCP listeners, FIFOs and ``/dev/full``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from auralis.pcm import PcmEncoder
from auralis.resample import StreamResampler
from auralisd.actors.database import Database
from auralisd.actors.events import EventHub
from auralisd.actors.outputs import BACKOFF_MAX_S, OutputFailure, Outputs, make_outputs
from auralisd.actors.outputs.registry import SEND_TIMEOUT_S, send_or_fail
from auralisd.actors.player import PcmBlock, PcmSubscription, StreamEnd
from auralisd.config import parse_output_spec
from auralisd.errors import RpcError

RATE = 44_100
BLOCK = 2205


class PlayerStandIn:
    """Publishes blocks to subscribers the way the player does (send_nowait, full -> dropped)."""

    def __init__(self) -> None:
        self.sample_rate = RATE
        self.subs: list[PcmSubscription] = []
        self.subscribed = trio.Event()

    async def subscribe(self, max_blocks: int = 40) -> PcmSubscription:
        send, receive = trio.open_memory_channel[Any](max_blocks)
        sub = PcmSubscription(receive=receive, _send=send)
        self.subs.append(sub)
        self.subscribed.set()
        return sub

    def publish(self, message: Any) -> None:
        for sub in list(self.subs):
            try:
                sub._send.send_nowait(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.subs.remove(sub)
            except trio.WouldBlock:
                sub.dropped = True
                sub._send.close()
                self.subs.remove(sub)


def blocks(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((BLOCK, 2)) * 0.1).astype(np.float32) for _ in range(n)]


@asynccontextmanager
async def running(tmp_path: Path, specs: list[tuple[str, str]], player: PlayerStandIn | None = None,
                  ) -> AsyncIterator[tuple[Outputs, PlayerStandIn, EventHub]]:
    db = Database(str(tmp_path / "state.sqlite3"))
    hub = EventHub()
    player = player or PlayerStandIn()
    async with trio.open_nursery() as outer:
        await outer.start(db.run)
        async with trio.open_nursery() as nursery:
            outputs = Outputs(db=db, hub=hub, player=player,
                              kinds=make_outputs([parse_output_spec(k, t) for k, t in specs], RATE))
            await nursery.start(outputs.run)
            yield outputs, player, hub
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def wait_state(outputs: Outputs, name: str, state: str) -> dict[str, Any]:
    while True:
        info = outputs.find(name)
        if info.state == state:
            return info.to_wire()
        await trio.sleep(0.01)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens there once it is closed


async def test_a_server_that_is_down_backs_off_to_the_cap_with_one_log_line(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    caplog.set_level(logging.INFO, logger="auralisd.outputs")
    async with running(tmp_path, [("snapcast", f"room=tcp://127.0.0.1:{port}")]) as (outputs, _, hub):
        events = hub.subscribe(frozenset({"output"}))
        info = await wait_state(outputs, "room", "reconnecting")
        assert info["message"] == (f"cannot connect to snapserver at 127.0.0.1:{port} (connection refused): is it "
                                   "running with a tcp source in server mode there?")
        retries = []
        with trio.move_on_after(600):  # ten minutes of failures (virtual time)
            async for event in events.receive:
                retries.append(event.data["retry_in_s"])
        # each retry doubles the wait (the first may have been published before this subscription), then
        # it stays at the cap with no new event
        assert retries[-5:] == [2.0, 4.0, 8.0, 16.0, 30.0] and len(retries) <= 6
        assert BACKOFF_MAX_S == 30.0
        assert outputs.find("room").state == "reconnecting"
    lines = [r for r in caplog.records if r.name == "auralisd.outputs" and "room" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # the same failure again is not logged again
    assert lines[0].levelno == logging.WARNING and "retrying in 1 s" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


async def test_enable_and_disable_are_saved_and_survive_a_restart(tmp_path: Path) -> None:
    port = closed_port()
    specs = [("snapcast", f"room=tcp://127.0.0.1:{port}"), ("snapcast", f"den=tcp://127.0.0.1:{port}")]
    async with running(tmp_path, specs) as (outputs, _, _):
        assert [o.name for o in outputs.list()] == ["stream", "room", "den"]
        assert [o.output_id for o in outputs.list()] == [0, 1, 2]
        info = await outputs.disable("room")
        assert (info.enabled, info.state) == (False, "disabled")
        await outputs.disable(0)  # by id: the /stream output
        assert not outputs.is_enabled("stream")
        with pytest.raises(RpcError) as err:
            await outputs.enable("kitchen")
        assert err.value.code == "not_found" and "0 stream, 1 room, 2 den" in err.value.message
    async with running(tmp_path, specs) as (outputs, _, _):
        assert [(o.name, o.enabled, o.state) for o in outputs.list()][:2] == [
            ("stream", False, "disabled"), ("room", False, "disabled")]
        assert outputs.find("den").enabled
        await outputs.enable("stream")
        await outputs.enable(1)
        assert outputs.is_enabled("stream") and outputs.find("room").state in ("connecting", "reconnecting")


async def test_a_failing_output_does_not_disturb_a_working_one(tmp_path: Path) -> None:
    """One output points at a closed port, the other at a live listener that receives the exact stream."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    sent = blocks(20)
    received = bytearray()
    expected = PcmEncoder(RATE, 48_000, 16).encode(np.concatenate(sent))
    specs = [("snapcast", f"dead=tcp://127.0.0.1:{closed_port()}"), ("snapcast", f"live=tcp://127.0.0.1:{port}")]
    with trio.fail_after(30):
        async with listeners[0], running(tmp_path, specs) as (outputs, player, _):
            stream = await listeners[0].accept()
            await wait_state(outputs, "live", "connected")
            await player.subscribed.wait()
            for samples in sent:
                player.publish(PcmBlock(1, 0, samples, 1))
                await trio.sleep(0.01)
            player.publish(StreamEnd("paused"))
            while len(received) < len(expected) + 4 * int(0.19 * 48_000):  # the stream, then 0.2 s of silence
                received += await stream.receive_some(65536)
            assert outputs.find("dead").state == "reconnecting"
            assert outputs.find("live").state == "connected"
            await stream.aclose()
            info = await wait_state(outputs, "live", "reconnecting")  # the server went away: said and retried
            assert info["message"] == "snapserver closed the connection"
    got = np.frombuffer(bytes(received), dtype="<i2").astype(np.int32)
    want = np.frombuffer(expected, dtype="<i2")
    # the resampler's last frames reach into what follows (here: the pause's silence): half its filter either side
    held = -(-StreamResampler(RATE, 48_000).latency_input_frames * 48_000 // RATE)  # 84 frames at 48 kHz
    edge = 2 * (2 * held + 8)  # interleaved samples
    assert np.max(np.abs(got[: want.size - edge] - want[: want.size - edge])) <= 2  # only the dither draws differ
    tail = got[want.size + edge :]
    assert tail.size >= 2 * int(0.19 * 48_000) - edge and np.max(np.abs(tail)) <= 2  # then 0.2 s of silence


async def test_a_full_disk_is_an_error_that_names_it(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():  # noqa: ASYNC240 - a test precondition
        pytest.skip("no /dev/full")
    with trio.fail_after(30):
        async with running(tmp_path, [("snapcast", "disk=pipe:///dev/full")]) as (outputs, player, _):
            await wait_state(outputs, "disk", "connected")
            await player.subscribed.wait()
            for samples in blocks(8):  # more than the 0.3 s the output holds back before its first write
                player.publish(PcmBlock(1, 0, samples, 1))
            info = await wait_state(outputs, "disk", "error")
            assert info["message"] == "cannot write to /dev/full: no space left on the device"


async def test_a_pipe_nobody_reads_and_a_reader_that_leaves(tmp_path: Path) -> None:
    fifo = tmp_path / "snapfifo"
    os.mkfifo(fifo)
    with trio.fail_after(30):
        async with running(tmp_path, [("snapcast", f"pipe=pipe://{fifo}")]) as (outputs, player, _):
            info = await wait_state(outputs, "pipe", "reconnecting")
            assert info["message"] == f"nobody reads the pipe {fifo} (is snapserver running?)"
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            try:
                await wait_state(outputs, "pipe", "connected")
                await player.subscribed.wait()
                for samples in blocks(8):
                    player.publish(PcmBlock(1, 0, samples, 1))
                while True:
                    try:
                        if os.read(reader, 1 << 16):
                            break
                    except BlockingIOError:
                        pass
                    await trio.sleep(0.01)
            finally:
                os.close(reader)
            for _ in range(3):
                player.publish(PcmBlock(1, 0, blocks(1)[0], 1))
                await trio.sleep(0.05)
            info = await wait_state(outputs, "pipe", "reconnecting")
            assert info["message"] in (f"{fifo}: the reader closed the pipe",
                                       f"nobody reads the pipe {fifo} (is snapserver running?)")


async def test_a_server_that_takes_no_data_fails_the_output_after_the_send_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A frozen server (it accepted, then reads nothing) must not hold the output's task forever: the send
    gives up after SEND_TIMEOUT_S with a message naming the server, and a closed connection gets the
    kind's own words."""
    frozen, _never_read = trio.testing.lockstep_stream_pair()
    started = trio.current_time()
    with pytest.raises(OutputFailure, match=f"snapserver took no data for {SEND_TIMEOUT_S:g} s"):
        await send_or_fail(frozen, b"x" * 4096, too_slow="snapserver", broken=lambda exc: OutputFailure("closed"))
    assert trio.current_time() - started == pytest.approx(SEND_TIMEOUT_S)

    gone, reader = trio.testing.lockstep_stream_pair()
    await reader.aclose()
    with pytest.raises(OutputFailure, match="the source was kicked"):
        await send_or_fail(gone, b"x", too_slow="icecast", broken=lambda exc: OutputFailure("the source was kicked"))
