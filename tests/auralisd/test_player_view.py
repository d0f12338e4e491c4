"""The player's published view (``Player.view``) on trio's MockClock, with the fake renderer of the
timing tests: every change shows before its reply, the play position runs from the view's anchor,
and nothing is republished while playback just goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from auralisd.actors.player import BLOCK_S, PcmBlock

from .playback.test_player_timing import RATE, FakeRenderer, player, track


async def test_each_change_is_in_the_view_when_its_reply_arrives(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with player(tmp_path, FakeRenderer()) as p:
        first = p.view
        assert (first.state, first.queue_length, first.queue_pos, first.entry) == ("stop", 0, None, None)
        seen = [first.version]

        def changed():  # the view after a reply: a new one, never an older one
            view = p.view
            assert view.version > seen[-1]
            seen.append(view.version)
            return view

        await p.add([track(1, 12.0), track(2, 5.0), track(3, 5.0)])
        view = changed()
        assert view.queue_length == 3 and view.queue_version > first.queue_version and view.queue_pos is None
        await p.set_volume(40)
        assert changed().volume == 40
        await p.play(1)
        view = changed()
        assert (view.state, view.queue_pos, view.next_pos) == ("play", 1, 2)
        assert view.entry is not None and view.entry.track_id == 2 and view.track is view.entry
        assert view.song_id is not None and view.next_song_id is not None and view.song_id != view.next_song_id
        await p.set_options(repeat=True, single=True)
        view = changed()
        assert (view.repeat, view.single, view.next_pos) == (True, True, 1)  # single + repeat: the same entry again
        await p.set_crossfade(3)
        assert changed().crossfade_s == 3
        await p.set_album_mode("track")
        assert changed().album_mode == "track"
        await p.pause()
        view = changed()
        assert view.state == "pause" and not view.moving
        await p.seek(2.5)
        view = changed()
        assert view.position_s == 2.5 and view.elapsed_s(trio.current_time() + 100.0) == 2.5  # paused: it stays
        await p.delete([0])
        view = changed()
        assert (view.queue_pos, view.queue_length) == (0, 2) and view.entry is not None and view.entry.track_id == 2
        await p.clear()
        view = changed()
        assert (view.state, view.queue_length, view.queue_pos, view.track) == ("stop", 0, None, None)


async def test_elapsed_runs_from_the_anchor_and_playing_on_publishes_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with player(tmp_path, FakeRenderer()) as p:
        await p.add([track(1, 12.0)])
        sub = await p.subscribe(max_blocks=400)
        await p.play()
        blocks_seen = 0
        async for message in sub.receive:
            if isinstance(message, PcmBlock):
                if blocks_seen == 0:
                    playing = p.view  # audio flows: the anchor is set
                    assert playing.moving and playing.state == "play"
                blocks_seen += 1
                if message.offset_frames >= 4 * RATE:
                    break
        # forty blocks later the same view: the position is computed, not republished per block
        assert p.view is playing
        now = trio.current_time()
        # the block just sent starts playing now (the shared player sends each block at its play time)
        assert playing.elapsed_s(now) == pytest.approx(message.offset_frames / RATE, abs=1e-6)
        assert playing.elapsed_s(now + 0.5) == pytest.approx(playing.elapsed_s(now) + 0.5)
        assert playing.elapsed_s(now + 60.0) == pytest.approx(12.0)  # never past the track's end
        sub.close()
        await p.pause()
        paused = p.view
        assert not paused.moving
        assert paused.elapsed_s(trio.current_time()) == pytest.approx(message.offset_frames / RATE + BLOCK_S, abs=1e-6)
