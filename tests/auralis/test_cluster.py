"""`auralis analyze` on a Dask distributed cluster: exact results, dead workers, reruns, Ctrl-C, --path-map.

A real ``distributed.LocalCluster`` with two worker processes analyses a generated library of a
few hundred short files (and a few long ones, split into segments over the workers); every
fingerprint must equal the one-process value bit for bit.
"""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralis import cluster
from auralis.commands.analyze import ProgressBar
from auralis.fingerprint import Fingerprint
from auralis.sidecar import SIDECAR_SUFFIX, mirror_sidecar_path, read_sidecar

distributed = pytest.importorskip("distributed", reason="the cluster extra: pip install 'auralis[cluster]'")

SHORT_FILES = 240
LONG_FILES = 3  # 65 s each: three 30 s segments, split over the workers (split_segments=1)
SR = 8_000


def _write_library(folder: Path) -> list[str]:
    """Short stereo files of noise + tones (varied levels, lengths and formats), a few long ones, two bad ones."""
    rng = np.random.default_rng(14)
    paths = []
    for i in range(SHORT_FILES):
        seconds = 0.4 + 0.05 * (i % 9)
        t = np.arange(int(seconds * SR)) / SR
        tone = np.sin(2 * np.pi * (110.0 + 7.0 * i) * t)[:, None] * np.array([0.5, 0.3])
        x = (tone + 0.05 * rng.standard_normal((t.size, 2))) * (0.2 + 0.7 * rng.random())
        sub = folder / f"album{i // 40:02d}"
        sub.mkdir(exist_ok=True)
        path = sub / f"{i:03d}.{'flac' if i % 2 else 'wav'}"
        sf.write(str(path), x.astype(np.float32), SR, subtype="PCM_16" if i % 2 else "FLOAT")
        paths.append(str(path))
    for i in range(LONG_FILES):
        t = np.arange(65 * SR) / SR
        x = 0.3 * np.sin(2 * np.pi * (220.0 + 50 * i) * t) * (1.0 + 0.5 * np.sin(2 * np.pi * 0.1 * t))
        path = folder / f"long{i}.flac"
        sf.write(str(path), np.stack([x, 0.8 * x], axis=1).astype(np.float32), SR, subtype="PCM_24")
        paths.append(str(path))
    (folder / "notes.flac").write_text("not audio\n")
    (folder / "empty.wav").write_bytes(b"")
    paths += [str(folder / "notes.flac"), str(folder / "empty.wav")]
    return sorted(paths)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Fingerprint | str]]:
    """A library and its one-process result: a fingerprint per good file, the error code per bad one."""
    folder = tmp_path_factory.mktemp("library")
    expected: dict[str, Fingerprint | str] = {}
    for path in _write_library(folder):
        result = cluster.file_task(path, split_segments=1 << 30)
        expected[path] = result.fingerprint if isinstance(result, cluster.FileDone) else result.code
    return folder, expected


@pytest.fixture(scope="module")
def local_cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as lc, distributed.Client(lc) as client:
        yield lc, client


def _fresh_copy(reference, tmp_path: Path) -> tuple[list[str], dict[str, Fingerprint | str]]:
    """The reference library copied (without sidecars) under ``tmp_path``, and its expected results there."""
    folder, expected = reference
    out: dict[str, Fingerprint | str] = {}
    for path, value in expected.items():
        target = tmp_path / os.path.relpath(path, folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(path).read_bytes())
        out[str(target)] = value
    return sorted(out), out


def _run(client, paths, **kwargs) -> dict[str, cluster.Outcome]:
    outcomes: dict[str, cluster.Outcome] = {}

    def on_outcome(outcome: cluster.Outcome) -> None:
        assert outcome.path not in outcomes, "a file reported twice"
        outcomes[outcome.path] = outcome

    cluster.analyze_on_cluster(client, paths, on_outcome, **kwargs)
    return outcomes


def _assert_exact(outcomes: dict[str, cluster.Outcome], expected: dict[str, Fingerprint | str]) -> None:
    assert set(outcomes) == set(expected)
    for path, want in expected.items():
        got = outcomes[path]
        if isinstance(want, str):
            assert got.source == "failed" and got.code == want, path
        else:
            assert got.source in ("computed", "sidecar"), (path, got.message)
            assert got.fingerprint == want, path  # every dimension and measurement, to the last bit


def test_a_two_worker_cluster_gives_the_one_process_fingerprints_and_a_rerun_skips_every_file(
    reference, local_cluster, tmp_path: Path
) -> None:
    _, client = local_cluster
    paths, expected = _fresh_copy(reference, tmp_path)
    first = _run(client, paths, split_segments=1)  # the 65 s files go out as three segments each
    _assert_exact(first, expected)
    good = [p for p, v in expected.items() if not isinstance(v, str)]
    assert {first[p].source for p in good} == {"computed"}
    assert all(first[p].sidecar == p + SIDECAR_SUFFIX and read_sidecar(p) == expected[p] for p in good)
    again = _run(client, paths, split_segments=1)
    _assert_exact(again, expected)
    assert {again[p].source for p in good} == {"sidecar"}  # nothing recomputed


def test_a_worker_killed_mid_run_changes_nothing(reference, local_cluster, tmp_path: Path) -> None:
    lc, client = local_cluster
    paths, expected = _fresh_copy(reference, tmp_path)
    pids = client.run(os.getpid)  # worker address -> its process id
    victim = sorted(pids.values())[0]
    killed_at: list[int] = []
    outcomes: dict[str, cluster.Outcome] = {}

    def on_outcome(outcome: cluster.Outcome) -> None:
        outcomes[outcome.path] = outcome
        if len(outcomes) == 20 and not killed_at:
            os.kill(victim, signal.SIGKILL)
            killed_at.append(len(outcomes))

    cluster.analyze_on_cluster(client, paths, on_outcome, split_segments=1)
    assert killed_at == [20] and len(outcomes) > 20 + 100  # most of the run came after the kill
    _assert_exact(outcomes, expected)
    client.wait_for_workers(2, timeout=60)  # the nanny brought a new worker up
    assert victim not in client.run(os.getpid).values()


def test_path_map_sends_the_workers_their_own_mount(reference, local_cluster, tmp_path: Path) -> None:
    _, client = local_cluster
    paths, expected = _fresh_copy(reference, tmp_path / "local")
    paths, expected = paths[:12] + paths[-3:], {p: expected[p] for p in paths[:12] + paths[-3:]}
    remote = tmp_path / "remote-mount"
    (tmp_path / "local").rename(remote)  # the files now exist only where the "workers" mount them
    local = str(tmp_path / "local")
    path_map = cluster.PathMap.parse([f"{local}={remote}"])
    outcomes = _run(client, paths, path_map=path_map, sidecars=cluster.SidecarPolicy("none"))
    _assert_exact(outcomes, expected)  # read through the map; reported under the driver's paths
    bad = [o for o in outcomes.values() if o.source == "failed"]
    assert bad and all(o.message.startswith(local) for o in bad)  # worker messages name the driver's paths


def test_path_map_translation() -> None:
    pm = cluster.PathMap.parse(["/music=/mnt/nas/music", "/music/classical=/mnt/other"])
    assert pm.to_remote("/music/a/b.flac") == "/mnt/nas/music/a/b.flac"
    assert pm.to_remote("/music/classical/x.flac") == "/mnt/other/x.flac"  # the longest prefix wins
    assert pm.to_remote("/musical/x.flac") == "/musical/x.flac"  # whole path components only
    assert pm.to_local("/mnt/nas/music/a/b.flac") == "/music/a/b.flac"
    assert pm.message_to_local("/mnt/nas/music/a.flac: damaged") == "/music/a.flac: damaged"
    with pytest.raises(ValueError, match="LOCAL=REMOTE"):
        cluster.PathMap.parse(["/music"])


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auralis.cli", "analyze", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)  # fmt: skip


def test_cli_on_a_scheduler_prints_the_same_lines_and_writes_a_mirror_tree(
    reference, local_cluster, tmp_path: Path
) -> None:
    lc, _ = local_cluster
    folder, expected = reference
    subset = [str(folder / "album00"), str(folder / "long0.flac"), str(folder / "notes.flac")]
    one = _cli("--json", "--no-sidecar", *subset)
    mirror = tmp_path / "mirror"
    on = _cli("--json", "--scheduler", lc.scheduler_address, "--sidecar-dir", str(mirror), "--split-above-s", "30",
              *subset)  # fmt: skip
    assert one.returncode == on.returncode == 1  # notes.flac is not audio
    lines_one = sorted(one.stdout.splitlines())
    assert len(lines_one) == 42 and sorted(on.stdout.splitlines()) == lines_one  # same JSON, any order
    assert on.stderr == ""  # a pipe gets no progress bar
    good = [json.loads(line)["path"] for line in lines_one if "error" not in json.loads(line)]
    assert all(read_sidecar(p, mirror_dir=str(mirror)) == expected[p] for p in good)
    assert all(os.path.exists(mirror_sidecar_path(p, str(mirror))) for p in good)
    assert not any(name.endswith(SIDECAR_SUFFIX) for name in os.listdir(folder / "album00"))  # music untouched


def test_ctrl_c_leaves_every_finished_sidecar_valid(reference, local_cluster, tmp_path: Path) -> None:
    lc, _ = local_cluster
    paths, _ = _fresh_copy(reference, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "auralis.cli", "analyze", "--json", "--scheduler", lc.scheduler_address, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        reported = [proc.stdout.readline() for _ in range(30)]  # wait until 30 files are done
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    done = [json.loads(line)["path"] for line in reported + rest.splitlines() if line.strip()]
    assert len(done) < len(paths)  # it really stopped early
    sidecars = [os.path.join(root, n) for root, _, names in os.walk(tmp_path) for n in names if n.endswith(SIDECAR_SUFFIX)]
    assert len(sidecars) >= 28  # every reported good file has one (two bad files may be among the 30)
    for path in sidecars:
        assert read_sidecar(path[: -len(SIDECAR_SUFFIX)]) is not None, path
    assert not [n for _, _, names in os.walk(tmp_path) for n in names if n.startswith(".25d-")]  # no half-written file


def test_progress_bar_on_a_terminal_shows_rate_and_eta(reference, tmp_path: Path) -> None:
    folder, _ = reference
    stream = io.StringIO()
    bar = ProgressBar(stream, 4, enabled=True)
    bar.advance(computed=True)
    text = stream.getvalue()
    assert "1/4" in text and "files/s" in text and "ETA" in text
    quiet = io.StringIO()
    ProgressBar(quiet, 4).advance(computed=True)  # not a terminal
    assert quiet.getvalue() == ""
    primary, secondary = pty.openpty()  # a real terminal on stderr
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "auralis.cli", "analyze", "--json", "--no-sidecar", str(folder / "album01")],
            stdout=subprocess.PIPE, stderr=secondary, timeout=300,
        )  # fmt: skip
        os.close(secondary)
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 40
    assert b"40/40" in seen and b"files/s" in seen and b"ETA" in seen


def test_without_distributed_the_flags_say_how_to_install_it(tmp_path: Path, reference) -> None:
    folder, _ = reference
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "distributed.py").write_text("raise ImportError('blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = _cli("--cluster", "local:2", str(folder / "album00"), env=env)
    assert result.returncode == 2
    assert "pip install 'auralis[cluster]'" in result.stderr
    assert result.stdout == ""


def test_plain_analyze_never_imports_dask(reference) -> None:
    folder, _ = reference
    code = (
        "import sys; from auralis.cli import main; "
        f"main(['analyze', '--json', '--no-sidecar', {str(folder / 'album00' / '001.flac')!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'tornado')), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"


def test_a_file_changed_between_tasks_is_refused_not_mixed(tmp_path: Path) -> None:
    """Segments of a long file must all read the file whose identity was taken first."""
    path = tmp_path / "long.wav"
    sf.write(str(path), np.zeros((65 * SR, 2), dtype=np.float32) + 0.1, SR)
    split = cluster.file_task(str(path), split_segments=1)
    assert isinstance(split, cluster.FileSplit) and split.segments == 3
    sf.write(str(path), np.zeros((65 * SR, 2), dtype=np.float32) + 0.2, SR)  # replaced meanwhile...
    os.utime(path, ns=(split.identity.mtime_ns, split.identity.mtime_ns + 1_000_000_000))  # ...a second later
    part = cluster.segment_task(str(path), 0, split.identity)
    assert isinstance(part, cluster.FileFailed) and part.code == "changed"
