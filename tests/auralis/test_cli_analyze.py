"""`auralis analyze FILE... [--json] [--no-sidecar]`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from auralis.audio import write_audio
from auralis.cli import main
from auralis.fingerprint import DIMENSIONS, MEASUREMENT_KEYS
from auralis.sidecar import SIDECAR_FORMAT_VERSION, SIDECAR_SUFFIX
from auralis.synth import make_music

SR = 16_000
RECORD_KEYS = {"path", "format_version", "algorithm_version", "fingerprint", "measurements"}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("library")
    write_audio(str(folder / "a.flac"), make_music(3.0, SR, seed=1), SR)
    write_audio(str(folder / "b.wav"), make_music(3.0, SR, bpm=100, seed=2), SR)
    write_audio(str(folder / "silent.wav"), np.zeros((SR, 2), dtype=np.float32), SR)
    (folder / "notes.flac").write_text("this is not audio\n" * 10)
    (folder / "empty.flac").write_bytes(b"")
    return folder


def strict_json(line: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    code = main(["analyze", "--json", *args])
    out = capsys.readouterr().out
    return code, [strict_json(line) for line in out.splitlines()]


def test_json_lines_one_per_file_with_the_issue_keys(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(library / "a.flac"), str(library / "b.wav")]
    code, records = run_json(capsys, "--no-sidecar", *paths)
    assert code == 0
    assert [r["path"] for r in records] == paths
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["format_version"] == SIDECAR_FORMAT_VERSION
        assert list(record["fingerprint"]) == list(DIMENSIONS)
        assert set(record["measurements"]) == set(MEASUREMENT_KEYS)
    assert records[1]["fingerprint"]["tempo_bpm"] == pytest.approx(100.0, abs=2.0)


def test_bad_files_give_error_lines_and_the_rest_is_analysed(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(library / n) for n in ("missing.flac", "notes.flac", "a.flac", "empty.flac", "silent.wav")]
    code, records = run_json(capsys, "--no-sidecar", *paths)
    assert code == 1
    assert [r["path"] for r in records] == paths
    assert [r.get("code") for r in records] == ["not_found", "unsupported_format", None, "empty_audio", None]
    for record in (records[0], records[1], records[3]):
        assert set(record) == {"path", "error", "code"} and record["path"] in record["error"]
    assert set(records[2]) == RECORD_KEYS
    silent = records[4]
    assert silent["measurements"]["integrated_lufs"] is None and silent["fingerprint"]["lufs"] == -70.0


def test_readable_table_without_json(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "--no-sidecar", str(library / "a.flac"), str(library / "missing.flac")])
    captured = capsys.readouterr()
    assert code == 1
    assert str(library / "a.flac") in captured.out
    for name in (*DIMENSIONS, *MEASUREMENT_KEYS):
        assert name in captured.out
    assert "missing.flac" in captured.err and "no such file" in captured.err


def test_sidecars_are_written_then_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    song = tmp_path / "song.flac"
    write_audio(str(song), make_music(3.0, SR, seed=3), SR)
    code, (first,) = run_json(capsys, str(song))
    assert code == 0
    sidecar = Path(str(song) + SIDECAR_SUFFIX)
    document = strict_json(sidecar.read_text())
    assert document["fingerprint"] == first["fingerprint"]
    # A valid sidecar is read, not recomputed: a value changed in it shows up in the output.
    document["fingerprint"]["tempo_bpm"] = 77.0
    sidecar.write_text(json.dumps(document))
    _, (second,) = run_json(capsys, str(song))
    assert second["fingerprint"]["tempo_bpm"] == 77.0
    # --no-sidecar neither reads nor writes them.
    _, (third,) = run_json(capsys, "--no-sidecar", str(song))
    assert third["fingerprint"] == first["fingerprint"]
    assert strict_json(sidecar.read_text())["fingerprint"]["tempo_bpm"] == 77.0


def test_no_sidecar_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    song = tmp_path / "song.wav"
    write_audio(str(song), make_music(2.0, SR, seed=4), SR)
    assert main(["analyze", "--json", "--no-sidecar", str(song)]) == 0
    capsys.readouterr()
    assert os.listdir(tmp_path) == ["song.wav"]


def test_the_console_command_end_to_end(library: Path) -> None:
    """The real `auralis` entry point in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-m", "auralis.cli", "analyze", "--json", "--no-sidecar",
         str(library / "a.flac"), str(library / "notes.flac")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [strict_json(line) for line in proc.stdout.splitlines()]
    assert set(lines[0]) == RECORD_KEYS and lines[1]["code"] == "unsupported_format"
    assert "Traceback" not in proc.stderr
