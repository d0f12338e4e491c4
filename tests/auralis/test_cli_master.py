"""`auralis master` and `auralis presets` on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from auralis.audio import probe, read_audio, write_audio
from auralis.cli import main
from auralis.fingerprint import MEASUREMENT_KEYS, fingerprint_from_samples
from auralis.presets import PRESET_NAMES
from auralis.sidecar import write_sidecar
from auralis.synth import loudness_war, make_music

SR = 44_100


@pytest.fixture(scope="module")
def crushed(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("cli") / "crushed.flac")
    write_audio(path, loudness_war(make_music(6.0, SR, seed=31)), SR)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return code, json.loads(out[0])


def test_master_json_report(crushed: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "mastered.wav")
    code, report = run_json(capsys, "master", crushed, out, "--preset", "punchy", "--intensity", "0.8", "--json")
    assert code == 0
    assert set(report) >= {"preset", "intensity", "plan", "decisions", "input", "output"}
    assert report["preset"] == "punchy" and report["intensity"] == 0.8
    plan = report["plan"]
    assert plan["region"] == "compressed_loud"
    for key in ("expansion_factor", "gain_db", "target_lufs", "bound_hit"):
        assert key in plan
    assert report["decisions"][0].startswith("[2D LWRP] compressed loud (LUFS ")
    assert set(report["input"]) == set(MEASUREMENT_KEYS) == set(report["output"])
    assert report["output"]["integrated_lufs"] < report["input"]["integrated_lufs"]
    assert report["output"]["plr_db"] > report["input"]["plr_db"]
    assert report["output"]["true_peak_dbtp"] <= -1.0
    # output: same frames, rate and channels as the input; WAV float32 by default
    info_in, info_out = probe(crushed), probe(out)
    assert (info_out.num_frames, info_out.sample_rate, info_out.channels) == (
        info_in.num_frames, info_in.sample_rate, info_in.channels)
    assert info_out.subtype == "FLOAT"
    y, _ = read_audio(out)
    up = signal.resample_poly(y.astype(np.float64), 8, 1, axis=0)
    assert 20 * np.log10(np.max(np.abs(up))) <= -1.0


def test_master_flac_and_silence_json_nulls(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    silent = str(tmp_path / "silence.wav")
    write_audio(silent, np.zeros((SR * 2, 2), dtype=np.float32), SR)
    out = str(tmp_path / "silence.flac")
    code, report = run_json(capsys, "master", silent, out, "--json")
    assert code == 0
    assert report["input"]["integrated_lufs"] is None and report["output"]["true_peak_dbtp"] is None
    assert report["plan"]["gain_db"] == 0.0 and report["plan"]["bound_hit"] is False  # no loudness: no gain
    info = probe(out)
    assert info.subtype == "PCM_24" and info.num_frames == SR * 2
    assert np.max(np.abs(read_audio(out)[0])) == 0.0


def test_master_uses_a_valid_sidecar(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    x = make_music(4.0, SR, seed=32) * np.float32(0.1)
    path = str(tmp_path / "quiet.wav")
    write_audio(path, x, SR)
    code, first = run_json(capsys, "master", path, str(tmp_path / "a.wav"), "--json")
    assert code == 0 and first["fingerprint_source"] == "computed"
    write_sidecar(path, fingerprint_from_samples(read_audio(path)[0], SR))
    code, second = run_json(capsys, "master", path, str(tmp_path / "b.wav"), "--json")
    assert code == 0 and second["fingerprint_source"] == "sidecar"
    assert second["plan"]["gain_db"] == pytest.approx(first["plan"]["gain_db"], abs=0.01)


def test_master_text_output(crushed: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["master", crushed, str(tmp_path / "o.wav"), "--preset", "gentle"]) == 0
    text = capsys.readouterr().out
    assert "[2D LWRP] compressed loud" in text and "limiter" in text


def test_master_errors(crushed: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.wav")
    assert main(["master", missing, str(tmp_path / "o.wav")]) == 1
    assert "nope.wav" in capsys.readouterr().err
    code, report = run_json(capsys, "master", missing, str(tmp_path / "o.wav"), "--json")
    assert code == 1 and report["code"] == "not_found"
    assert main(["master", crushed, str(tmp_path / "o.mp3")]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o.mp3")
    with pytest.raises(SystemExit) as exc:
        main(["master", crushed, str(tmp_path / "o.wav"), "--preset", "loud"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(name in err for name in PRESET_NAMES)
    for bad in ("1.5", "-0.1", "nan", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["master", crushed, str(tmp_path / "o.wav"), "--intensity", bad])
        assert exc.value.code == 2
    capsys.readouterr()


def test_presets_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "presets", "--json")
    assert code == 0
    assert [p["name"] for p in data["presets"]] == list(PRESET_NAMES)
    assert {p["name"]: p["target_lufs"] for p in data["presets"]} == {
        "adaptive": -14.0, "gentle": -16.0, "warm": -13.0, "bright": -12.0, "punchy": -14.0}
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in PRESET_NAMES) and "LUFS" in text


def test_console_entry_point_masters_a_file(crushed: str, tmp_path) -> None:
    out = str(tmp_path / "cli.flac")
    proc = subprocess.run(
        [sys.executable, "-m", "auralis.cli", "master", crushed, out, "--preset", "warm", "--json"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["plan"]["region"] == "compressed_loud" and report["preset"] == "warm"
    assert probe(out).num_frames == probe(crushed).num_frames
