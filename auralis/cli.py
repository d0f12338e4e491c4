"""`auralis`: the offline tools (analyze, master, presets).

Each subcommand lives in its own module under ``auralis.commands`` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .commands import analyze, master, presets

_SUBCOMMANDS = (analyze, master, presets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="auralis", description="Auralis offline tools: analyse and master audio files.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `auralis analyze ... | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
