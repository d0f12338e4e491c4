"""The daemon's background library analysis on a Dask cluster (the resolver with a ClusterAnalysis bridge).

Real parts: a ``distributed.LocalCluster`` with worker processes, the daemon's own worker pool,
a real SQLite file, generated FLAC files. Without ``dask_scheduler`` nothing changes (the rest of
the suite); with it, background work goes to the cluster and the playhead's work stays local.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import trio

from auralis.fingerprint import compute_fingerprint
from auralis.sidecar import SIDECAR_SUFFIX, read_sidecar
from auralisd.actors.cluster import ClusterAnalysis
from auralisd.actors.database import Database
from auralisd.actors.events import EventHub
from auralisd.actors.fingerprints import FingerprintResolver, to_auralis
from auralisd.actors.library import Library
from auralisd.actors.pool import open_mastering_pool

from .conftest import write_tracks

distributed = pytest.importorskip("distributed", reason="the cluster extra: pip install 'auralis[cluster]'")

TRACKS = 12


@pytest.fixture(scope="module")
def local_cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as lc:
        yield lc


@pytest.fixture(scope="module")
def idle_scheduler():
    """A scheduler without a single worker: whatever is sent there never finishes."""
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0", silence_logs=logging.ERROR) as lc:
        yield lc


def _library(tmp_path: Path) -> list[Path]:
    return write_tracks(tmp_path / "music", [(f"{i:02d}.flac", 1.5, 22_050, i, i % 3 == 0) for i in range(TRACKS)])


async def _with_resolver(tmp_path: Path, body, **resolver_kwargs) -> None:
    db = Database(str(tmp_path / "state.sqlite3"))
    hub = EventHub()
    async with trio.open_nursery() as outer:
        await outer.start(db.run)
        async with open_mastering_pool(1) as pool, trio.open_nursery() as nursery:
            bridge = resolver_kwargs.get("cluster")
            if bridge is not None:
                await nursery.start(bridge.run)
            library = Library(db, hub, [str(tmp_path / "music")])
            await nursery.start(library.run)
            resolver = FingerprintResolver(db, pool, hub, cache_dir=str(tmp_path / "cache"), **resolver_kwargs)
            await nursery.start(resolver.run)
            library.scan()
            await library.wait_scan()
            await body(db, pool, library, resolver)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def test_background_analysis_runs_on_the_cluster_and_equals_one_process(local_cluster, tmp_path: Path) -> None:
    paths = _library(tmp_path)
    mirror = tmp_path / "mirror"
    bridge = ClusterAnalysis(local_cluster.scheduler_address)

    async def body(db, pool, library, resolver) -> None:
        resolver.schedule_idle()
        with trio.fail_after(180):
            await resolver.wait_analysis()
        progress = resolver.analysis_progress()
        assert (progress.done, progress.failed, progress.queued, progress.running) == (TRACKS, 0, 0, False)
        assert progress.where == local_cluster.scheduler_address and progress.rate > 0
        assert bridge.statistics().done == TRACKS  # every track went to the cluster...
        assert pool.statistics().jobs_done == 0  # ...and none to the daemon's own pool
        for path in paths:
            (track,) = await library.resolve_paths([str(path)])
            stored = await db.get_fingerprint(track.track_id)
            assert stored is not None and stored.complete
            assert to_auralis(stored) == compute_fingerprint(str(path))  # bit for bit
        # sidecars in the mirror tree only: the music folder is untouched
        assert not any(name.endswith(SIDECAR_SUFFIX) for name in os.listdir(tmp_path / "music"))  # noqa: ASYNC240
        for path in paths:  # found in the mirror (not beside, and the cache folder is another)
            assert read_sidecar(str(path), mirror_dir=str(mirror)) == compute_fingerprint(str(path))

    await _with_resolver(tmp_path, body, cluster=bridge, sidecars="mirror", sidecar_dir=str(mirror))


async def test_the_playheads_work_stays_on_the_local_pool_while_the_cluster_is_busy(
    idle_scheduler, tmp_path: Path
) -> None:
    """The cluster never answers here; a track someone wants now is analysed locally all the same."""
    paths = _library(tmp_path)
    bridge = ClusterAnalysis(idle_scheduler.scheduler_address)

    async def body(db, pool, library, resolver) -> None:
        resolver.schedule_idle()
        with trio.fail_after(60):
            await bridge.wait_in_flight(TRACKS)  # every track is waiting on the cluster
        (track,) = await library.resolve_paths([str(paths[5])])
        with trio.fail_after(60):
            resolved = await resolver.plan_inputs(track)  # the current track's plan: first audio needs it
        assert resolved is not None and resolved.source == "computed"
        assert pool.statistics().jobs_done >= 1  # computed by the local pool, not the stalled cluster
        assert resolver.analysis_progress().running  # the background round is still out there

    await _with_resolver(tmp_path, body, cluster=bridge, sidecars="none")
    assert not any(name.endswith(SIDECAR_SUFFIX) for name in os.listdir(tmp_path / "music"))  # sidecars = none


async def test_an_unreachable_scheduler_falls_back_to_the_local_pool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_tracks(tmp_path / "music", [(f"{i}.flac", 1.5, 22_050, i, False) for i in range(3)])
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bridge = ClusterAnalysis(f"tcp://127.0.0.1:{port}", connect_timeout_s=2.0)

    async def body(db, pool, library, resolver) -> None:
        resolver.schedule_idle()
        with trio.fail_after(180):
            await resolver.wait_analysis()
        progress = resolver.analysis_progress()
        assert (progress.done, progress.failed) == (3, 0)
        assert pool.statistics().jobs_done >= 3 and bridge.statistics().done == 0
        for path in paths:
            assert read_sidecar(str(path)) == compute_fingerprint(str(path))  # beside, the default

    with caplog.at_level(logging.INFO, logger="auralisd"):
        await _with_resolver(tmp_path, body, cluster=bridge)
    errors = [r for r in caplog.records if r.name == "auralisd.cluster" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot reach the Dask scheduler" in errors[0].getMessage()
    lines = [r.getMessage() for r in caplog.records if r.name == "auralisd.fingerprints" and r.levelno == logging.INFO]
    assert len(lines) == 1 and lines[0].startswith("library analysis finished")  # one summary, no line per track
    assert "3 done, 0 failed, 0 queued" in lines[0]


def test_a_real_daemon_with_dask_scheduler_and_auralisctl_analysis_wait(
    local_cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``auralisd --dask-scheduler`` end to end: the library is analysed on the cluster and
    ``auralisctl analysis --wait`` waits for it, then reports the totals; the log summarises."""
    from clients import auralisctl
    from tests.service.daemon_process import start_daemon

    music = tmp_path / "music"
    paths = write_tracks(music, [(f"{i:02d}.flac", 1.5, 22_050, i, False) for i in range(6)])
    mirror = tmp_path / "mirror"
    daemon = start_daemon(tmp_path, music, extra=[
        "--dask-scheduler", local_cluster.scheduler_address, "--sidecar-dir", str(mirror), "--log-level", "info",
    ])  # fmt: skip
    try:
        code = auralisctl.main(["--socket", daemon.socket_path, "analysis", "--wait"])
        out = capsys.readouterr().out
        assert code == 0
        assert out.splitlines()[-1] == (
            f"analysis complete: 6 done, 0 failed, 0 queued, {out.split('queued, ')[-1].split(' tracks/s')[0]}"
            f" tracks/s ({local_cluster.scheduler_address})"
        )
        assert all(read_sidecar(str(p), mirror_dir=str(mirror)) == compute_fingerprint(str(p)) for p in paths)
        status = daemon.call("status")
        assert status["analysis"]["where"] == local_cluster.scheduler_address
        assert status["fingerprints"]["cluster_computed"] == status["fingerprints"]["computed"] == 6
        assert status["fingerprints"]["plan_inputs_computed"] == 0  # nothing of it ran on the daemon's own workers
    finally:
        assert daemon.stop() == 0
    log = daemon.log_path.read_text()
    assert "library analysis finished: 6 done, 0 failed, 0 queued" in log
    assert "fingerprinted" not in log  # no INFO line per track
