"""``python -m auralisd.demo`` (``make run``): the daemon on a generated demo library.

Writes three short generated tracks (drums, bass and pads; a loudness-war version; a quiet
one) to ``$XDG_CACHE_HOME/auralis/demo-library`` once, then starts ``auralisd`` on that
folder with any extra flags given, unless a music folder is configured already.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from auralis.synth import write_demo_library

from .config import default_config_path
from .main import main as daemon_main


def demo_folder() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "auralis", "demo-library")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    configured = any(a.startswith("--music-dir") for a in args)
    if not configured and os.path.exists(default_config_path()):
        with open(default_config_path(), encoding="utf-8", errors="replace") as handle:
            configured = any(line.strip().startswith("music_dir") for line in handle)
    if not configured:
        folder = demo_folder()
        print(f"auralisd demo: generating the demo library in {folder} ...", file=sys.stderr, flush=True)
        write_demo_library(folder)
        args = ["--music-dir", folder, *args]
        print(
            "auralisd demo: control it with `auralisctl` (or open http://127.0.0.1:8765/); Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
    return daemon_main(args)


if __name__ == "__main__":
    sys.exit(main())
