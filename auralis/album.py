"""Albums mastered as one file: the exact album fingerprint, the album plan, and rendering across boundaries.

An album is its tracks in album order, concatenated sample-exactly (a gapless join). In
album mode Auralis treats that concatenation as *one file*:

* **Fingerprint.** :func:`compute_album_plan_inputs` runs the fingerprint's segment analysis
  over an :class:`AlbumReader` (the tracks read as one stream), so the album's loudness is gated
  over the whole album, its loudness range, true peak, crest factor and band balance are those of
  the concatenation, and they equal :func:`auralis.fingerprint.fingerprint_from_samples` of the
  concatenated samples to float rounding (~1e-9). Segments are 30 s of the *album* and may span
  a track boundary; :func:`analyze_album_segment` runs one in a worker process and
  :func:`merge_album_segments` merges them in any order.
* **Plan.** :func:`plan_album` is :func:`auralis.plan.plan_mastering` of the album's plan inputs:
  one 2D LWRP decision, one gain, one set of dynamics and EQ parameters for every track, so the
  tracks keep their relative levels.
* **Render.** :func:`render_album_chunk` renders chunk ``k`` of one track *from the album*: its
  pre-roll comes from the end of the previous track(s) and its look-ahead from the next, and the
  window sits on the album's absolute 16-frame grid, so the rendered tracks, concatenated, equal
  the one-file render of the album (no seam and no level step at a boundary).

Why per-track measurements cannot be merged exactly (and so are not what is stored): at a track
boundary the K-weighting filter of the one-file meter carries the previous track's state, and the
album's 100 ms gating grid (and ~2 ms granule grid) is offset from the next track's own grid by
the previous tracks' length. Reproducing either needs the samples around each boundary and every
sample's energy, i.e. the audio. So the album is analysed as one stream (the same cost as the plan
half of fingerprinting its tracks, spread over worker processes), and what is kept is the album's
:class:`~auralis.fingerprint.PlanInputs` (a few hundred bytes), keyed by the tracks' identities.

Tracks of one album must share sample rate and channel count (:class:`AlbumMismatchError`
otherwise): such an album is played track by track, each boundary a plain gapless join.
"""

from __future__ import annotations

import math
import os
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from .audio import AudioInfo, AudioReader, probe
from .errors import AlbumMismatchError
from .fingerprint import (
    PlanInputs,
    SegmentResult,
    analyze_reader_segment,
    merge_segments,
    plan_inputs_from_reader,
    reader_segment_count,
)
from .plan import MasteringPlan, plan_mastering
from .render import PREROLL_S, render_range
from .render import chunk_frames as default_chunk_frames

ALBUM_FORMAT: Final = "ALBUM"  # AudioInfo.format of an AlbumReader


@dataclass(frozen=True)
class AlbumLayout:
    """An album's tracks in album order, as one file: paths, frame counts, shared rate and channels.

    Picklable and small: what a worker process needs to read any part of the album. Track ``i``
    holds album frames ``[offsets[i], offsets[i] + num_frames[i])``.
    """

    paths: tuple[str, ...]
    num_frames: tuple[int, ...]
    sample_rate: int  # Hz
    channels: int

    def __post_init__(self) -> None:
        if not self.paths or len(self.paths) != len(self.num_frames):
            raise AlbumMismatchError("an album needs at least one track, each with its frame count")
        if any(int(n) <= 0 for n in self.num_frames):
            raise AlbumMismatchError("every track of an album must hold at least one frame")

    @classmethod
    def of_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> AlbumLayout:
        """Probe each file's header and lay the tracks out in the given (album) order.

        Raises:
            AudioError: a file cannot be opened.
            AlbumMismatchError: no paths, or the tracks differ in sample rate or channel count.
        """
        infos = [probe(p) for p in paths]
        return cls.of_infos(infos)

    @classmethod
    def of_infos(cls, infos: Sequence[AudioInfo]) -> AlbumLayout:
        """The layout of tracks already probed (e.g. rows of the daemon's database).

        Raises:
            AlbumMismatchError: no tracks, or they differ in sample rate or channel count.
        """
        if not infos:
            raise AlbumMismatchError("an album needs at least one track")
        first = infos[0]
        for info in infos[1:]:
            if (info.sample_rate, info.channels) != (first.sample_rate, first.channels):
                raise AlbumMismatchError(
                    f"{info.path}: {info.sample_rate} Hz / {info.channels} ch differs from the album's "
                    f"{first.sample_rate} Hz / {first.channels} ch; the album is played track by track"
                )
        return cls(
            paths=tuple(info.path for info in infos),
            num_frames=tuple(int(info.num_frames) for info in infos),
            sample_rate=int(first.sample_rate),
            channels=int(first.channels),
        )

    @property
    def offsets(self) -> tuple[int, ...]:
        """Album frame where each track starts."""
        return tuple(int(x) for x in np.concatenate(([0], np.cumsum(self.num_frames)[:-1])))

    @property
    def total_frames(self) -> int:
        return int(sum(self.num_frames))

    def track_range(self, index: int) -> tuple[int, int]:
        """``(start, stop)`` album frames of track ``index``."""
        if not 0 <= index < len(self.paths):
            raise IndexError(f"track {index} is outside the album's {len(self.paths)} tracks")
        start = self.offsets[index]
        return start, start + self.num_frames[index]


class AlbumReader:
    """The tracks of an :class:`AlbumLayout` read as one file (``info`` + zero-padded ``read``).

    Files are opened only when a read reaches them and closed when a read no longer does, so a
    chunk renderer opens the one or two tracks its window spans. Use as a context manager.

    Raises (from ``read``):
        AudioError: a track cannot be decoded.
        AlbumMismatchError: a track's header no longer matches the layout (it changed).
    """

    def __init__(self, layout: AlbumLayout) -> None:
        self.layout = layout
        self.path = "album:" + (os.path.dirname(layout.paths[0]) or ".")
        self.info = AudioInfo(
            path=self.path,
            num_frames=layout.total_frames,
            sample_rate=layout.sample_rate,
            channels=layout.channels,
            format=ALBUM_FORMAT,
            subtype="FLOAT",
        )
        self._offsets = layout.offsets
        self._open: dict[int, AudioReader] = {}

    def __enter__(self) -> AlbumReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for reader in self._open.values():
            reader.close()
        self._open.clear()

    def _reader(self, index: int) -> AudioReader:
        reader = self._open.get(index)
        if reader is None:
            reader = AudioReader(self.layout.paths[index])
            info = reader.info
            expected = (self.layout.num_frames[index], self.layout.sample_rate, self.layout.channels)
            if (info.num_frames, info.sample_rate, info.channels) != expected:
                reader.close()
                raise AlbumMismatchError(
                    f"{info.path}: now {info.num_frames} frames at {info.sample_rate} Hz / {info.channels} ch, "
                    f"the album's layout says {expected[0]} at {expected[1]} Hz / {expected[2]} ch"
                )
            self._open[index] = reader
        return reader

    def read(self, start_frame: int, stop_frame: int) -> np.ndarray:
        """Album frames ``[start_frame, stop_frame)`` as float32 ``(frames, channels)``, zero outside the album."""
        if stop_frame < start_frame:
            raise ValueError("stop_frame < start_frame")
        out = np.zeros((stop_frame - start_frame, self.info.channels), dtype=np.float32)
        lo, hi = max(start_frame, 0), min(stop_frame, self.info.num_frames)
        used: set[int] = set()
        if hi > lo:
            first = bisect_right(self._offsets, lo) - 1
            for index in range(first, len(self._offsets)):
                t0 = self._offsets[index]
                if t0 >= hi:
                    break
                t1 = t0 + self.layout.num_frames[index]
                a, b = max(lo, t0), min(hi, t1)
                out[a - start_frame : b - start_frame] = self._reader(index).read(a - t0, b - t0)
                used.add(index)
        for index in [i for i in self._open if i not in used]:
            self._open.pop(index).close()
        return out


def album_segment_count(layout: AlbumLayout) -> int:
    """How many 30 s album segments :func:`analyze_album_segment` splits the album into."""
    with AlbumReader(layout) as reader:
        return reader_segment_count(reader)


def analyze_album_segment(layout: AlbumLayout, index: int) -> SegmentResult:
    """The additive plan quantities of album segment ``index`` (a job for a worker process).

    Raises:
        AudioError, AlbumMismatchError: a track cannot be read or changed.
        IndexError: ``index`` is outside ``range(album_segment_count(layout))``.
    """
    with AlbumReader(layout) as reader:
        return analyze_reader_segment(reader, index)


def merge_album_segments(layout: AlbumLayout, results: Sequence[SegmentResult]) -> PlanInputs:
    """The album's plan inputs from every segment's result (any order).

    Raises:
        ValueError: the results do not cover each segment exactly once.
    """
    return merge_segments(AlbumReader(layout).path, results)


def compute_album_plan_inputs(layout: AlbumLayout) -> PlanInputs:
    """The album's plan inputs, as :func:`~auralis.fingerprint.compute_plan_inputs` of the concatenated tracks.

    Raises:
        AudioError, AlbumMismatchError: a track cannot be read or changed.
    """
    with AlbumReader(layout) as reader:
        return plan_inputs_from_reader(reader)


def plan_album(album_inputs: PlanInputs, preset: str, intensity: float, *, tracks: int, name: str = "") -> MasteringPlan:
    """The album plan: :func:`~auralis.plan.plan_mastering` of the album's plan inputs, one for every track.

    Its render parameters (and so its ``cache_key``) are exactly those of the plan of the album as
    one file; the decisions gain a last ``[album]`` line that names the scope.
    """
    plan = plan_mastering(album_inputs, preset, intensity)
    m = album_inputs.measurements
    lra = float(m.get("loudness_range_lu", 0.0))
    lufs = float(m.get("integrated_lufs", -math.inf))
    label = f" {name!r}" if name else ""
    line = (
        f"[album] one plan for the {tracks} tracks of album{label} "
        f"(album {lufs:.1f} LUFS, LRA {lra:.1f} LU): relative levels kept"
    )
    return replace(plan, decisions=(*plan.decisions, line))


def render_album_chunk(
    layout: AlbumLayout,
    track_index: int,
    plan: MasteringPlan,
    k: int,
    *,
    chunk_frames: int | None = None,
    preroll_s: float = PREROLL_S,
) -> np.ndarray:
    """Chunk ``k`` of track ``track_index`` rendered from the album as one file.

    The chunk geometry is the track's own (chunk ``k`` covers track frames ``[k N, (k+1) N)``, as
    :func:`~auralis.render.render_chunk`); its pre-roll reaches into the previous tracks, its
    look-ahead into the next, and the window sits on the album's 16-frame grid. So the output is
    exactly those frames of the one-file render of the album, and depends on (layout, track, plan,
    k, chunk_frames) alone: any process, any order, a seek gives what playing through gives.

    Raises:
        AudioError, AlbumMismatchError: a track cannot be read or changed.
        IndexError: the track or chunk is outside the album.
    """
    start, stop = layout.track_range(track_index)
    n = int(chunk_frames) if chunk_frames else default_chunk_frames(layout.sample_rate)
    if n <= 0:
        raise ValueError("chunk_frames must be positive")
    lo = start + int(k) * n
    if k < 0 or lo >= stop:
        raise IndexError(f"chunk {k} is outside track {track_index} ({stop - start} frames, {n} per chunk)")
    with AlbumReader(layout) as reader:
        return render_range(reader, plan, lo, min(lo + n, stop), preroll_s=preroll_s)[0]


def render_album_frames(
    layout: AlbumLayout, track_index: int, plan: MasteringPlan, start: int, stop: int
) -> np.ndarray:
    """Track frames ``[start, stop)`` of track ``track_index`` rendered from the album as one file.

    ``start`` and ``stop`` are relative to the track's first frame and may reach past either end
    of the track: those frames are the neighbouring tracks' (zero outside the album), as a
    resampler reading across a boundary needs. Equals the same frames of the one-file render.

    Returns:
        float32 ``(stop - start, 2)``: the stereo master (:mod:`auralis.downmix`), as the renderer's.

    Raises:
        AudioError, AlbumMismatchError: a track cannot be read or changed.
        IndexError: the track is outside the album, or ``stop < start``.
    """
    offset, _ = layout.track_range(track_index)
    if stop < start:
        raise IndexError(f"frames [{start}, {stop}) are an empty range")
    lo, hi = offset + int(start), offset + int(stop)
    out = np.zeros((hi - lo, 2), dtype=np.float32)  # the renderer's output is the stereo master
    a, b = max(lo, 0), min(hi, layout.total_frames)
    if b > a:
        with AlbumReader(layout) as reader:
            out[a - lo : b - lo] = render_range(reader, plan, a, b)[0]
    return out


def _normalise(text: str | None) -> str:
    """Case-, width- and space-insensitive form of a tag value ('' when missing)."""
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def album_key(
    *,
    folder: str,
    album: str | None = None,
    album_artist: str | None = None,
    artist: str | None = None,
    musicbrainz_album_id: str | None = None,
) -> str:
    """Which album a track belongs to (the rule of ``docs/mastering.md``), as a stable key.

    1. A MusicBrainz album id (release id) decides alone: ``mbid:<id>``.
    2. Else an album tag: ``tag:<album artist>\\x1f<album>``, the album artist falling back to the
       artist, both compared case- and space-insensitively, so the tracks of a compilation (one
       album artist, many artists) stay together and two albums called "Greatest Hits" by
       different artists do not merge.
    3. Else (untagged) the folder: ``dir:<absolute folder>``.
    """
    mbid = _normalise(musicbrainz_album_id)
    if mbid:
        return f"mbid:{mbid}"
    name = _normalise(album)
    if name:
        return f"tag:{_normalise(album_artist) or _normalise(artist)}\x1f{name}"
    return "dir:" + os.path.abspath(folder)


__all__ = [
    "AlbumLayout",
    "AlbumMismatchError",
    "AlbumReader",
    "album_key",
    "album_segment_count",
    "analyze_album_segment",
    "compute_album_plan_inputs",
    "merge_album_segments",
    "plan_album",
    "render_album_chunk",
    "render_album_frames",
]
