"""What each process imports and keeps (issue 15): the daemon loads no DSP library, a worker no daemon.

Each check runs in a fresh interpreter (``sys.modules`` of this test process already holds
everything), and each would fail on the code before issue 15: ``import auralisd.main`` loaded
scipy's kernels through the eager ``auralis/__init__``, and every worker process re-ran the
``auralisd`` console script, which imported the whole daemon.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import auralisd.__main__

VENV_BIN = Path(sys.executable).parent


def modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; returns the JSON it printed last."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_daemon_imports_neither_scipy_nor_pyav() -> None:
    loaded = modules_after(
        """
        import json, sys
        import auralisd.main
        auralisd.main.import_daemon_modules()  # what it imports once the control socket answers
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert "auralisd.actors.player" in loaded and "trio" in loaded  # the whole daemon is there
    assert [m for m in loaded if m == "scipy" or m.startswith("scipy.")] == []
    assert [m for m in loaded if m == "av" or m.startswith("av.")] == []


def test_planning_in_the_daemon_loads_no_scipy(tmp_path: Path) -> None:
    # What the daemon computes itself: a plan from plan inputs (actors/player.py) and a track's
    # chunk grid at another output rate (playback/deck.py). Neither filters anything.
    from auralis.audio import write_audio
    from auralis.fingerprint import compute_plan_inputs
    from auralis.synth import make_music

    track = tmp_path / "t.wav"
    write_audio(str(track), make_music(4.0, 44_100, seed=5), 44_100)
    inputs = compute_plan_inputs(str(track))  # in a worker, in the daemon's life
    given = json.dumps({"dimensions": inputs.dimensions, "measurements": inputs.measurements})
    loaded = modules_after(
        f"""
        import json, sys
        import auralisd.main
        auralisd.main.import_daemon_modules()
        from auralis.fingerprint import PlanInputs
        from auralis.plan import plan_mastering
        from auralis.resample import ChunkGrid, resampler
        plan = plan_mastering(PlanInputs(**json.loads({given!r})), "adaptive", 1.0)
        assert plan.cache_key()
        ChunkGrid(44100, 48000, 441000, 441000).span(0)
        resampler(44100, 48000).output_frames(441000)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert "auralis.plan" in loaded
    assert [m for m in loaded if m == "scipy" or m.startswith("scipy.")] == []


def test_a_worker_process_does_not_import_the_daemon() -> None:
    # multiprocessing's spawn (trio-parallel's workers) runs the parent's main script again in
    # each worker as "__mp_main__" before the first job (multiprocessing/spawn.py,
    # _fixup_main_from_path). For the daemon that script is the `auralisd` console script.
    script = VENV_BIN / "auralisd"
    assert script.exists(), "make venv installs the auralisd command"
    loaded = modules_after(
        f"""
        import json, runpy, sys
        runpy.run_path({str(script)!r}, run_name="__mp_main__")
        import auralisd.jobs  # what unpickling the first job imports
        print(json.dumps(sorted(sys.modules)))
        """
    )
    daemon = [m for m in loaded if m.startswith("auralisd.") and m not in ("auralisd.__main__", "auralisd.jobs")]
    assert daemon == []
    for heavy in ("trio", "numpy", "scipy", "av", "msgpack", "sqlite3", "mutagen"):
        assert heavy not in loaded, f"a worker imported {heavy} before its first job"
    assert auralisd.__main__.main.__module__ == "auralisd.__main__"


def test_importing_auralis_loads_a_name_s_module_only_when_used() -> None:
    loaded = modules_after(
        """
        import json, sys
        import auralis
        before = sorted(m for m in sys.modules if m.startswith(("auralis.", "numpy", "scipy")))
        from auralis import PRESET_NAMES
        after_presets = sorted(m for m in sys.modules if m.startswith(("auralis.", "numpy", "scipy")))
        assert auralis.render.chunk_count(441000, 44100) > 0  # a submodule as an attribute still works
        assert callable(auralis.plan_mastering) and "plan_mastering" in dir(auralis)
        print(json.dumps({"before": before, "after_presets": after_presets, "all": sorted(auralis.__all__)}))
        """
    )
    assert loaded["before"] == []
    assert loaded["after_presets"] == ["auralis.errors", "auralis.presets"]
    assert "render_file" in loaded["all"]


def test_release_free_memory_gives_freed_heap_pages_back() -> None:
    # 48 MiB in 96 KiB blocks (below glibc's mmap threshold: they live on the heap), freed while a
    # block allocated after them pins the top of the heap: glibc keeps the pages until trimmed.
    result = modules_after(
        """
        import json
        from auralis.malloc import release_free_memory

        def rss_kib():
            with open("/proc/self/status") as handle:
                return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))

        blocks = [bytearray(96 * 1024) for _ in range(512)]
        pin = bytearray(96 * 1024)
        del blocks
        held = rss_kib()
        released = release_free_memory()
        print(json.dumps({"held": held, "after": rss_kib(), "released": released, "pin": len(pin)}))
        """
    )
    assert result["released"] is True
    assert result["held"] - result["after"] > 32 * 1024, result


def test_scanning_and_rendering_flac_and_wav_loads_no_pyav(tmp_path: Path) -> None:
    # PyAV maps FFmpeg's libraries (~15 MiB resident): only formats libsndfile cannot read need it,
    # so the daemon scanning a FLAC/WAV library, and a worker rendering one, never load it.
    from auralis.audio import write_audio
    from auralis.synth import make_music

    audio = make_music(2.0, 44_100, seed=3)
    for name in ("a.flac", "b.wav"):
        write_audio(str(tmp_path / name), audio, 44_100)
    loaded = modules_after(
        f"""
        import json, sys
        from auralis.audio import probe, read_frames
        from auralisd.tags import read_tags
        for name in ("a.flac", "b.wav"):
            path = {str(tmp_path)!r} + "/" + name
            assert probe(path).num_frames == 88_200
            read_tags(path)
            read_frames(path, 1000, 5000)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert [m for m in loaded if m == "av" or m.startswith("av.")] == []
    assert "auralis.avdecode" not in loaded
