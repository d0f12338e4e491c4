"""`auralis presets [--json]`: list the mastering presets with their numbers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..presets import PRESET_NAMES, PRESETS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``presets`` on the ``auralis`` command's subparsers."""
    parser = subparsers.add_parser(
        "presets",
        help="list the mastering presets",
        description="List the mastering presets: target loudness, EQ character (dB) and compression.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object: {\"presets\": [...]}")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the presets (a table, or JSON with ``--json``); always exit 0."""
    presets = [PRESETS[name] for name in PRESET_NAMES]
    if args.json:
        print(json.dumps({"presets": [p.to_dict() for p in presets]}, allow_nan=False))
        return 0
    header = f"{'preset':9s} {'target':>7s} {'adapt':>5s} {'low':>5s} {'lowmid':>6s} {'pres':>5s} {'high':>5s} {'comp':>8s}"
    print(header)
    print(f"{'':9s} {'LUFS':>7s} {'x':>5s} {'dB':>5s} {'dB':>6s} {'dB':>5s} {'dB':>5s} {'ratio':>8s}")
    for p in presets:
        print(
            f"{p.name:9s} {p.target_lufs:7.1f} {p.adaptive_eq_weight:5.1f} {p.low_shelf_db:+5.1f} "
            f"{p.low_mid_db:+6.1f} {p.presence_db:+5.1f} {p.high_shelf_db:+5.1f} {p.comp_ratio:6.2f}:1"
        )
    print()
    for p in presets:
        print(f"{p.name}: {p.description}")
    return 0
