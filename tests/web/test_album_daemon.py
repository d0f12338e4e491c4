"""Album mode end to end through a real ``auralisd`` process: control over /control, audio from /stream.

A continuous piece split into 2, 5 and 12 tracks of one album (the 12 include tracks far shorter
than the renderer's 1 s pre-roll) plays in album mode equal to the one-file render within -90 dBFS
across every boundary; with album mode off (the control) it does not. Two tracks of one album (untagged files in one folder: the folder rule) that split a continuous piece
play gaplessly in album mode: what a /stream listener hears equals the one-file render of the album
with the album plan (no seam, no level step at the boundary), and the decision events name the mode
and the album plan. The mode set over RPC and the album's analysis survive a restart (database).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

from auralis.album import AlbumLayout, compute_album_plan_inputs, plan_album
from auralis.audio import write_audio
from auralis.render import render_chunk
from auralis.synth import make_music
from tests.web.daemon import Capture, Control, receive_into, running_daemon, track_ids

RATE = 44_100
SEAM_LIMIT_DBFS = -90.0
GAIN_WINDOW = int(0.05 * RATE)


def _split_piece(music: Path) -> tuple[list[Path], np.ndarray, int]:
    piece = make_music(6.0, RATE, bpm=110, seed=7)
    t = np.arange(piece.shape[0]) / RATE
    piece = (piece * 10 ** (np.interp(t, [0.0, 2.0, 4.5, 6.0], [-18.0, -18.0, 0.0, 0.0]) / 20)[:, None])
    piece = piece.astype(np.float32)
    split = int(3.1 * RATE) + 11
    (music / "Concert").mkdir(parents=True)
    paths = [music / "Concert" / "01 part one.wav", music / "Concert" / "02 part two.wav"]
    write_audio(str(paths[0]), piece[:split], RATE)
    write_audio(str(paths[1]), piece[split:], RATE)
    return paths, piece, split


def _wait_notification(control: Control, name: str, predicate, timeout_s: float = 60.0) -> dict:
    return control.wait_notification(name, predicate, timeout_s=timeout_s)


def track_ids_by_path(daemon) -> dict[str, int]:
    with daemon.control() as control:
        tracks = control.call("library.search", {"query": "", "limit": 1000})["tracks"]
    return {t["path"]: t["track_id"] for t in tracks}


def _play_album(daemon, ids: list[int], *, wait_album: bool = True) -> tuple[Capture, list[dict]]:
    capture = Capture()
    with daemon.control() as control, connect(daemon.ws + "/stream", proxy=None, max_size=None) as ws:
        control.call("subscribe", {"events": ["mastering", "album_progress"]})
        control.call("queue.clear")
        control.call("queue.add", {"track_ids": ids})
        # queue.add starts the album's analysis in the background; play once it is done (warm)
        if wait_album:
            _wait_notification(control, "album_progress", lambda p: p.get("status") == "complete")
        control.call("play", {"pos": 0})
        receive_into(ws, capture, until=lambda c: any(e.get("type") == "audio_stream_end"
                                                      and e.get("reason") == "end_of_queue" for e in c.events),
                     timeout_s=60)
        control.call("ping")
        events = [payload for name, payload in control.notifications if name == "mastering"]
    return capture, events


def test_album_mode_end_to_end_no_step_and_persisted(tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths, piece, split = _split_piece(music)
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    with running_daemon(tmp_path / "run1", music) as daemon:
        ids = track_ids(daemon)
        order = [ids[p.name] for p in paths]
        with daemon.control() as control:
            assert control.call("status")["album_mode"] == "auto"  # the default
            assert control.call("album_mode.set", {"mode": "album"})["album_mode"] == "album"
        capture, events = _play_album(daemon, order)
    epochs = capture.by_epoch()
    starts = [e for e in capture.events if e["type"] == "audio_stream_start"]
    assert [s["track"]["track_id"] for s in starts] == order
    played = np.concatenate([np.concatenate([f.samples for f in epochs[s["stream_epoch"]]]) for s in starts])
    plan = plan_album(compute_album_plan_inputs(AlbumLayout.of_paths([str(p) for p in paths])), "adaptive", 1.0,
                      tracks=2)
    whole = tmp_path / "whole.wav"
    write_audio(str(whole), piece, RATE)
    reference = render_chunk(str(whole), plan, 0, chunk_frames=piece.shape[0])
    assert played.shape == reference.shape  # gapless: every frame once
    peak = float(np.max(np.abs(played.astype(np.float64) - reference)))
    assert 20 * math.log10(max(peak, 1e-30)) <= SEAM_LIMIT_DBFS

    def gain(a: int, b: int) -> float:
        return 10 * math.log10(float(np.sum(np.square(played[a:b], dtype=np.float64)))
                               / float(np.sum(np.square(piece[a:b], dtype=np.float64))))

    assert abs(gain(split, split + GAIN_WINDOW) - gain(split - GAIN_WINDOW, split)) < 0.2
    # The decision events: which mode, which album plan, for each track.
    assert [(e["track_id"], e["album_mode"], e["plan_scope"]) for e in events] == [
        (order[0], "album", "album"), (order[1], "album", "album")]
    assert all(e["album"]["name"] == "Concert" and e["plan"]["gain_db"] == plan.gain_db for e in events)
    assert starts[0]["plan"]["decisions"][-1].startswith("[album] one plan for the 2 tracks")

    # Restart on the same state: the mode set over RPC and the album's analysis come back.
    state = tmp_path / "run1" / "state"
    with running_daemon(tmp_path / "run2", music, "--state-dir", str(state)) as daemon:
        with daemon.control() as control:
            assert control.call("status")["album_mode"] == "album"
            control.call("subscribe", {"events": ["mastering"]})
            control.call("play", {"pos": 1})
            event = _wait_notification(control, "mastering", lambda p: True)
            assert event["plan_scope"] == "album" and event["plan"]["gain_db"] == plan.gain_db
            albums = control.call("status")["albums"]
            control.call("stop")
    assert albums["computed"] == 0 and albums["db_hits"] >= 1  # read back from the database, not analysed again


def _split_into(music: Path, name: str, piece: np.ndarray, parts: int, seed: int) -> tuple[list[Path], list[int]]:
    rng = np.random.default_rng(seed)
    cuts = sorted(int(c) for c in rng.choice(np.arange(2000, piece.shape[0] - 2000), size=parts - 1, replace=False))
    bounds = [0, *cuts, piece.shape[0]]
    (music / name).mkdir(parents=True)
    paths = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        paths.append(music / name / f"{i + 1:02d}.wav")
        write_audio(str(paths[-1]), piece[a:b], RATE)
    return paths, cuts


def _played(capture: Capture) -> tuple[np.ndarray, list[dict]]:
    epochs = capture.by_epoch()
    starts = [e for e in capture.events if e["type"] == "audio_stream_start"]
    return np.concatenate([np.concatenate([f.samples for f in epochs[s["stream_epoch"]]]) for s in starts]), starts


def test_five_and_twelve_tracks_in_album_mode_equal_the_one_file_render_and_off_steps(tmp_path: Path) -> None:
    piece = make_music(6.0, RATE, bpm=100, seed=9)
    t = np.arange(piece.shape[0]) / RATE
    piece = (piece * 10 ** (np.interp(t, [0.0, 6.0], [-20.0, 0.0]) / 20)[:, None]).astype(np.float32)
    music = tmp_path / "music"
    albums = {parts: _split_into(music, f"Mix{parts}", piece, parts, parts) for parts in (5, 12)}
    whole = tmp_path / "whole.wav"
    write_audio(str(whole), piece, RATE)
    (tmp_path / "run").mkdir()
    with running_daemon(tmp_path / "run", music) as daemon:
        ids = track_ids_by_path(daemon)
        for parts, (paths, _cuts) in albums.items():
            plan = plan_album(compute_album_plan_inputs(AlbumLayout.of_paths([str(p) for p in paths])), "adaptive",
                              1.0, tracks=parts)
            reference = render_chunk(str(whole), plan, 0, chunk_frames=piece.shape[0])
            with daemon.control() as control:
                control.call("album_mode.set", {"mode": "auto"})  # the queue plays each album in order
            capture, events = _play_album(daemon, [ids[str(p)] for p in paths])
            played, starts = _played(capture)
            assert len(starts) == parts and played.shape == reference.shape, parts
            peak = float(np.max(np.abs(played.astype(np.float64) - reference)))
            assert 20 * math.log10(max(peak, 1e-30)) <= SEAM_LIMIT_DBFS, (parts, peak)
            assert {(e["plan_scope"], e["plan"]["gain_db"]) for e in events} == {("album", plan.gain_db)}
        # Control: album mode off, the same five tracks each with its own plan: not the one-file render.
        paths, _ = albums[5]
        with daemon.control() as control:
            control.call("album_mode.set", {"mode": "off"})
        capture, events = _play_album(daemon, [ids[str(p)] for p in paths], wait_album=False)
        played, _ = _played(capture)
        plan = plan_album(compute_album_plan_inputs(AlbumLayout.of_paths([str(p) for p in paths])), "adaptive", 1.0,
                          tracks=5)
        reference = render_chunk(str(whole), plan, 0, chunk_frames=piece.shape[0])
        assert played.shape == reference.shape
        assert 20 * math.log10(float(np.max(np.abs(played.astype(np.float64) - reference)))) > -40.0
        assert {e["plan_scope"] for e in events} == {"track"} and len({e["plan"]["gain_db"] for e in events}) > 1
