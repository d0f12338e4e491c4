"""`auralis analyze FILE|DIR... [--json] [--no-sidecar] [--sidecars WHERE] [--scheduler ADDR | --cluster local:N]`.

Prints the 25D fingerprint of audio files; a folder stands for every audio file under it
(recursively, by extension, hidden files skipped), in name order.

With ``--json`` each file gives one line, ``{"path", "format_version", "algorithm_version",
"fingerprint", "measurements"}``, or ``{"path", "error", "code"}`` for a file that cannot be
analysed; the other files are still analysed and the exit status is 1 (an unexpected failure on one
file is reported with code ``internal``, and the others are still analysed too). Without it, a
readable table per file. Valid ``.25d`` sidecars are used and fresh ones written unless
``--no-sidecar``; ``--sidecars beside|mirror|none`` (and ``--sidecar-dir DIR`` for the mirror
tree) choose where they are written.

With ``--scheduler tcp://HOST:8786`` (or ``--cluster local:N``) the files go to a Dask
distributed cluster (:mod:`auralis.cluster`; ``distributed`` is imported only then): results
are the same numbers and the same lines, in completion order. ``--path-map LOCAL=REMOTE``
names where the workers mount a folder. On a terminal a progress bar (files, rate, ETA) goes
to stderr; on a pipe nothing does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

from ..errors import AuralisError
from ..fingerprint import DIMENSION_UNITS, DIMENSIONS, MEASUREMENT_KEYS, Fingerprint, compute_fingerprint
from ..sidecar import (
    SIDECAR_FORMAT_VERSION,
    SIDECAR_PLACEMENTS,
    SIDECAR_SUFFIX,
    file_identity,
    read_sidecar,
    write_sidecar,
)
from . import display_path

if TYPE_CHECKING:  # the cluster module is imported only when its flags are used
    from ..cluster import Outcome

EXIT_OK: Final = 0
EXIT_SOME_FAILED: Final = 1  # at least one file could not be analysed (the others were)
EXIT_USAGE: Final = 2  # bad flags, or the cluster cannot be used (the message says why)
EXIT_INTERRUPTED: Final = 130  # Ctrl-C: every sidecar written so far is complete
PROGRESS_INTERVAL_S: Final = 0.2  # progress bar redraws at most five times a second

_MEASUREMENT_UNITS: Final = {
    "integrated_lufs": "LUFS", "true_peak_dbtp": "dBTP", "sample_peak_dbfs": "dBFS", "loudness_range_lu": "LU",
    "max_momentary_lufs": "LUFS", "max_short_term_lufs": "LUFS", "plr_db": "dB", "duration_s": "s",
    "sample_rate": "Hz", "channels": "",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``analyze`` on the ``auralis`` command's subparsers."""
    parser = subparsers.add_parser(
        "analyze",
        help="print the 25D mastering fingerprint of audio files",
        description="Print the 25D mastering fingerprint and BS.1770 measurements of each FILE.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, AIFF, FLAC, MP3, AAC/ALAC .m4a, Ogg Vorbis, Opus, WavPack, APE, WMA) or folders of them")
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line")
    parser.add_argument("--no-sidecar", action="store_true", help="neither read nor write .25d sidecar files")
    parser.add_argument("--sidecars", choices=SIDECAR_PLACEMENTS, default=None,
                        help="where sidecars are written: beside the audio (default), a mirror tree under --sidecar-dir, or none")
    parser.add_argument("--sidecar-dir", metavar="DIR", help="the mirror tree's folder (implies --sidecars mirror)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="analyse on this Dask scheduler, e.g. tcp://HOST:8786")
    where.add_argument("--cluster", metavar="local:N", help="analyse on a local Dask cluster of N worker processes")
    parser.add_argument("--path-map", action="append", default=[], metavar="LOCAL=REMOTE",
                        help="the workers see folder LOCAL as REMOTE (repeatable; cluster only)")
    parser.add_argument("--split-above-s", type=float, default=None, metavar="SECONDS",
                        help="cluster only: files longer than this are split into 30 s segments over the workers (default 300)")
    parser.set_defaults(func=run)
    return parser


def analyze_file(path: str, *, use_sidecar: bool = True) -> tuple[Fingerprint, str]:
    """The fingerprint of ``path`` and where it came from (``"sidecar"`` or ``"computed"``).

    Raises:
        AudioError: the file cannot be analysed.
    """
    if use_sidecar:
        cached = read_sidecar(path)
        if cached is not None:
            return cached, "sidecar"
    identity = file_identity(path) if use_sidecar else None  # before analysing: see write_sidecar
    fp = compute_fingerprint(path)
    if use_sidecar:
        try:
            write_sidecar(path, fp, identity=identity)
        except (OSError, AuralisError) as exc:
            print(f"auralis: warning: {path}: sidecar not written: {exc}", file=sys.stderr)
    return fp, "computed"


def json_record(path: str, fp: Fingerprint) -> dict[str, Any]:
    """The ``--json`` object of one analysed file."""
    body = fp.to_json_dict()
    return {
        "path": path,
        "format_version": SIDECAR_FORMAT_VERSION,
        "algorithm_version": body["algorithm_version"],
        "fingerprint": body["fingerprint"],
        "measurements": body["measurements"],
    }


def _format_value(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return "-inf"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def write_table(out: TextIO, path: str, fp: Fingerprint, source: str) -> None:
    """A readable two-column table of one file's dimensions and measurements."""
    out.write(f"{display_path(path)}  ({source}, algorithm {fp.algorithm_version})\n")
    for name in DIMENSIONS:
        out.write(f"  {name:<26}{_format_value(fp.dimensions[name]):>12}  {DIMENSION_UNITS[name]}\n")
    out.write("  measurements\n")
    for name in MEASUREMENT_KEYS:
        out.write(f"  {name:<26}{_format_value(fp.measurements[name]):>12}  {_MEASUREMENT_UNITS[name]}\n")
    out.write("\n")


def expand_paths(args: Sequence[str]) -> Iterator[str]:
    """Files as given; a folder as every audio file under it (recursively, name order, hidden and ``.25d`` skipped)."""
    from ..audio import is_audio_path

    for arg in args:
        if not os.path.isdir(arg):
            yield arg
            continue
        for root, dirs, files in os.walk(arg, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and not name.endswith(SIDECAR_SUFFIX) and is_audio_path(name):
                    yield os.path.join(root, name)


class ProgressBar:
    """``[####....] done/total  rate files/s  ETA`` redrawn in place on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO, total: int, *, enabled: bool | None = None, width: int = 30) -> None:
        self._stream = stream
        self._total = total
        self._enabled = stream.isatty() if enabled is None else enabled
        self._width = width
        self._started = time.monotonic()
        self._last_draw = -math.inf
        self.done = 0
        self.computed = 0
        self.failed = 0

    def advance(self, *, computed: bool = False, failed: bool = False) -> None:
        self.done += 1
        self.computed += int(computed)
        self.failed += int(failed)
        now = time.monotonic()
        if now - self._last_draw >= PROGRESS_INTERVAL_S or self.done == self._total:
            self._last_draw = now
            self.draw(now)

    def line(self, now: float) -> str:
        elapsed_s = max(now - self._started, 1e-9)
        rate = self.computed / elapsed_s  # files analysed per second (skipped ones are free)
        left = self._total - self.done
        eta = "--:--" if rate <= 0.0 else _clock(left / rate)
        filled = self._width * self.done // max(self._total, 1)
        bar = "#" * filled + "." * (self._width - filled)
        failed = f"  {self.failed} failed" if self.failed else ""
        return f"[{bar}] {self.done}/{self._total}  {rate:.1f} files/s  ETA {eta}{failed}"

    def draw(self, now: float) -> None:
        if self._enabled:
            self._stream.write("\r" + self.line(now) + "\x1b[K")
            self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self.draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def _report_failure(args: argparse.Namespace, path: str, code: str, message: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps({"path": path, "error": message, "code": code}, allow_nan=False) + "\n")
    else:
        print(f"auralis: {display_path(message)}", file=sys.stderr)
    sys.stdout.flush()


def _report(args: argparse.Namespace, path: str, fp: Fingerprint, source: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(json_record(path, fp), allow_nan=False) + "\n")
    else:
        write_table(sys.stdout, path, fp, source)
    sys.stdout.flush()


def _policy(args: argparse.Namespace) -> Any:
    from ..cluster import SidecarPolicy

    placement = args.sidecars or ("mirror" if args.sidecar_dir else "beside")
    if args.no_sidecar:
        return SidecarPolicy("none", read=False)
    if placement == "mirror" and not args.sidecar_dir:
        raise ValueError("--sidecars mirror needs --sidecar-dir DIR")
    mirror = os.path.abspath(os.path.expanduser(args.sidecar_dir)) if args.sidecar_dir else None
    return SidecarPolicy(placement, mirror)


def run(args: argparse.Namespace) -> int:
    """Analyse every file in ``args.files``; 0 if all succeeded, 1 if any failed."""
    on_cluster = args.scheduler is not None or args.cluster is not None
    if (args.path_map or args.split_above_s is not None) and not on_cluster:
        print("auralis: --path-map and --split-above-s need --scheduler or --cluster", file=sys.stderr)
        return EXIT_USAGE
    custom_sidecars = args.sidecars is not None or args.sidecar_dir is not None
    if on_cluster or custom_sidecars:
        return _run_with_policy(args, on_cluster)
    paths = list(expand_paths(args.files))
    progress = ProgressBar(sys.stderr, len(paths))
    status = EXIT_OK
    try:
        for path in paths:
            try:
                fp, source = analyze_file(path, use_sidecar=not args.no_sidecar)
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the others (see the docstring)
                status = EXIT_SOME_FAILED
                code = exc.code if isinstance(exc, AuralisError) else "internal"
                message = str(exc) if isinstance(exc, AuralisError) else f"{path}: {type(exc).__name__}: {exc}"
                _report_failure(args, path, code, message)
                progress.advance(failed=True)
                continue
            _report(args, path, fp, source)
            progress.advance(computed=source == "computed")
    finally:
        progress.close()
    return status


def _run_with_policy(args: argparse.Namespace, on_cluster: bool) -> int:
    """Sidecar placement chosen by the user, on this machine or on a Dask cluster."""
    from .. import cluster

    try:
        policy = _policy(args)
        path_map = cluster.PathMap.parse(args.path_map)
        local_workers = _local_workers(args.cluster) if args.cluster is not None else None
    except ValueError as exc:
        print(f"auralis: {exc}", file=sys.stderr)
        return EXIT_USAGE
    paths = list(expand_paths(args.files))
    progress = ProgressBar(sys.stderr, len(paths))
    failed = False

    def on_outcome(outcome: Outcome) -> None:
        nonlocal failed
        if outcome.source == "failed":
            failed = True
            _report_failure(args, outcome.path, outcome.code, outcome.message)
        else:
            assert outcome.fingerprint is not None
            if outcome.message:
                print(f"auralis: warning: {display_path(outcome.path)}: {outcome.message}", file=sys.stderr)
            _report(args, outcome.path, outcome.fingerprint, outcome.source)
        progress.advance(computed=outcome.source == "computed", failed=outcome.source == "failed")

    try:
        if not on_cluster:
            cluster.analyze_paths_locally(paths, on_outcome, sidecars=policy)
            return EXIT_SOME_FAILED if failed else EXIT_OK
        try:
            client, local_cluster = cluster.open_client(scheduler=args.scheduler, local_workers=local_workers)
        except cluster.ClusterUnavailableError as exc:
            print(f"auralis: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            split = cluster.DEFAULT_SPLIT_SEGMENTS
            if args.split_above_s is not None:
                split = max(1, int(args.split_above_s // cluster.SEGMENT_S))
            cluster.analyze_on_cluster(client, paths, on_outcome, path_map=path_map, sidecars=policy,
                                       split_segments=split)  # fmt: skip
        finally:
            client.close()
            if local_cluster is not None:
                local_cluster.close()
    except KeyboardInterrupt:
        progress.close()
        print("auralis: interrupted; every sidecar written so far is complete", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.close()
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _local_workers(spec: str) -> int:
    kind, _, count = spec.partition(":")
    if kind != "local" or not count.isdigit() or not 1 <= int(count) <= 256:
        raise ValueError(f"--cluster {spec!r}: expected local:N with N from 1 to 256")
    return int(count)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m auralis.commands.analyze FILE...``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="auralis")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["analyze", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
