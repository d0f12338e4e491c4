"""Album mode in the player, with the real worker pool, database, library scan and album actor.

A continuous piece split into two tracks of one album (untagged files in one folder) plays
gaplessly: in album mode the output equals the one-file render of the album with the album plan
(no seam, no level step at the boundary); in track mode (the control) the gain steps by dB.
Cold, the first track starts on its own plan and album mode takes over at the boundary, and the
decision events say which plan is in effect and why. These run in real time (short tracks).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trio

from auralis.album import AlbumLayout, compute_album_plan_inputs, plan_album
from auralis.audio import write_audio
from auralis.render import render_chunk
from auralis.synth import make_music
from auralisd.actors.albums import AlbumPlans
from auralisd.actors.cache import ChunkCache
from auralisd.actors.database import Database
from auralisd.actors.events import EventHub
from auralisd.actors.fingerprints import FingerprintResolver
from auralisd.actors.library import Library
from auralisd.actors.mastering import Mastering
from auralisd.actors.player import PcmBlock, Player, StreamEnd
from auralisd.actors.pool import open_mastering_pool

RATE = 44_100
SEAM_LIMIT_DBFS = -90.0
GAIN_WINDOW = int(0.05 * RATE)


@dataclass
class Rig:
    library: Library
    player: Player
    albums: AlbumPlans
    hub: EventHub


@asynccontextmanager
async def rig(tmp_path: Path, music: Path, album_mode: str | None) -> AsyncIterator[Rig]:
    db = Database(str(tmp_path / "state.sqlite3"))
    hub = EventHub()
    async with trio.open_nursery() as outer:
        await outer.start(db.run)
        async with open_mastering_pool(2) as pool, trio.open_nursery() as nursery:
            library = Library(db, hub, [str(music)])
            await nursery.start(library.run)
            resolver = FingerprintResolver(db, pool, hub, cache_dir=str(tmp_path / "cache"))
            await nursery.start(resolver.run)
            albums = AlbumPlans(db, pool, hub)
            await nursery.start(albums.run)
            mastering = Mastering(pool, ChunkCache(64 << 20))
            await nursery.start(mastering.run)
            player = Player(db=db, hub=hub, resolver=resolver, mastering=mastering, sample_rate=RATE, render_ahead=2,
                            albums=albums, album_mode=album_mode)
            await nursery.start(player.run)
            library.scan()
            await library.wait_scan()
            yield Rig(library, player, albums, hub)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


def _split_piece(folder: Path) -> tuple[list[Path], np.ndarray, int]:
    """A 7 s piece swelling from quiet to loud, split at 3.7 s (plus 37 frames) into two files of one folder."""
    music = make_music(7.0, RATE, bpm=110, seed=5)
    t = np.arange(music.shape[0]) / RATE
    swell_db = np.interp(t, [0.0, 2.5, 5.0, 7.0], [-16.0, -16.0, 0.0, 0.0])
    piece = (music * 10 ** (swell_db / 20)[:, None]).astype(np.float32)
    split = int(3.7 * RATE) + 37
    album = folder / "Live"
    album.mkdir(parents=True)
    paths = [album / "01.wav", album / "02.wav"]
    write_audio(str(paths[0]), piece[:split], RATE)
    write_audio(str(paths[1]), piece[split:], RATE)
    return paths, piece, split


async def _play_through(
    r: Rig, paths: list[Path], *, warm: bool, start: int = 0
) -> tuple[dict[int, np.ndarray], list[dict]]:
    tracks = await r.library.resolve_paths([str(p) for p in paths])
    if warm:
        album = await r.albums.album_of(tracks[0])
        with trio.fail_after(60):
            await r.albums.plan_inputs(album)
    events: list[dict] = []

    async def watch(task_status=trio.TASK_STATUS_IGNORED) -> None:
        sub = r.hub.subscribe(frozenset({"mastering"}))
        task_status.started()
        async for event in sub.receive:
            events.append(event.data)

    async with trio.open_nursery() as nursery:
        await nursery.start(watch)
        await r.player.add(tracks)
        sub = await r.player.subscribe(max_blocks=400)
        await r.player.play(start)
        blocks: dict[int, list[PcmBlock]] = {}
        with trio.fail_after(90):
            async for message in sub.receive:
                if isinstance(message, PcmBlock):
                    blocks.setdefault(message.track_id, []).append(message)
                if isinstance(message, StreamEnd) and message.reason != "paused":
                    break
        nursery.cancel_scope.cancel()
    out = {tid: np.concatenate([b.samples for b in bs]) for tid, bs in blocks.items()}
    return {i: out[t.track_id] for i, t in enumerate(tracks) if t.track_id in out}, events


def _applied_step_db(x: np.ndarray, y: np.ndarray, split: int) -> float:
    def gain(a: int, b: int) -> float:
        return 10 * math.log10(float(np.sum(np.square(y[a:b], dtype=np.float64))) /
                               float(np.sum(np.square(x[a:b], dtype=np.float64))))

    return gain(split, split + GAIN_WINDOW) - gain(split - GAIN_WINDOW, split)


async def test_album_mode_plays_two_tracks_as_the_one_file_render(tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths, piece, split = _split_piece(music)
    async with rig(tmp_path, music, "album") as r:
        out, events = await _play_through(r, paths, warm=True)
    played = np.concatenate([out[0], out[1]])
    whole = tmp_path / "whole.wav"
    write_audio(str(whole), piece, RATE)
    plan = plan_album(compute_album_plan_inputs(AlbumLayout.of_paths([str(p) for p in paths])), "adaptive", 1.0,
                      tracks=2)
    reference = render_chunk(str(whole), plan, 0, chunk_frames=piece.shape[0])
    assert played.shape == reference.shape
    diff = float(np.max(np.abs(played.astype(np.float64) - reference)))
    assert 20 * math.log10(max(diff, 1e-30)) <= SEAM_LIMIT_DBFS
    assert abs(_applied_step_db(piece, played, split)) < 0.2
    # The decision events name the mode and the album plan in effect, one plan for both tracks.
    assert len(events) == 2
    for event in events:
        assert (event["album_mode"], event["plan_scope"]) == ("album", "album")
        assert event["album"]["name"] == "Live" and event["album"]["tracks"] == 2
        assert event["plan"]["gain_db"] == plan.gain_db
    assert [e["album"]["index"] for e in events] == [0, 1]


async def test_a_jump_into_the_middle_of_the_album_gives_what_playing_through_gives(tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths, piece, split = _split_piece(music)
    async with rig(tmp_path, music, "album") as r:
        out, events = await _play_through(r, paths, warm=True, start=1)  # straight to the second track
    whole = tmp_path / "whole.wav"
    write_audio(str(whole), piece, RATE)
    plan = plan_album(compute_album_plan_inputs(AlbumLayout.of_paths([str(p) for p in paths])), "adaptive", 1.0,
                      tracks=2)
    reference = render_chunk(str(whole), plan, 0, chunk_frames=piece.shape[0])[split:]
    assert list(out) == [1] and out[1].shape == reference.shape
    diff = float(np.max(np.abs(out[1].astype(np.float64) - reference)))
    assert 20 * math.log10(max(diff, 1e-30)) <= SEAM_LIMIT_DBFS  # its pre-roll came from the first track
    assert [(e["plan_scope"], e["album"]["index"]) for e in events] == [("album", 1)]


async def test_track_mode_control_steps_at_the_boundary(tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths, piece, split = _split_piece(music)
    async with rig(tmp_path, music, "track") as r:
        out, events = await _play_through(r, paths, warm=False)
    played = np.concatenate([out[0], out[1]])
    assert played.shape == piece.shape
    assert abs(_applied_step_db(piece, played, split)) > 3.0
    assert [(e["album_mode"], e["plan_scope"], e["album"]) for e in events] == [("track", "track", None)] * 2
    assert events[0]["plan"]["gain_db"] != events[1]["plan"]["gain_db"]


async def test_cold_album_starts_on_the_track_plan_and_album_mode_takes_over_at_the_boundary(
    tmp_path: Path, monkeypatch
) -> None:
    import auralisd.actors.player as player_module

    # Cold and deterministic: the first track does not wait at all for its album's analysis.
    monkeypatch.setattr(player_module, "ALBUM_WAIT_PLAYHEAD_S", 0.0)
    music = tmp_path / "music"
    paths, piece, split = _split_piece(music)
    async with rig(tmp_path, music, None) as r:  # the default mode: auto
        out, events = await _play_through(r, paths, warm=False)
        assert r.albums.statistics().computed == 1  # started at play, in the background
    assert [e["album_mode"] for e in events] == ["auto", "auto"]
    assert events[0]["plan_scope"] == "track"
    assert "still being analysed" in events[0]["scope_reason"] and "next track boundary" in events[0]["scope_reason"]
    assert events[1]["plan_scope"] == "album" and "in order" in events[1]["scope_reason"]
    assert out[0].shape[0] + out[1].shape[0] == piece.shape[0]  # still gapless


async def test_auto_with_random_on_plays_each_track_with_its_own_plan(tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths, piece, split = _split_piece(music)
    async with rig(tmp_path, music, "auto") as r:
        await r.player.set_options(random=True)
        out, events = await _play_through(r, paths, warm=True)  # the album is analysed: only random decides
    assert len(events) == 2
    for event in events:
        assert (event["album_mode"], event["plan_scope"], event["album"]) == ("auto", "track", None)
        assert event["scope_reason"] == "auto: random is on"


async def test_the_queues_albums_are_analysed_in_the_background_and_again_when_a_track_changes(tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths, piece, split = _split_piece(music)
    async with rig(tmp_path, music, "auto") as r:
        progress = r.hub.subscribe(frozenset({"album_progress"}))

        async def completed() -> dict:
            with trio.fail_after(60):
                async for event in progress.receive:
                    if event.data["status"] == "complete":
                        return event.data
            raise AssertionError("no album_progress")

        tracks = await r.library.resolve_paths([str(p) for p in paths])
        await r.player.add(tracks)  # nothing plays: queuing is enough
        assert (await completed())["album"]["name"] == "Live"
        assert r.albums.statistics().computed == 1
        write_audio(str(paths[1]), piece[split:] * np.float32(0.5), RATE)  # a member changes
        r.library.scan()
        await r.library.wait_scan()
        await r.player.refresh_albums()  # what the daemon does after every scan
        assert (await completed())["album"]["name"] == "Live"
        assert r.albums.statistics().computed == 2
