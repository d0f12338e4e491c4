"""The MPD session's fast path, in process: ``status`` and ``currentsong`` answer from the player's
published view without awaiting the player, the answers of one receive leave in one send, and
an idle client is woken by the event itself (no task in between). Timing on trio's MockClock."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from auralisd.actors.database import Track
from auralisd.actors.events import EventHub
from auralisd.actors.player_view import PlayerView
from auralisd.app.mpd import MpdSession, command_table, make_server
from auralisd.app.mpd.playback import StatusText
from auralisd.app.mpd.server import EVENT_SUBSYSTEMS
from auralisd.protocol.mpd import parse_pairs

TRACK = Track(7, "/music/Album/01 one.flac", "/music", "", 1000, 1, "One", "Artist", "Album", None, 12.5,
              551_250, 44_100, 2, "FLAC", "complete", None, 0.0)  # fmt: skip
VIEW = PlayerView(
    version=1, state="play", volume=40, repeat=True, random=False, single=False, consume=False, crossfade_s=0,
    album_mode="auto", queue_version=9, queue_length=2, queue_pos=0, song_id=3, prio=0, entry=TRACK, track=TRACK,
    end_s=12.5, next_pos=1, next_song_id=4, sample_rate=44_100, position_s=2.0, anchor_time=100.0, moving=True,
)  # fmt: skip


class ViewOnlyPlayer:
    """A player with nothing to await: a handler that awaited it would fail (AttributeError)."""

    def __init__(self, view: PlayerView) -> None:
        self.view = view


class Library:
    music_dirs = ("/music",)

    def statistics(self) -> Any:
        return SimpleNamespace(running=False, scans=0)


def session_with(view: PlayerView, send_nowait: Any = None) -> tuple[MpdSession, list[bytes], Any]:
    services = SimpleNamespace(hub=EventHub(), player=ViewOnlyPlayer(view), library=Library())
    server = make_server(services)  # type: ignore[arg-type]
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)
        await trio.lowlevel.checkpoint()

    return MpdSession(server, send, require_password=False, send_nowait=send_nowait), sent, services


def test_status_and_currentsong_are_plain_functions_in_the_table() -> None:
    table = command_table()
    assert table["status"].sync and table["currentsong"].sync and table["getvol"].sync
    assert not table["setvol"].sync  # a change goes through the player's mailbox


async def test_one_receive_of_fast_commands_is_answered_with_one_send_from_the_view(
    autojump_clock: trio.testing.MockClock,
) -> None:
    session, sent, services = session_with(replace(VIEW, anchor_time=trio.current_time()))
    await session.handle_lines([b"status", b"currentsong", b"command_list_ok_begin", b"getvol", b"ping",
                                b"command_list_end"])  # fmt: skip
    assert len(sent) == 1
    text = sent[0].decode()
    status_text, rest = text.split("OK\n", 1)
    song_text, rest = rest.split("OK\n", 1)
    status = dict(parse_pairs(status_text))
    assert status == {
        "volume": "40", "repeat": "1", "random": "0", "single": "0", "consume": "0", "partition": "default",
        "playlist": "9", "playlistlength": "2", "mixrampdb": "0", "state": "play", "song": "0", "songid": "3",
        "time": "2:12", "elapsed": "2.000", "bitrate": "0", "duration": "12.500", "audio": "44100:f:2",
        "nextsong": "1", "nextsongid": "4",
    }  # fmt: skip
    assert list(status)[-7:-5] == ["time", "elapsed"]  # MPD's order
    song = dict(parse_pairs(song_text))
    assert (song["file"], song["Title"], song["Pos"], song["Id"]) == ("Album/01 one.flac", "One", "0", "3")
    assert rest == "volume: 40\nlist_OK\nlist_OK\nOK\n"


async def test_elapsed_is_computed_at_the_moment_of_the_answer(autojump_clock: trio.testing.MockClock) -> None:
    view = replace(VIEW, anchor_time=trio.current_time())
    status = StatusText()
    assert b"elapsed: 2.000\n" in status.text(view, trio.current_time())
    await trio.sleep(3.25)  # virtual time
    assert b"time: 5:12\nelapsed: 5.250\n" in status.text(view, trio.current_time())
    assert b"elapsed: 12.500\n" in status.text(view, trio.current_time() + 60)  # never past the end
    paused = replace(view, version=2, state="pause", moving=False, position_s=5.25)
    assert b"state: pause\n" in status.text(paused, trio.current_time() + 60)
    assert b"elapsed: 5.250\n" in status.text(paused, trio.current_time() + 60)
    stopped = replace(view, version=3, state="stop", moving=False, track=None, position_s=0.0)
    text = status.text(stopped, trio.current_time())
    assert b"state: stop\n" in text and b"elapsed" not in text and b"duration" not in text


def test_status_formats_a_view_once(monkeypatch: pytest.MonkeyPatch) -> None:
    formatted = []
    original = StatusText._format

    def counting(self: StatusText, view: PlayerView) -> None:
        formatted.append(view.version)
        original(self, view)

    monkeypatch.setattr(StatusText, "_format", counting)
    status = StatusText()
    for now in (100.0, 101.0, 102.0):
        status.text(VIEW, now)
    newer = replace(VIEW, version=2, volume=41)
    assert b"volume: 41\n" in status.text(newer, 103.0)
    assert formatted == [1, 2]


@pytest.mark.parametrize("event, data, subsystem", [
    *((name, {}, subsystems[0]) for name, subsystems in EVENT_SUBSYSTEMS.items()),
    ("scan_progress", {"running": True}, "update"),
    ("scan_progress", {"running": False}, "database"),
])  # fmt: skip
async def test_an_event_wakes_the_idle_client_inside_publish(
    event: str, data: dict[str, Any], subsystem: str, autojump_clock: trio.testing.MockClock
) -> None:
    session, sent, services = session_with(VIEW)
    stop = services.hub.listen(session.server.on_event)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.answer_idle)
        await session.handle_lines([f"idle {subsystem}".encode()])
        assert sent == [] and session.idle
        services.hub.publish("output" if event != "output" else "player", {})  # another subsystem: still idle
        services.hub.publish(event, data)
        assert session.wake.is_set()  # woken by publish itself, before any task ran
        while not sent:
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    stop()
    assert sent == [f"changed: {subsystem}\nOK\n".encode()]
    assert not session.idle


async def test_an_idle_client_is_answered_inside_publish_when_its_socket_takes_the_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    written: list[bytes] = []

    def send_nowait(data: bytes) -> int:  # what the transport gives: a non-blocking socket write
        written.append(data)
        return len(data)

    session, sent, services = session_with(VIEW, send_nowait)
    stop = services.hub.listen(session.server.on_event)
    await session.handle_lines([b"idle mixer"])
    services.hub.publish("volume", {"volume": 41})
    stop()
    assert written == [b"changed: mixer\nOK\n"]  # written by publish itself: no task ran
    assert not session.idle and not session.wake.is_set() and sent == []


async def test_what_the_socket_did_not_take_goes_first_from_the_idle_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    session, sent, services = session_with(VIEW, lambda data: 3)  # the socket takes 3 bytes, then would block
    stop = services.hub.listen(session.server.on_event)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.answer_idle)
        await session.handle_lines([b"idle player"])
        services.hub.publish("player", {})
        await session.handle_lines([b"getvol"])  # the client asks before the rest is out: it waits its turn
        nursery.cancel_scope.cancel()
    stop()
    assert sent == [b"nged: player\nOK\n", b"volume: 40\nOK\n"]


async def test_a_broken_socket_leaves_the_answer_to_the_idle_task(autojump_clock: trio.testing.MockClock) -> None:
    def broken(data: bytes) -> int:
        raise BrokenPipeError

    session, sent, services = session_with(VIEW, broken)
    stop = services.hub.listen(session.server.on_event)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.answer_idle)
        await session.handle_lines([b"idle options"])
        services.hub.publish("options", {})
        while not sent:
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    stop()
    assert sent == [b"changed: options\nOK\n"]  # its send_all is what reports the broken connection
