"""`python -m auralis.demo`: generate a demo track and analyse it (what `make run` shows before the daemon)."""

from __future__ import annotations

import os
import sys

from .cli import main as cli_main
from .synth import write_demo_library


def main() -> int:
    folder = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "auralis", "demo-library")
    paths = write_demo_library(folder)
    print(f"demo library: {folder}")
    return cli_main(["analyze", *paths])


if __name__ == "__main__":
    sys.exit(main())
