"""`auralis analyze FILE... [--json] [--no-sidecar]`: print the 25D fingerprint of audio files.

With ``--json`` each file gives one line, ``{"path", "format_version", "algorithm_version",
"fingerprint", "measurements"}``, or ``{"path", "error", "code"}`` for a file that cannot be
analysed; the other files are still analysed and the exit status is 1 (an unexpected failure on one
file is reported with code ``internal``, and the others are still analysed too). Without it, a
readable table per file. Valid ``.25d`` sidecars are used and fresh ones written unless
``--no-sidecar``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, Final, TextIO

from ..errors import AuralisError
from ..fingerprint import DIMENSION_UNITS, DIMENSIONS, MEASUREMENT_KEYS, Fingerprint, compute_fingerprint
from ..sidecar import SIDECAR_FORMAT_VERSION, file_identity, read_sidecar, write_sidecar
from . import display_path

EXIT_OK: Final = 0
EXIT_SOME_FAILED: Final = 1  # at least one file could not be analysed (the others were)

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
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, AIFF, FLAC, MP3, AAC/ALAC .m4a, Ogg Vorbis, Opus, WavPack, APE, WMA)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line")
    parser.add_argument("--no-sidecar", action="store_true", help="neither read nor write .25d sidecar files")
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


def run(args: argparse.Namespace) -> int:
    """Analyse every file in ``args.files``; 0 if all succeeded, 1 if any failed."""
    status = EXIT_OK
    for path in args.files:
        try:
            fp, source = analyze_file(path, use_sidecar=not args.no_sidecar)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the others (see the docstring)
            status = EXIT_SOME_FAILED
            code = exc.code if isinstance(exc, AuralisError) else "internal"
            message = str(exc) if isinstance(exc, AuralisError) else f"{path}: {type(exc).__name__}: {exc}"
            if args.json:
                line = {"path": path, "error": message, "code": code}
                sys.stdout.write(json.dumps(line, allow_nan=False) + "\n")
            else:
                print(f"auralis: {display_path(message)}", file=sys.stderr)
            sys.stdout.flush()
            continue
        if args.json:
            sys.stdout.write(json.dumps(json_record(path, fp), allow_nan=False) + "\n")
        else:
            write_table(sys.stdout, path, fp, source)
        sys.stdout.flush()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m auralis.commands.analyze FILE...``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="auralis")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["analyze", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
