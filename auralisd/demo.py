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

from .config import ConfigError, default_config_path, load_settings
from .main import build_parser
from .main import main as daemon_main


def demo_folder() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "auralis", "demo-library")


def player_url(args: Sequence[str]) -> str:
    """Where the web player will be, from the same flags and config file the daemon reads."""
    try:
        parsed, _ = build_parser().parse_known_args(list(args))
        settings, _ = load_settings(parsed)
    except (ConfigError, SystemExit):  # the daemon itself reports the problem next
        return "the web player at the address the daemon logs"
    if settings.http_port == 0:
        return "the web player at the address the daemon logs (--http-port 0 picks a free port)"
    host = settings.http_host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}/"


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
            f"auralisd demo: control it with `auralisctl` (or open {player_url(args)}); Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
    return daemon_main(args)


if __name__ == "__main__":
    sys.exit(main())
