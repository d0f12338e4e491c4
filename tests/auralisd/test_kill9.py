"""Acknowledged changes survive ``kill -9`` (issue 11): a real daemon process, killed again and again.

Each cycle starts ``auralisd`` on the same state folder, checks that everything the previous
daemon acknowledged is there (queue, queue position, play state, preset, intensity, volume,
options) and that the play position came back at most 1 s early, then makes one to four
random changes (the queue edits: add, insert, delete, move, swap, shuffle) and kills the
daemon's whole process group with SIGKILL at a random moment after the last reply: at once
(the reply and the kill race each other) or after up to 1.2 s (the periodic position save is
what is tested then). ``AURALIS_KILL9_CYCLES`` changes the
number of cycles (default 100; about 2-3 minutes on a loaded 2-core machine).

Every restart runs the code it finds on disk: the test checks that the daemon's source did not change
during the run (an edit made meanwhile, say in the worktree under test, would put other code under test
from that cycle on, and its failures or passes would prove nothing). When the queue comes back wrong it
says the last cycle's edits, the rows the killed daemon left in ``queue_entries`` (song id, order key,
priority, track id, in the order a restart loads them) and the end of that daemon's log.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import auralis
import auralisd

from .conftest import DaemonProcess, write_tracks
from .rpc import Client, RpcError

CYCLES = int(os.environ.get("AURALIS_KILL9_CYCLES", "100"))
TRACK_S = 45.0  # long enough that no track ends during the test (seeks keep the playhead early)
SEEK_BACK_AFTER_S = 25.0
POSITION_LAG_S = 1.0  # the promise: the restored position is at most this much earlier
BLOCK_S = 0.05  # the player's clock moves in blocks of this length
PRESETS = ("adaptive", "gentle", "warm", "bright", "punchy")
KEPT = ("state", "queue_pos", "queue_length", "preset", "intensity", "volume", "repeat", "random", "single", "consume")


def source_digest() -> str:
    """A digest of the Python source a daemon started now would run (``auralisd`` and ``auralis``)."""
    digest = hashlib.sha256()
    for package in (auralisd, auralis):
        root = Path(str(package.__file__)).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class KillableDaemon:
    """``auralisd`` in its own session, so one ``killpg`` takes the daemon and its workers at once."""

    def __init__(self, root: Path, music: Path) -> None:
        self.spec = DaemonProcess(root, music, ["--workers", "1", "--log-level", "info"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0  # where the log of the daemon started last begins
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout_s: float = 60.0) -> float:
        """Start and wait until it answers; returns the monotonic time it was started."""
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS")}
        env["XDG_CONFIG_HOME"] = str(self.spec.root / "config")
        started = time.monotonic()
        with open(self.spec.log_path, "ab") as log:
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.spec.args(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        while time.monotonic() < started + timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"auralisd exited with {self.proc.returncode}:\n{self.spec.log()[-4000:]}")
            try:
                with Client.unix(self.spec.socket_path, timeout_s=5) as client:
                    if client.call("ping") == "pong":
                        return started
            except (OSError, ConnectionError):
                time.sleep(0.02)
        raise TimeoutError(f"auralisd did not start:\n{self.spec.log()[-4000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def client(self) -> Client:
        return Client.unix(self.spec.socket_path)

    def life_log(self, chars: int = 3000) -> str:
        """The end of the log of the daemon started last."""
        with open(self.spec.log_path, "rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")[-chars:]

    def keep_killed_state(self) -> None:
        """Copy the database the killed daemon left (with its WAL) aside, untouched: the next daemon
        recovers the original, and the copy says what it found (:meth:`stored_queue`)."""
        kept = self.spec.root / "killed-state"
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir()
        for suffix in ("", "-wal", "-shm"):
            path = self.spec.state_dir / f"auralis.sqlite3{suffix}"
            if path.exists():
                shutil.copy2(path, kept / path.name)

    def stored_queue(self) -> list[tuple[int, int, int, int]]:
        """``(song id, order key, priority, track id)`` in the copy :meth:`keep_killed_state` made, in the
        order a restart loads them."""
        conn = sqlite3.connect(self.spec.root / "killed-state" / "auralis.sqlite3")
        try:
            return conn.execute(
                "SELECT song_id, sort_key, prio, track_id FROM queue_entries ORDER BY sort_key, song_id"
            ).fetchall()
        finally:
            conn.close()


@pytest.fixture
def killable(tmp_path: Path):
    music = tmp_path / "music"
    write_tracks(music, [(f"{i:02d} track.flac", TRACK_S, 44_100, i, i == 2) for i in range(1, 5)])
    daemon = KillableDaemon(tmp_path / "daemon", music)
    yield daemon, music
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.kill9()


class Expected:
    """What the killed daemon acknowledged: the queue (track ids in order), the last full status
    reply, and a bound on the play position at the moment of the kill."""

    def __init__(self) -> None:
        self.queue: list[int] = []
        self.status: dict[str, Any] = {}
        self.position_at_most_s = 0.0
        self.position_at_least_s = 0.0
        self.log: list[str] = []  # the last cycle's queue edits and their replies (said when a check fails)
        self.daemon_log = ""  # the end of the killed daemon's log


def _change(c: Client, rng: random.Random, exp: Expected, library: list[int]) -> dict[str, Any] | None:
    """One random change; returns the status reply when the command gives one (a refusal such as
    ``seek`` while stopped changes nothing and returns None)."""
    try:
        return _try_change(c, rng, exp, library)
    except RpcError as exc:
        assert exc.code == "not_found", exc
        return None


def _try_change(c: Client, rng: random.Random, exp: Expected, library: list[int]) -> dict[str, Any] | None:
    n = len(exp.queue)
    kind = rng.choice(["add", "insert", "delete", "move", "swap", "shuffle", "play", "pause", "next", "previous",
                       "seek", "stop", "preset", "intensity", "volume", "options", "options"])  # fmt: skip
    if kind == "add" and n < 8:
        track_id = rng.choice(library)
        c.call("queue.add", track_ids=[track_id])
        exp.queue.append(track_id)
        exp.log.append(f"add {track_id} -> {exp.queue}")
    elif kind == "insert" and n < 8:
        track_id, pos = rng.choice(library), rng.randrange(n + 1)
        c.call("queue.insert", pos=pos, track_ids=[track_id])
        exp.queue.insert(pos, track_id)
        exp.log.append(f"insert {track_id} at {pos} -> {exp.queue}")
    elif kind == "delete" and n > 2:
        pos = rng.randrange(n)
        c.call("queue.delete", positions=[pos])
        del exp.queue[pos]
        exp.log.append(f"delete {pos} -> {exp.queue}")
    elif kind == "move" and n > 1:
        a, b = rng.randrange(n), rng.randrange(n)
        c.call("queue.move", from_pos=a, to_pos=b)
        exp.queue.insert(b, exp.queue.pop(a))
        exp.log.append(f"move {a} {b} -> {exp.queue}")
    elif kind == "swap" and n > 1:
        a, b = rng.randrange(n), rng.randrange(n)
        c.call("queue.swap", a=a, b=b)
        exp.queue[a], exp.queue[b] = exp.queue[b], exp.queue[a]
        exp.log.append(f"swap {a} {b} -> {exp.queue}")
    elif kind == "shuffle" and n > 1:
        start = rng.randrange(n)
        c.call("queue.shuffle", start=start, end=rng.randrange(start, n + 1))
        exp.queue = [item["track_id"] for item in c.call("queue.list")["items"]]  # the order it acknowledged
        exp.log.append(f"shuffle {start}: -> {exp.queue}")
    elif kind == "play":
        return c.call("play", pos=rng.randrange(n)) if rng.random() < 0.5 else c.call("play")
    elif kind in ("pause", "next", "previous", "stop"):
        return c.call(kind)
    elif kind == "seek":
        return c.call("seek", position_s=round(rng.uniform(0.0, 20.0), 3))
    elif kind == "preset":
        return c.call("preset.set", name=rng.choice(PRESETS))
    elif kind == "intensity":
        return c.call("intensity.set", value=round(rng.uniform(0.0, 1.0), 2))
    elif kind == "volume":
        return c.call("volume.set", percent=rng.randrange(101))
    else:
        flags = {k: rng.random() < 0.5 for k in ("repeat", "random", "single")}
        return c.call("options.set", **flags, consume=False)
    return None


def _check(c: Client, exp: Expected, restarted_at: float, cycle: int, daemon: KillableDaemon) -> dict[str, Any]:
    status = c.call("status")
    since_start_s = time.monotonic() - restarted_at
    queue = [item["track_id"] for item in c.call("queue.list")["items"]]
    where = f"cycle {cycle}"
    assert queue == exp.queue, (
        f"{where}: queue lost an acknowledged edit ({'; '.join(exp.log)}); the killed daemon left the rows"
        f" (song id, order key, priority, track id) {daemon.stored_queue()}; the end of its log:\n{exp.daemon_log}"
    )
    want = {k: exp.status[k] for k in KEPT}
    want["queue_length"] = len(exp.queue)
    got = {k: status[k] for k in KEPT}
    assert got == want, f"{where}: acknowledged state lost"
    assert (status["track"] or {}).get("track_id") == (exp.status["track"] or {}).get("track_id"), where
    elapsed = status["elapsed_s"]
    if exp.status["state"] == "stop":
        assert elapsed == 0.0, where
    else:
        assert elapsed >= exp.position_at_most_s - POSITION_LAG_S, f"{where}: position {elapsed} s restored too early"
        playing_since = since_start_s if exp.status["state"] == "play" else 0.0
        assert elapsed <= exp.position_at_most_s + playing_since + BLOCK_S, f"{where}: position {elapsed} s from nowhere"
        assert elapsed >= exp.position_at_least_s - POSITION_LAG_S, where
    return status


def test_acknowledged_changes_survive_kill9_at_random_moments(killable) -> None:
    daemon, music = killable
    rng = random.Random(11)
    exp = Expected()
    source = source_digest()
    started = time.monotonic()
    restarted_at = daemon.start()
    with daemon.client() as c:
        c.wait_status(lambda s: not s["scan"]["running"] and s["scan"]["tracks"] >= 4, timeout_s=60)
        library = [item["track_id"] for item in c.call("queue.add", paths=[str(music)])["added"]]
        exp.queue = list(library)
        exp.status = c.call("play", pos=0)
    immediate_kills = 0
    for cycle in range(CYCLES):
        with daemon.client() as c:
            if cycle > 0:
                status = _check(c, exp, restarted_at, cycle, daemon)
            else:
                status = exp.status
            exp.log = []
            changes = rng.randrange(1, 5)
            for _ in range(changes - 1):
                _change(c, rng, exp, library)
            if status["elapsed_s"] > SEEK_BACK_AFTER_S:  # keep away from the end of the track
                c.call("seek", position_s=round(rng.uniform(0.0, 10.0), 3))
            last = None
            while last is None:  # the last change is one whose reply is the whole status
                sent = time.monotonic()
                last = _change(c, rng, exp, library)
            exp.status = last
            if rng.random() < 0.5:  # kill as soon as the reply is in
                reference_s, reference_sent = last["elapsed_s"], sent
                immediate_kills += 1
            else:  # kill at a random moment up to 1.2 s later (the position is saved twice a second)
                time.sleep(rng.uniform(0.0, 1.2))
                reference_sent = time.monotonic()
                reference_s = c.call("status")["elapsed_s"]
            killed_at = time.monotonic()
            daemon.kill9()
        daemon.keep_killed_state()
        exp.daemon_log = daemon.life_log()
        assert source_digest() == source, (
            f"cycle {cycle}: the daemon's source changed during the run (edited meanwhile?): the next daemon"
            " would run other code, and what the run found would prove nothing"
        )
        moving = exp.status["state"] == "play"
        exp.position_at_least_s = reference_s
        exp.position_at_most_s = reference_s + ((killed_at - reference_sent) + BLOCK_S if moving else 0.0)
        restarted_at = daemon.start()
    with daemon.client() as c:
        _check(c, exp, restarted_at, CYCLES, daemon)
    runtime_s = time.monotonic() - started
    print(f"kill -9 test: {CYCLES} cycles ({immediate_kills} kills right after the reply) in {runtime_s:.1f} s")
    assert 0 < immediate_kills < CYCLES
