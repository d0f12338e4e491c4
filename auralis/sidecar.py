"""``.25d`` sidecar files: a track's fingerprint cached as JSON beside it (``song.flac.25d``).

A sidecar records the audio file's identity: its size, its mtime in ns and a content
hash of the *decoded audio* (BLAKE2b of the frame count, rate, channel count and 16
sampled blocks of PCM), which tag edits do not change. On read:

* size and mtime unchanged: valid without decoding anything (the fast path);
* otherwise: valid when the content hash still matches (a copied library has new mtimes,
  a tag edit changes the mtime and usually the size, neither changes the audio).

Anything else is a miss (``None``), never an exception: a missing or damaged file, other
format or algorithm versions, a different identity, a missing or non-finite dimension.
Writes are atomic (temporary file + rename). Where the audio's folder is not writable,
the sidecar goes to a cache folder, named by a hash of the audio's absolute path, and
:func:`read_sidecar` looks in both places. Where sidecars go is the user's choice
(:data:`SIDECAR_PLACEMENTS`): ``beside`` the audio (the default, above), a ``mirror`` tree under
a folder of their choice (``MIRROR/<absolute audio path>.25d``: read-only or shared music
folders stay untouched), or ``none`` (nothing written; the daemon keeps its database). The
format is documented in ``docs/fingerprint.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from .audio import AudioReader
from .errors import AuralisError
from .fingerprint import ALGORITHM_VERSION, Fingerprint

SIDECAR_SUFFIX: Final = ".25d"
SIDECAR_FORMAT_VERSION: Final[int] = 1
HASH_BLOCKS: Final = 16  # PCM blocks sampled for the content hash, evenly spread over the track
HASH_BLOCK_FRAMES: Final = 1024  # frames per sampled block
MAX_SIDECAR_BYTES: Final = 1 << 20  # a real sidecar is ~2 kB; anything larger is damage, not read
SIDECAR_PLACEMENTS: Final = ("beside", "mirror", "none")  # where sidecars are written (see the module doc)


@dataclass(frozen=True)
class FileIdentity:
    """Who an audio file is: size in bytes, mtime in ns, and the hash of its decoded audio."""

    size: int
    mtime_ns: int
    content_hash: str


def _content_hash(reader: AudioReader) -> str:
    """BLAKE2b-128 of the frame count, rate, channels and 16 evenly spread blocks of decoded PCM."""
    info = reader.info
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{info.num_frames}:{info.sample_rate}:{info.channels}".encode())
    length = min(HASH_BLOCK_FRAMES, info.num_frames)
    last = info.num_frames - length
    for start in sorted({int(s) for s in np.linspace(0, last, HASH_BLOCKS)}):
        digest.update(reader.read(start, start + length).tobytes())
    return "blake2b:" + digest.hexdigest()


def file_identity(path: str | os.PathLike[str]) -> FileIdentity:
    """Size, mtime and content hash of ``path``.

    Raises:
        AudioError: the file is missing or cannot be decoded.
    """
    path = os.fspath(path)
    with AudioReader(path) as reader:
        st = os.stat(path)
        return FileIdentity(size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=_content_hash(reader))


def default_cache_dir() -> str:
    """Where sidecars go when the audio's folder is read-only: ``$XDG_CACHE_HOME/auralis/sidecars``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "auralis", "sidecars")


def sidecar_path(path: str | os.PathLike[str]) -> str:
    """The sidecar beside the audio: ``song.flac`` -> ``song.flac.25d``."""
    return os.fspath(path) + SIDECAR_SUFFIX


def cache_sidecar_path(path: str | os.PathLike[str], cache_dir: str | None = None) -> str:
    """The sidecar in the cache folder, named by a hash of the audio's absolute path."""
    key = hashlib.blake2b(os.path.abspath(os.fspath(path)).encode("utf-8", "surrogateescape"), digest_size=16)
    return os.path.join(cache_dir or default_cache_dir(), key.hexdigest() + SIDECAR_SUFFIX)


def mirror_sidecar_path(path: str | os.PathLike[str], mirror_dir: str) -> str:
    """The sidecar in a mirror tree: ``/music/a/song.flac`` -> ``MIRROR/music/a/song.flac.25d``."""
    absolute = os.path.abspath(os.fspath(path))
    return os.path.join(mirror_dir, absolute.lstrip(os.sep)) + SIDECAR_SUFFIX


def _load(candidate: str) -> dict[str, Any] | None:
    try:
        with open(candidate, "rb") as handle:
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_SIDECAR_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=lambda name: math.nan)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _parse(data: dict[str, Any], audio_path: str) -> Fingerprint | None:
    """The fingerprint held by a loaded sidecar if it is valid for ``audio_path``, else None."""
    try:
        if data.get("format_version") != SIDECAR_FORMAT_VERSION or data.get("algorithm_version") != ALGORITHM_VERSION:
            return None
        identity = data["identity"]
        size, mtime_ns, content_hash = identity["size"], identity["mtime_ns"], identity["content_hash"]
        if not (isinstance(size, int) and isinstance(mtime_ns, int) and isinstance(content_hash, str)):
            return None
        fp = Fingerprint.from_json_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    try:
        st = os.stat(audio_path)
    except OSError:
        return None
    if st.st_size == size and st.st_mtime_ns == mtime_ns:
        return fp  # fast path: the file has not been touched since the sidecar was written
    try:
        with AudioReader(audio_path) as reader:
            return fp if _content_hash(reader) == content_hash else None
    except AuralisError:
        return None


def read_sidecar(
    path: str | os.PathLike[str], *, cache_dir: str | None = None, mirror_dir: str | None = None
) -> Fingerprint | None:
    """The cached fingerprint of ``path`` if a valid sidecar exists (in the mirror tree when
    ``mirror_dir`` is given, then beside it, then in the cache folder).

    Never raises for damaged, stale or missing sidecars, nor for a missing audio file: those are misses.
    """
    path = os.fspath(path)
    candidates = [sidecar_path(path), cache_sidecar_path(path, cache_dir)]
    if mirror_dir is not None:
        candidates.insert(0, mirror_sidecar_path(path, mirror_dir))
    for candidate in candidates:
        data = _load(candidate)
        if data is not None:
            fp = _parse(data, path)
            if fp is not None:
                return fp
    return None


def _sidecar_document(path: str, fp: Fingerprint, identity: FileIdentity | None) -> bytes:
    identity = identity if identity is not None else file_identity(path)
    body = fp.to_json_dict()
    document = {
        "format_version": SIDECAR_FORMAT_VERSION,
        "algorithm_version": body["algorithm_version"],
        "identity": {"size": identity.size, "mtime_ns": identity.mtime_ns, "content_hash": identity.content_hash},
        "fingerprint": body["fingerprint"],
        "measurements": body["measurements"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return (json.dumps(document, allow_nan=False, indent=1) + "\n").encode("utf-8")


SIDECAR_MODE: Final = 0o644  # readable by the other users of a shared music folder (less the umask)


def _current_umask() -> int:
    """The process umask, read without changing it (``/proc``), else by the set-and-restore idiom."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(target: str, payload: bytes) -> None:
    folder = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(prefix=".25d-", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, SIDECAR_MODE & ~_current_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_sidecar(
    path: str | os.PathLike[str],
    fp: Fingerprint,
    *,
    cache_dir: str | None = None,
    identity: FileIdentity | None = None,
    mirror_dir: str | None = None,
) -> str:
    """Write ``fp`` as the sidecar of ``path``, atomically; returns the sidecar's path.

    With ``mirror_dir``: in the mirror tree (:func:`mirror_sidecar_path`, folders created), never
    beside the audio. Otherwise beside the audio if its folder is writable, else in the cache
    folder (``cache_dir`` or :func:`default_cache_dir`). Pass the ``identity`` taken *before* analysing the file to be
    sure a file replaced during the analysis never gets a sidecar it would pass; by default
    the identity is taken now.

    Raises:
        AudioError: the audio file cannot be decoded (its identity cannot be taken).
        OSError: neither place is writable.
        ValueError: ``fp`` holds a non-finite dimension.
    """
    path = os.fspath(path)
    payload = _sidecar_document(path, fp, identity)
    if mirror_dir is not None:
        mirrored = mirror_sidecar_path(path, mirror_dir)
        os.makedirs(os.path.dirname(mirrored), exist_ok=True)
        _atomic_write(mirrored, payload)
        return mirrored
    beside = sidecar_path(path)
    try:
        _atomic_write(beside, payload)
        return beside
    except OSError:
        pass
    cached = cache_sidecar_path(path, cache_dir)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    _atomic_write(cached, payload)
    return cached
