"""`auralis master IN OUT [--preset NAME] [--intensity X] [--json]`: master one file offline.

Fingerprint (a valid ``.25d`` sidecar when there is one, otherwise the plan inputs computed
now), plan (:func:`auralis.plan.plan_mastering`), then the same chunk renderer the daemon
uses. A track that fits in memory (:func:`auralis.audio.open_reader`) is decoded once for both
the plan inputs and the render; the chunks, hence the output, are the same as from the file.
OUT's format follows its extension (``.wav`` float32, ``.flac``/``.aiff`` 24-bit); it has IN's
frame count and sample rate and is always stereo: what a listener hears (a mono IN as dual mono,
a multichannel IN as its ITU-R BS.775 downmix, see :mod:`auralis.downmix`). ``--json`` prints one object:
``{"preset", "intensity", "plan", "decisions", "input", "output"}`` where ``input`` and
``output`` are measurements with the same keys as ``auralis analyze`` (-inf -> null).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..audio import open_reader
from ..errors import AuralisError
from ..plan import plan_mastering
from ..presets import PRESET_NAMES
from ..render import output_format, render_reader
from . import display_path

log = logging.getLogger("auralis.master")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _intensity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"intensity must be within 0..1, got {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``master`` on the ``auralis`` command's subparsers."""
    parser = subparsers.add_parser(
        "master",
        help="master an audio file (adaptive, fingerprint-driven)",
        description="Master IN into OUT: fingerprint, 2D LWRP plan, EQ, dynamics and a -1 dBTP true-peak limiter.",
    )
    parser.add_argument("input", metavar="IN", help="input audio file")
    parser.add_argument("output", metavar="OUT", help="output file: .wav (float32), .flac or .aiff (24-bit)")
    parser.add_argument("--preset", default="adaptive", choices=PRESET_NAMES, help="mastering preset (default adaptive)")
    parser.add_argument("--intensity", type=_intensity, default=1.0, metavar="X",
                        help="0 (bypass, safety limiter only) to 1 (full plan); default 1")
    parser.add_argument("--json", action="store_true", help="print one JSON report")
    parser.set_defaults(func=run)
    return parser


def _fingerprint(path: str, reader: Any) -> tuple[Any, str]:
    """The track's plan inputs and their source: a valid sidecar, or computed now from ``reader``."""
    from ..fingerprint import plan_inputs_from_reader
    from ..sidecar import read_sidecar

    cached = read_sidecar(path)
    if cached is not None:
        return cached, "sidecar"
    return plan_inputs_from_reader(reader), "computed"


def _measure(path: str) -> dict[str, Any]:
    from ..fingerprint import compute_plan_inputs, measurements_to_json

    return measurements_to_json(compute_plan_inputs(path).measurements)


def master_file(in_path: str, out_path: str, preset: str, intensity: float) -> dict[str, Any]:
    """Master ``in_path`` into ``out_path``; returns the report (without output measurements).

    Raises:
        AudioError: unreadable input or unwritable output format.
        UnknownPresetError: bad preset.
    """
    output_format(out_path)  # an unwritable output fails before any decoding
    # Decoded once (when it fits in memory): the plan inputs and the render read the same samples.
    with open_reader(in_path) as reader:
        fingerprint, source = _fingerprint(in_path, reader)
        plan = plan_mastering(fingerprint, preset, intensity)
        stats = render_reader(reader, out_path, plan)
    from ..fingerprint import measurements_to_json

    return {
        "preset": plan.preset,
        "intensity": plan.intensity,
        "plan": plan.to_dict(),
        "decisions": list(plan.decisions),
        "fingerprint_source": source,
        "stages": stats,
        "input": measurements_to_json(dict(fingerprint.measurements)),
    }


def run(args: argparse.Namespace) -> int:
    """Master one file; print the JSON report (``--json``) or the decisions. Exit 0, or 1 on failure."""
    try:
        report = master_file(args.input, args.output, args.preset, args.intensity)
        if args.json:
            report["output"] = _measure(args.output)
    except AuralisError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "code": exc.code}, allow_nan=False))
        else:
            print(f"auralis master: error: {display_path(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report, allow_nan=False))
        return EXIT_OK
    for line in report["decisions"]:
        print(line)
    inp = report["input"]
    stages = report["stages"]
    print(
        f"{display_path(args.input)}: {_fmt(inp.get('integrated_lufs'), 'LUFS')}, true peak "
        f"{_fmt(inp.get('true_peak_dbtp'), 'dBTP')} -> {display_path(args.output)} (aiming at {_fmt(report['plan']['target_lufs'], 'LUFS')}; limiter "
        f"gain reduction <= {stages['limiter_gr_db']:.1f} dB)"
    )
    return EXIT_OK


def _fmt(value: Any, unit: str) -> str:
    return "n/a" if value is None else f"{value:.1f} {unit}"
