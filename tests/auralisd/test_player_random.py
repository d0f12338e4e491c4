"""Random mode on the real player (real pool, cache, resolver): every entry once per round, like MPD."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import trio

from auralis.fingerprint import compute_fingerprint
from auralis.sidecar import write_sidecar
from auralisd.actors.player import PcmBlock, StreamEnd

from .conftest import write_tracks
from .test_player import rig

SPECS = [(f"{i}.flac", 1.0 + 0.1 * i, 44_100, i, False) for i in range(1, 5)]


def four_tracks(tmp_path: Path) -> Path:
    music = tmp_path / "music"
    for path in write_tracks(music, SPECS):
        write_sidecar(str(path), compute_fingerprint(str(path)))  # analysis is not what is tested here
    return music


async def test_random_without_repeat_plays_each_entry_once_then_stops(tmp_path: Path) -> None:
    music = four_tracks(tmp_path)
    async with rig(tmp_path, music, rng=random.Random(3)) as r:
        tracks = await r.library.resolve_paths([str(music)])
        await r.player.add(tracks)
        await r.player.set_options(random=True)
        sub = await r.player.subscribe(max_blocks=400)
        await r.player.play()
        played: list[int] = []
        with trio.fail_after(20):
            async for message in sub.receive:
                if isinstance(message, PcmBlock) and (not played or played[-1] != message.track_id):
                    played.append(message.track_id)
                    if len(played) < len(tracks):
                        # on a busy machine, give the next track's preparation the time it needs
                        await r.player.pause()
                        await r.player.wait_next_ready()
                        await r.player.play()
                if isinstance(message, StreamEnd) and message.reason != "paused":
                    break
        status = await r.player.status()
    assert message.reason == "end_of_queue" and status["state"] == "stop"
    assert sorted(played) == sorted(t.track_id for t in tracks)  # each entry exactly once
    # the deck prepared for gapless playback was always the track that played next
    stats = r.player.statistics()
    assert (stats.gapless_ready, stats.gapless_late) == (3, 0)


async def test_random_next_previous_edits_and_repeat_follow_one_order(tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_tracks(music, SPECS + [("5.flac", 1.0, 44_100, 5, False), ("6.flac", 1.0, 44_100, 6, False)])
    async with rig(tmp_path, music, rng=random.Random(5)) as r:
        with trio.fail_after(20):
            tracks = await r.library.resolve_paths([str(music)])
            await r.player.add(tracks[:4])
            await r.player.set_options(random=True)
            await r.player.play()
            await r.player.pause()  # commands only from here: no audio needed

            async def current() -> int:
                return (await r.player.status())["track"]["track_id"]

            order = [await current()]
            for _ in range(2):
                order.append((await r.player.next())["track"]["track_id"])
            # previous walks back along the order played, next walks forward along it again
            assert (await r.player.previous())["track"]["track_id"] == order[1]
            assert (await r.player.previous())["track"]["track_id"] == order[0]
            assert (await r.player.next())["track"]["track_id"] == order[1]
            assert (await r.player.next())["track"]["track_id"] == order[2]
            # a new entry joins the unplayed part; a removed unplayed entry leaves it
            await r.player.add(tracks[4:5])
            (unplayed,) = {t.track_id for t in tracks[:4]} - set(order)
            queue = (await r.player.queue_list())["items"]
            await r.player.delete([next(i["pos"] for i in queue if i["track_id"] == unplayed)])
            order.append((await r.player.next())["track"]["track_id"])
            assert order[-1] == tracks[4].track_id
            status = await r.player.next()
            assert status["state"] == "stop" and status["track"] is None  # all played once: stop
            # with repeat, every round is a new order of all entries, and no entry plays twice in a row
            await r.player.set_options(repeat=True)
            status = await r.player.play()
            await r.player.pause()
            rounds = [status["track"]["track_id"]]
            for _ in range(3 * 4 - 1):
                rounds.append((await r.player.next())["track"]["track_id"])
        ids = {order[0], order[1], order[2], tracks[4].track_id}
        for k in range(3):
            assert set(rounds[4 * k : 4 * k + 4]) == ids
        assert all(a != b for a, b in itertools.pairwise(rounds))


async def test_a_failed_fast_start_piece_is_logged_and_counted(tmp_path: Path, caplog) -> None:
    music = tmp_path / "music"
    (a,) = write_tracks(music, [("1.flac", 1.0, 44_100, 1, False)])
    async with rig(tmp_path, music) as r:

        async def broken_piece(*args, **kwargs):
            raise RuntimeError("piece renderer broke")

        r.mastering.render_piece = broken_piece  # the chunk path still works
        await r.player.add(await r.library.resolve_paths([str(a)]))
        sub = await r.player.subscribe(max_blocks=400)
        await r.player.play()
        with trio.fail_after(20):
            async for message in sub.receive:
                if isinstance(message, StreamEnd):
                    break
        status = await r.player.status()
    assert message.reason == "end_of_queue"  # played from the chunks
    failures = status["player"]["piece_failures"]
    assert failures >= 1
    warnings = [rec for rec in caplog.records if rec.levelname == "WARNING" and "piece" in rec.getMessage()]
    assert len(warnings) == failures
    assert str(a) in warnings[0].getMessage() and "piece renderer broke" in warnings[0].getMessage()
