#!/usr/bin/env python3
"""Render auralisd's systemd user units for the current install (``make install-user-service``).

Reads the templates beside this file (``auralisd.service``, ``auralisd.socket``), fills in the
``ExecStart`` of the ``auralisd`` installed next to the running Python (the virtualenv), the XDG
folders and the writable paths, and writes the units into ``$XDG_CONFIG_HOME/systemd/user``
(``$HOME/.config/systemd/user``). It also creates the state and cache folders, because
``ReadWritePaths=`` can only open up folders that exist. Standard library only.

With ``--speaker`` it also renders ``auralis-speaker.service``: ``auralisctl listen --play`` (the
shared stream on this machine's speakers; ``--speaker-args "--player paplay"`` adds options).

Usage::

    python systemd/install_user_service.py [--exec PATH] [--args "--music-dir ~/Music"] [--unit-dir DIR]
                                           [--speaker [--speaker-args "--player aplay"]]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Final

TEMPLATES: Final = ("auralisd.service", "auralisd.socket")
SPEAKER_TEMPLATE: Final = "auralis-speaker.service"
TEMPLATE_DIR: Final = Path(__file__).resolve().parent


def xdg_dir(name: str, fallback: str, home: str) -> str:
    """``$NAME`` when it is an absolute path, else ``$HOME/fallback`` (XDG Base Directory spec)."""
    value = os.environ.get(name, "")
    return value if os.path.isabs(value) else os.path.join(home, fallback)


def unit_quote(value: str, *, in_exec: bool = False) -> str:
    """One systemd unit-file word, escaped and double-quoted only when it must be (systemd.syntax(7)).

    ``%`` (specifiers) is doubled everywhere, ``$`` only in command lines (``in_exec``), where
    it would expand a variable. Plain paths stay unquoted, so a ``-`` prefix
    (``ReadWritePaths=-/path``) reads as usual; words with spaces, quotes or backslashes are quoted.
    """
    escaped = value.replace("%", "%%")
    if in_exec:
        escaped = escaped.replace("$", "$$")
    if not re.search(r'[\s"\'\\]', escaped):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def find_script(name: str = "auralisd") -> str:
    """The ``name`` script of this install: beside ``sys.executable``, else on ``$PATH``."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate.absolute())
    found = shutil.which(name)
    if found:
        return os.path.abspath(found)
    raise SystemExit(f"install-user-service: no {name} executable found; run `make venv` (or pip install .) first")


def find_auralisd() -> str:
    """The ``auralisd`` script of this install."""
    return find_script("auralisd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exec", dest="executable", help="the auralisd executable (default: the one of this Python)")
    parser.add_argument("--args", default="", help="extra auralisd arguments for ExecStart, e.g. '--music-dir ~/Music'")
    parser.add_argument("--unit-dir", help="where to write the units (default $XDG_CONFIG_HOME/systemd/user)")
    parser.add_argument("--speaker", action="store_true",
                        help="also install auralis-speaker.service (auralisctl listen --play on this machine's speakers)")
    parser.add_argument("--speaker-args", default="", help="extra `auralisctl listen --play` options, e.g. '--player aplay'")
    args = parser.parse_args(argv)

    home = os.environ.get("HOME") or os.path.expanduser("~")
    config_home = xdg_dir("XDG_CONFIG_HOME", ".config", home)
    state_home = xdg_dir("XDG_STATE_HOME", ".local/state", home)
    cache_home = xdg_dir("XDG_CACHE_HOME", ".cache", home)
    state_dir = os.path.join(state_home, "auralis")
    cache_dir = os.path.join(cache_home, "auralis")
    unit_dir = Path(args.unit_dir or os.path.join(config_home, "systemd", "user"))

    executable = os.path.abspath(args.executable) if args.executable else find_auralisd()
    extra = [os.path.expanduser(word) for word in shlex.split(args.args)]
    values = {
        "EXEC_START": " ".join(unit_quote(word, in_exec=True) for word in [executable, *extra]),
        "ENVIRONMENT": " ".join(
            unit_quote(f"{name}={value}")
            for name, value in (
                ("XDG_CONFIG_HOME", config_home),
                ("XDG_STATE_HOME", state_home),
                ("XDG_CACHE_HOME", cache_home),
            )
        ),
        # "-": a folder deleted after installing makes the daemon report it, not systemd fail with 226/NAMESPACE
        "READ_WRITE_PATHS": " ".join(unit_quote("-" + path) for path in (state_dir, cache_dir)),
    }
    templates = list(TEMPLATES)
    if args.speaker:
        speaker = [find_script("auralisctl"), "listen", "--play",
                   *(os.path.expanduser(word) for word in shlex.split(args.speaker_args))]
        values["SPEAKER_EXEC_START"] = " ".join(unit_quote(word, in_exec=True) for word in speaker)
        templates.append(SPEAKER_TEMPLATE)
    for folder in (state_dir, cache_dir):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name in templates:
        text = (TEMPLATE_DIR / name).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        unfilled = re.findall(r"@[A-Z_]+@", text)
        if unfilled:
            raise SystemExit(f"install-user-service: unfilled placeholder in {name}: {unfilled}")
        target = unit_dir / name
        temporary = target.with_name(f".{name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
        print(f"installed {target}")
    print(
        "next:\n"
        "  systemctl --user daemon-reload\n"
        "  systemctl --user enable --now auralisd.socket auralisd.service"
        + ("\n  systemctl --user enable --now auralis-speaker.service" if args.speaker else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
