"""Job results through the workers' shared-memory arenas (``auralisd/result_arena.py``), with real workers.

A rendered chunk through the arena is the same bytes as through the pipe; a worker SIGKILLed mid-job
leads to a rerender on a new worker and its arena is removed; the pool's exit removes every arena it
made, and opening a pool removes those a killed daemon left. The arena's own checks (a torn copy is
refused, a full tmpfs falls back to the pipe) run in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio

from auralisd import jobs, result_arena
from auralisd.actors.pool import open_mastering_pool

pytestmark = pytest.mark.skipif(not os.path.isdir(result_arena.SHM_DIR), reason="no /dev/shm")


def _arenas(daemon_pid: int | None = None) -> set[str]:
    prefix = result_arena.arena_prefix(daemon_pid)
    return {name for name in os.listdir(result_arena.SHM_DIR) if name.startswith(prefix)}


def slow_result(frames: int, delay_s: float) -> np.ndarray:
    """A job that takes ``delay_s`` before returning its (arena-sized) result."""
    time.sleep(delay_s)
    return np.arange(frames * 2, dtype=np.float32).reshape(frames, 2)


@pytest.fixture
def flac(tmp_path: Path) -> Path:
    rate = 48_000
    t = np.arange(12 * rate) / rate
    x = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1)
    path = tmp_path / "a.flac"
    sf.write(path, x.astype(np.float32), rate)
    return path


async def test_a_chunk_through_the_arena_is_the_same_bytes_as_through_the_pipe(flac: Path) -> None:
    from auralis.plan import plan_mastering

    plan = plan_mastering(None, "adaptive", 1.0)
    results = {}
    for shared in (False, True):
        with trio.fail_after(60):
            async with open_mastering_pool(1, shared_memory=shared) as pool:
                chunk = await pool.run(jobs.render_chunk_stereo, str(flac), plan, 1, None, 44_100, label="chunk")
                piece = await pool.run(jobs.render_chunk_stereo, str(flac), None, 2, 9_600, 44_100, label="piece")
                summary = pool.timeline()["labels"]
        assert summary["chunk"]["via_shm"] == (1 if shared else 0)
        assert summary["piece"]["via_shm"] == (1 if shared else 0)
        results[shared] = (chunk, piece)
    for via_pipe, via_arena in zip(results[False], results[True], strict=True):
        assert via_arena.dtype == via_pipe.dtype == np.float32 and via_arena.shape == via_pipe.shape
        assert via_arena.tobytes() == via_pipe.tobytes()
        assert via_arena.flags.writeable and via_arena.base is None  # the daemon's own copy, not a view


async def test_a_worker_killed_mid_job_is_rerendered_and_leaves_no_arena() -> None:
    frames = 44_100
    with trio.fail_after(60):
        async with open_mastering_pool(1) as pool:
            first = await pool.run(slow_result, frames, 0.0)  # the worker now has an arena
            (killed_pid,) = pool.timeline()["workers"]
            assert _arenas(os.getpid()) == {f"{result_arena.arena_prefix()}{killed_pid}"}
            result: list[np.ndarray] = []

            async def job() -> None:
                result.append(await pool.run(slow_result, frames, 1.0))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(job)
                await pool.wait_running()  # handed to the worker (it sleeps 1 s in it)
                os.kill(int(killed_pid), signal.SIGKILL)
            assert pool.statistics().worker_deaths == 1 and pool.statistics().retries == 1
            assert result[0].tobytes() == first.tobytes()  # rendered again, on a new worker
            (new_pid,) = set(pool.timeline()["workers"]) - {killed_pid}
            assert _arenas(os.getpid()) == {f"{result_arena.arena_prefix()}{new_pid}"}  # the dead one's is gone
    assert _arenas(os.getpid()) == set()  # shutdown removed the rest


def _pid_of_a_finished_process() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


async def test_opening_a_pool_removes_the_arenas_of_daemons_no_longer_running(tmp_path: Path) -> None:
    gone = _pid_of_a_finished_process()  # a pid that is certainly not running now
    stale = Path(result_arena.SHM_DIR) / f"{result_arena.arena_prefix(gone)}12345"
    stale.write_bytes(b"x" * 100)
    alive = Path(result_arena.SHM_DIR) / f"{result_arena.arena_prefix(os.getppid())}12345"  # a running "daemon"
    alive.write_bytes(b"x" * 100)
    try:
        with trio.fail_after(30):
            async with open_mastering_pool(1):
                assert not stale.exists()
                assert alive.exists()
    finally:
        stale.unlink(missing_ok=True)
        alive.unlink(missing_ok=True)


def test_a_result_overwritten_during_its_copy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(result_arena, "SHM_DIR", str(tmp_path))
    arena = result_arena.WorkerArena(str(tmp_path / "arena"))
    ref = arena.put(np.ones((20_000, 2), dtype=np.float32))
    assert result_arena.take(ref).sum() == 40_000
    arena.put(np.zeros((20_000, 2), dtype=np.float32))  # the worker's next result, before the copy
    with pytest.raises(result_arena.ArenaOverwritten):
        result_arena.take(ref)


def test_small_or_object_results_and_a_full_arena_go_through_the_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result_arena, "SHM_DIR", str(tmp_path))
    monkeypatch.setattr(result_arena, "_arenas", {})
    small = np.ones(100, dtype=np.float32)
    assert result_arena.publish("p-1-", small) is small
    objects = np.array([object()] * 100_000)
    assert result_arena.publish("p-1-", objects) is objects
    big = np.ones((100_000, 2), dtype=np.float32)
    assert isinstance(result_arena.publish("p-1-", big), result_arena.ArenaRef)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    bigger = np.ones((200_000, 2), dtype=np.float32)
    assert result_arena.publish("p-1-", bigger) is bigger
