"""``.25d`` sidecars: round trip, validity across copies and tag edits, every kind of damage is a miss."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import mutagen.flac
import numpy as np
import pytest

import auralis.sidecar as sidecar_mod
from auralis.audio import write_audio
from auralis.fingerprint import ALGORITHM_VERSION, DIMENSIONS, Fingerprint, compute_fingerprint
from auralis.sidecar import (
    SIDECAR_FORMAT_VERSION,
    SIDECAR_SUFFIX,
    cache_sidecar_path,
    file_identity,
    mirror_sidecar_path,
    read_sidecar,
    write_sidecar,
)
from auralis.synth import make_music

SR = 16_000


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return make_music(4.0, SR, seed=11)


@pytest.fixture(scope="module")
def fingerprint(tmp_path_factory: pytest.TempPathFactory, audio: np.ndarray) -> Fingerprint:
    path = str(tmp_path_factory.mktemp("fp") / "ref.flac")
    write_audio(path, audio, SR)
    return compute_fingerprint(path)


@pytest.fixture
def song(tmp_path, audio: np.ndarray) -> str:
    path = str(tmp_path / "song.flac")
    write_audio(path, audio, SR)
    return path


def test_round_trip_beside_the_audio(song: str, fingerprint: Fingerprint, tmp_path) -> None:
    where = write_sidecar(song, fingerprint, cache_dir=str(tmp_path / "cache"))
    assert where == song + SIDECAR_SUFFIX == str(tmp_path / "song.flac.25d")
    assert read_sidecar(song, cache_dir=str(tmp_path / "cache")) == fingerprint
    document = json.loads(Path(where).read_text(encoding="utf-8"))
    assert set(document) == {"format_version", "algorithm_version", "identity", "fingerprint", "measurements", "created_at"}
    assert document["format_version"] == SIDECAR_FORMAT_VERSION
    assert document["algorithm_version"] == ALGORITHM_VERSION
    st = os.stat(song)
    assert document["identity"]["size"] == st.st_size and document["identity"]["mtime_ns"] == st.st_mtime_ns
    assert document["identity"]["content_hash"].startswith("blake2b:")
    assert list(document["fingerprint"]) == list(DIMENSIONS)
    assert [name for name in os.listdir(tmp_path) if name.startswith(".25d-")] == []  # no temp file left


def test_a_copied_library_with_new_mtimes_keeps_its_sidecars(song: str, fingerprint: Fingerprint, tmp_path) -> None:
    write_sidecar(song, fingerprint)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copy = str(copy_dir / "song.flac")
    shutil.copyfile(song, copy)
    shutil.copyfile(song + SIDECAR_SUFFIX, copy + SIDECAR_SUFFIX)
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))
    assert read_sidecar(copy) == fingerprint


def test_a_tag_edit_keeps_the_sidecar_valid(song: str, fingerprint: Fingerprint) -> None:
    write_sidecar(song, fingerprint)
    before = file_identity(song)
    tags = mutagen.flac.FLAC(song)
    tags["title"] = "A much longer title than before, to move the audio frames" * 20
    tags.save()
    after = file_identity(song)
    assert after.size != before.size and after.content_hash == before.content_hash
    assert read_sidecar(song) == fingerprint


def test_changed_audio_is_a_miss(song: str, fingerprint: Fingerprint, audio: np.ndarray) -> None:
    write_sidecar(song, fingerprint)
    write_audio(song, audio * 0.5, SR)
    assert file_identity(song).size > 0
    assert read_sidecar(song) is None


def _damage(song: str, fingerprint: Fingerprint, edit) -> None:
    write_sidecar(song, fingerprint)
    path = song + SIDECAR_SUFFIX
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    result = edit(document)
    text = result if isinstance(result, (str, bytes)) else json.dumps(document)
    with open(path, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)


def _set(document: dict, keys: tuple, value) -> None:
    for key in keys[:-1]:
        document = document[key]
    document[keys[-1]] = value


DAMAGE = {
    "other format version": lambda d: _set(d, ("format_version",), SIDECAR_FORMAT_VERSION + 1),
    "other algorithm version": lambda d: _set(d, ("algorithm_version",), "0.0.0"),
    "missing dimension": lambda d: d["fingerprint"].pop("crest_db"),
    "extra dimension": lambda d: _set(d, ("fingerprint", "bogus"), 1.0),
    "string dimension": lambda d: _set(d, ("fingerprint", "lufs"), "-14"),
    "boolean dimension": lambda d: _set(d, ("fingerprint", "lufs"), True),
    "null dimension": lambda d: _set(d, ("fingerprint", "lufs"), None),
    "NaN dimension": lambda d: json.dumps(d).replace('"lufs": ', '"lufs": NaN, "x": '),
    "Infinity dimension": lambda d: json.dumps(d).replace('"crest_db": ', '"crest_db": Infinity, "x": '),
    "missing measurement": lambda d: d["measurements"].pop("plr_db"),
    "wrong size and hash": lambda d: (_set(d, ("identity", "size"), 1), _set(d, ("identity", "content_hash"), "x")),
    "wrong hash, other mtime": lambda d: (_set(d, ("identity", "mtime_ns"), 5), _set(d, ("identity", "content_hash"), "x")),
    "identity not a map": lambda d: _set(d, ("identity",), [1, 2, 3]),
    "no identity": lambda d: d.pop("identity"),
    "fingerprint a list": lambda d: _set(d, ("fingerprint",), [1.0] * 25),
    "truncated": lambda d: json.dumps(d)[:-40],
    "empty": lambda d: "",
    "a JSON list": lambda d: "[1, 2, 3]",
    "binary garbage": lambda d: bytes(range(256)) * 4,
    "deep nesting": lambda d: "[" * 100_000,
    "too big": lambda d: " " * (2 << 20) + json.dumps(d),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_every_kind_of_damage_is_a_miss(kind: str, song: str, fingerprint: Fingerprint) -> None:
    _damage(song, fingerprint, DAMAGE[kind])
    assert read_sidecar(song) is None


def test_missing_audio_or_sidecar_is_a_miss(tmp_path, song: str) -> None:
    assert read_sidecar(song) is None  # no sidecar yet
    assert read_sidecar(str(tmp_path / "gone.flac")) is None
    os.mkdir(tmp_path / "dir.flac.25d")
    assert read_sidecar(str(tmp_path / "dir.flac")) is None


def test_a_silent_track_sidecar_validates(tmp_path) -> None:
    path = str(tmp_path / "silence.wav")
    write_audio(path, np.zeros((SR * 2, 2), dtype=np.float32), SR)
    fp = compute_fingerprint(path)
    write_sidecar(path, fp)
    text = Path(path + SIDECAR_SUFFIX).read_text(encoding="utf-8")
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["measurements"]["integrated_lufs"] is None
    assert read_sidecar(path) == fp


def test_unwritable_folder_falls_back_to_the_cache(
    tmp_path, audio: np.ndarray, fingerprint: Fingerprint, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = tmp_path / "readonly"
    library.mkdir()
    song = str(library / "song.flac")
    write_audio(song, audio, SR)
    os.chmod(library, stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() == 0:  # root ignores directory permissions: refuse writes there as the kernel would
        real_mkstemp = sidecar_mod.tempfile.mkstemp

        def refusing_mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - mirrors tempfile's signature
            if dir is not None and os.path.samefile(dir, library):
                raise PermissionError(13, "Permission denied", dir)
            return real_mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(sidecar_mod.tempfile, "mkstemp", refusing_mkstemp)
    cache = str(tmp_path / "cache")
    try:
        where = write_sidecar(song, fingerprint, cache_dir=cache)
        assert where == cache_sidecar_path(song, cache) and os.path.dirname(where) == cache
        assert not os.path.exists(song + SIDECAR_SUFFIX)
        assert read_sidecar(song, cache_dir=cache) == fingerprint
        assert read_sidecar(song, cache_dir=str(tmp_path / "other-cache")) is None
    finally:
        os.chmod(library, stat.S_IRWXU)


def test_a_failed_write_leaves_the_old_sidecar(song: str, fingerprint: Fingerprint) -> None:
    write_sidecar(song, fingerprint)
    bad = Fingerprint(dimensions={**fingerprint.dimensions, "lufs": float("nan")}, measurements=fingerprint.measurements)
    with pytest.raises(ValueError):
        write_sidecar(song, bad)
    assert read_sidecar(song) == fingerprint
    assert [n for n in os.listdir(os.path.dirname(song)) if n.startswith(".25d-")] == []


def test_identity_taken_before_the_analysis_guards_against_a_replaced_file(
    song: str, fingerprint: Fingerprint, audio: np.ndarray
) -> None:
    before = file_identity(song)
    write_audio(song, audio[::-1].copy(), SR)  # the file changes while it is being analysed
    write_sidecar(song, fingerprint, identity=before)
    assert read_sidecar(song) is None


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_sidecars_are_readable_by_others_as_the_umask_allows(song: str, fingerprint: Fingerprint, tmp_path,
                                                              umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        beside = write_sidecar(song, fingerprint)
        os.chmod(tmp_path, 0o555)  # the audio's folder is read-only: the sidecar goes to the cache folder
        try:
            cached = write_sidecar(song, fingerprint, cache_dir=str(tmp_path.parent / f"cache-{umask:o}"))
        finally:
            os.chmod(tmp_path, 0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(beside).st_mode) == mode
    if cached != beside:  # root ignores the read-only folder
        assert stat.S_IMODE(os.stat(cached).st_mode) == mode


def test_a_mirror_tree_leaves_the_music_folder_untouched(song: str, fingerprint: Fingerprint, tmp_path) -> None:
    mirror = str(tmp_path / "mirror")
    before = sorted(os.listdir(os.path.dirname(song)))
    where = write_sidecar(song, fingerprint, mirror_dir=mirror)
    assert where == mirror_sidecar_path(song, mirror) == mirror + os.path.abspath(song) + SIDECAR_SUFFIX
    assert sorted(os.listdir(os.path.dirname(song))) == sorted([*before, "mirror"])  # only the mirror folder asked for
    assert not os.path.exists(song + SIDECAR_SUFFIX)
    assert read_sidecar(song, mirror_dir=mirror) == fingerprint
    assert read_sidecar(song, cache_dir=str(tmp_path / "cache")) is None  # not found without the mirror
    assert [n for n in os.listdir(os.path.dirname(where)) if n.startswith(".25d-")] == []
