"""Daemon settings with provenance: defaults < TOML config file < command-line flags.

Every flag has a config-file key: its name with ``-`` turned into ``_`` (repeatable flags
are arrays, e.g. ``music_dir = ["~/Music"]``). :func:`load_settings` returns the effective
:class:`Settings` and, for each key, where its value came from, which
``auralisd --print-config`` shows. An invalid file or value raises :class:`ConfigError`
with one sentence that names the key and, for files, the line.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

DEFAULT_HTTP_HOST: Final = "127.0.0.1"
DEFAULT_HTTP_PORT: Final = 8765
# Open connections on the HTTP port (pages, /stream, /session, /control together), counted at accept;
# with the control limits (64 TCP + 512 Unix) it stays under the common soft limit of 1024 open files.
DEFAULT_HTTP_MAX_CONNECTIONS: Final = 384
# /stream listeners of the shared player: 200 were measured none late (docs/benchmarks.md); each
# holds at most 80 blocks (about 1.4 MB at 44.1 kHz), so 256 bound them to about 360 MB.
DEFAULT_STREAM_MAX_LISTENERS: Final = 256
# ?format=opus on /stream and /session: 160 kbit/s (~165 on the wire, against 2822 for f32 at 44.1 kHz).
DEFAULT_OPUS_BITRATE_KBPS: Final = 160
DEFAULT_CONTROL_TCP_HOST: Final = "127.0.0.1"
DEFAULT_MPD_HOST: Final = "127.0.0.1"
DEFAULT_MPD_PORT: Final = 6600  # MPD's own port, where every MPD client looks first
# The chunk cache's default budget is sized from the machine (issue 15): 1/256 of its memory,
# at least 16 MiB (a minute and a half of 44.1 kHz stereo float32, several chunks past the
# playhead) and at most 128 MiB (about 6 minutes: a whole track, seeks back included).
CACHE_MEMORY_FRACTION: Final = 256  # MemTotal / this
CACHE_MIN_MIB: Final = 16
CACHE_MAX_MIB: Final = 128
# One worker per core, but at most one per this much memory: a worker holds 40-100 MiB while
# it renders or analyses, too much for more than one on a 512 MiB board.
WORKER_MEMORY_MIB: Final = 512
DEFAULT_SAMPLE_RATE: Final = 44_100  # Hz, issue 4: output format for listeners
DEFAULT_RENDER_AHEAD: Final = 3  # chunks kept rendered ahead of the playhead
CONFIG_FILE_NAME: Final = "auralisd.toml"
DATABASE_FILE_NAME: Final = "auralis.sqlite3"
CONTROL_SOCKET_NAME: Final = "control.sock"
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def machine_memory_bytes() -> int | None:
    """The machine's memory (``MemTotal`` of /proc/meminfo, else the physical page count), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def default_cache_mib(memory_bytes: int | None = None) -> int:
    """The chunk cache budget for a machine with ``memory_bytes`` (default: this one), in MiB.

    ``memory / 256``, clamped to 16-128 MiB: 16 MiB on a 512 MiB-4 GiB board, 32 MiB with
    8 GiB, 64 with 16 GiB, 128 from 32 GiB up. Unknown memory: 64 MiB.
    """
    if memory_bytes is None:
        memory_bytes = machine_memory_bytes()
    if memory_bytes is None:
        return 64
    return max(CACHE_MIN_MIB, min(CACHE_MAX_MIB, memory_bytes // CACHE_MEMORY_FRACTION // (1024 * 1024)))


def default_workers(cpu_count: int | None = None, memory_bytes: int | None = None) -> int:
    """Worker processes by default: one per core, at most one per 512 MiB of memory, at least one."""
    cores = max(1, cpu_count if cpu_count is not None else (os.cpu_count() or 1))
    if memory_bytes is None:
        memory_bytes = machine_memory_bytes()
    if memory_bytes is None:
        return cores
    return max(1, min(cores, memory_bytes // (WORKER_MEMORY_MIB * 1024 * 1024)))


class ConfigError(Exception):
    """An invalid configuration; the message names the key (and the file line when there is one)."""


def _xdg(name: str, fallback: str) -> str:
    value = os.environ.get(name)
    if value and os.path.isabs(value):
        return value
    return os.path.expanduser(fallback)


def default_runtime_dir() -> str:
    """``$XDG_RUNTIME_DIR/auralis``; without XDG_RUNTIME_DIR a per-user folder under /tmp."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        return os.path.join(base, "auralis")
    return os.path.join("/tmp", f"auralis-{os.getuid()}")


def default_config_path() -> str:
    return os.path.join(_xdg("XDG_CONFIG_HOME", "~/.config"), "auralis", CONFIG_FILE_NAME)


@dataclass(frozen=True)
class Settings:
    """Effective daemon settings. Paths are absolute and user-expanded."""

    music_dir: tuple[str, ...] = ()
    state_dir: str = ""
    runtime_dir: str = ""
    cache_dir: str = ""
    log_level: str = "info"
    http_host: str = DEFAULT_HTTP_HOST
    http_port: int = DEFAULT_HTTP_PORT
    http_max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS
    stream_max_listeners: int = DEFAULT_STREAM_MAX_LISTENERS
    opus_bitrate_kbps: int = DEFAULT_OPUS_BITRATE_KBPS
    control_tcp: str | None = None  # "[HOST:]PORT", off by default
    mpd_host: str = DEFAULT_MPD_HOST
    mpd_port: int = DEFAULT_MPD_PORT  # 0: no MPD frontend
    token_file: str | None = None
    allowed_origin: tuple[str, ...] = ()
    workers: int = field(default_factory=default_workers)
    cache_mib: int = field(default_factory=default_cache_mib)
    sample_rate: int = DEFAULT_SAMPLE_RATE
    render_ahead: int = DEFAULT_RENDER_AHEAD
    restore_paused: bool = False  # like MPD's restore_paused: after a restart, what was playing comes back paused
    album_mode: str | None = None  # off | track | album | auto; None: the saved mode, else auto
    snapcast: tuple[str, ...] = ()  # "NAME=URL" Snapcast outputs (docs/outputs.md)
    icecast: tuple[str, ...] = ()  # "NAME=URL" Icecast outputs (docs/outputs.md)
    sidecars: str = "beside"  # where .25d sidecars are written: beside | mirror | none
    sidecar_dir: str | None = None  # the mirror tree's folder (sidecars = "mirror")
    dask_scheduler: str | None = None  # background library analysis on this Dask scheduler (docs/cluster.md)
    dask_path_map: tuple[str, ...] = ()  # "LOCAL=REMOTE": where the Dask workers mount a music folder
    config: str | None = None  # the file that was read, if any

    @property
    def database_path(self) -> str:
        return os.path.join(self.state_dir, DATABASE_FILE_NAME)

    @property
    def control_socket_path(self) -> str:
        return os.path.join(self.runtime_dir, CONTROL_SOCKET_NAME)

    @property
    def cache_bytes(self) -> int:
        return self.cache_mib * 1024 * 1024

    def control_tcp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the optional TCP control listener, or None when it is off."""
        return None if self.control_tcp is None else parse_host_port(self.control_tcp, DEFAULT_CONTROL_TCP_HOST)

    def output_specs(self) -> tuple[OutputSpec, ...]:
        """The configured outputs (Snapcast, then Icecast, each in the order given); validated at load."""
        return tuple(parse_output_spec(kind, text) for kind in OUTPUT_KINDS for text in getattr(self, kind))

    def read_token(self) -> str | None:
        """The TCP auth token (first line of ``token_file``), or None without a token file."""
        if self.token_file is None:
            return None
        try:
            with open(self.token_file, encoding="utf-8") as handle:
                token = handle.readline().strip()
        except OSError as exc:
            raise ConfigError(f"token_file: cannot read {self.token_file}: {exc.strerror}") from None
        if len(token) < 16:
            raise ConfigError(f"token_file: the token in {self.token_file} is shorter than 16 characters")
        return token


# key -> (kind, flag help). kinds: "path", "paths", "str", "strs", "int", "bool", "level", "hostport", "album_mode", "outputs",
# "sidecars"
_KEYS: Final[dict[str, tuple[str, str]]] = {
    "music_dir": ("paths", "a music folder to serve (repeatable)"),
    "state_dir": ("path", "where the database lives (default $XDG_STATE_HOME/auralis)"),
    "runtime_dir": ("path", "where the control socket lives (default $XDG_RUNTIME_DIR/auralis)"),
    "cache_dir": ("path", "sidecars that cannot be written beside the audio (default $XDG_CACHE_HOME/auralis)"),
    "config": ("path", f"TOML config file (default $XDG_CONFIG_HOME/auralis/{CONFIG_FILE_NAME})"),
    "log_level": ("level", "debug, info, warning or error"),
    "http_host": ("str", "address of the HTTP/WebSocket server"),
    "http_port": ("int", "port of the HTTP/WebSocket server"),
    "http_max_connections": ("int", f"open connections on the HTTP port; more get 503 (default {DEFAULT_HTTP_MAX_CONNECTIONS})"),
    "stream_max_listeners": ("int", f"/stream listeners; more are closed with 1013 (default {DEFAULT_STREAM_MAX_LISTENERS})"),
    "opus_bitrate_kbps": ("int", f"Opus bit rate of ?format=opus on /stream and /session, 6-510 (default {DEFAULT_OPUS_BITRATE_KBPS})"),
    "control_tcp": ("hostport", "also serve the control protocol on TCP [HOST:]PORT (host 127.0.0.1)"),
    "mpd_host": ("str", "address of the MPD protocol frontend (default 127.0.0.1; elsewhere the token is the MPD password)"),
    "mpd_port": ("int", f"port of the MPD protocol frontend (default {DEFAULT_MPD_PORT}; 0 turns it off)"),
    "token_file": ("path", "file holding the token TCP/remote clients must send"),
    "allowed_origin": ("strs", "extra allowed browser Origin (repeatable)"),
    "workers": ("int", "worker processes for analysis and rendering (default: one per core, at most one per 512 MiB)"),
    "cache_mib": ("int", "chunk cache budget in MiB (default: 1/256 of the memory, 16-128 MiB)"),
    "sample_rate": ("int", "output sample rate for listeners in Hz"),
    "render_ahead": ("int", "chunks kept rendered ahead of the playhead"),
    "restore_paused": ("bool", "after a restart, come back paused instead of playing on (default: play on)"),
    "album_mode": ("album_mode", "off, track, album or auto: plan per track or per album (default: the saved mode, else auto)"),
    "snapcast": ("outputs", "a Snapcast output NAME=tcp://HOST:PORT or NAME=pipe:///PATH, options after ? "
                            "(sampleformat=48000:16:2) (repeatable; docs/outputs.md)"),
    "sidecars": ("sidecars", "where .25d sidecars are written: beside (default), mirror (under sidecar_dir) or none (database only)"),
    "sidecar_dir": ("path", "the folder of the sidecar mirror tree (sidecars = \"mirror\"; implies it when sidecars is not set)"),
    "dask_scheduler": ("str", "send background library analysis to this Dask scheduler, e.g. tcp://HOST:8786 (pip install 'auralis[cluster]')"),
    "dask_path_map": ("strs", "LOCAL=REMOTE: the Dask workers see music folder LOCAL as REMOTE (repeatable)"),
    "icecast": ("outputs", "an Icecast output NAME=http://HOST:PORT/MOUNT?password_file=PATH[&bitrate_kbps=160] "
                           "(repeatable; docs/outputs.md)"),
}
ALBUM_MODES: Final = ("off", "track", "album", "auto")
SIDECAR_PLACEMENTS: Final = ("beside", "mirror", "none")  # as auralis.sidecar.SIDECAR_PLACEMENTS
_INT_RANGES: Final = {
    "http_port": (0, 65535),  # 0: any free port (tests)
    "mpd_port": (0, 65535),  # 0: off
    "http_max_connections": (1, 65_536),
    "stream_max_listeners": (1, 65_536),
    "opus_bitrate_kbps": (6, 510),  # libopus's range (RFC 6716 2.1.1)
    "workers": (1, 64),
    "cache_mib": (1, 1 << 20),
    "sample_rate": (8_000, 192_000),
    "render_ahead": (1, 32),
}


def parse_host_port(text: str, default_host: str) -> tuple[str, int]:
    """``"PORT"``, ``"HOST:PORT"`` or ``"[V6]:PORT"`` -> ``(host, port)``. Raises ValueError."""
    text = str(text).strip()
    host = default_host
    port_text = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise ValueError(f"bad address {text!r} (use [V6]:PORT)")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {text!r} (1-65535)")
    return host or default_host, int(port_text)


def is_loopback_host(host: str) -> bool:
    """True when ``host`` (a bind address or name, ``[v6]`` allowed) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per settings key; every default is None so flags can be told apart."""
    for key, (kind, help_text) in _KEYS.items():
        flag = "--" + key.replace("_", "-")
        if kind in ("paths", "strs", "outputs"):
            parser.add_argument(flag, dest=key, action="append", default=None, help=help_text)
        elif kind == "int":
            parser.add_argument(flag, dest=key, type=str, default=None, help=help_text, metavar="N")
        elif kind == "bool":
            parser.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=key, default=None, help=help_text)


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"^\s*{re.escape(key)}\s*=", text, flags=re.MULTILINE)
    return None if match is None else text.count("\n", 0, match.start()) + 1


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = _KEYS[key][0]

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: '{key}' must be {expected}, got {value!r}")

    if kind in ("path", "str", "level", "hostport"):
        if not isinstance(value, str) or not value:
            raise fail("a non-empty string")
        if kind == "path":
            return os.path.abspath(os.path.expanduser(value))
        if kind == "level":
            if value.lower() not in LOG_LEVELS:
                raise fail("one of " + ", ".join(LOG_LEVELS))
            return value.lower()
        if kind == "hostport":
            try:
                parse_host_port(value, DEFAULT_CONTROL_TCP_HOST)
            except ValueError as exc:
                raise ConfigError(f"{where}: '{key}': {exc}") from None
        return value
    if kind in ("paths", "strs"):
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise fail("an array of strings")
        if kind == "paths":
            return tuple(os.path.abspath(os.path.expanduser(v)) for v in value)
        return tuple(value)
    if kind == "outputs":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise fail('an array of "NAME=URL" strings')
        for text in value:
            try:
                parse_output_spec(key, text)
            except ValueError as exc:
                raise ConfigError(f"{where}: '{key}': {exc}") from None
        return tuple(value)
    if kind == "album_mode":
        if not isinstance(value, str) or value.lower() not in ALBUM_MODES:
            raise fail("one of " + ", ".join(ALBUM_MODES))
        return value.lower()
    if kind == "sidecars":
        if not isinstance(value, str) or value.lower() not in SIDECAR_PLACEMENTS:
            raise fail("one of " + ", ".join(SIDECAR_PLACEMENTS))
        return value.lower()
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, str):
            if not re.fullmatch(r"-?\d+", value.strip()):
                raise fail("an integer")
            value = int(value)
        if not isinstance(value, int):
            raise fail("an integer")
        lo, hi = _INT_RANGES[key]
        if not lo <= value <= hi:
            raise fail(f"between {lo} and {hi}")
        return value
    raise AssertionError(kind)  # unreachable: every kind is handled above


def _read_file(path: str) -> tuple[dict[str, Any], str]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return data, text


def load_settings(args: argparse.Namespace | Mapping[str, Any]) -> tuple[Settings, dict[str, str]]:
    """Effective settings and their provenance from parsed flags (and the config file they name).

    Raises:
        ConfigError: an unreadable or invalid config file, an unknown key, a bad value, or a
            TCP control or HTTP bind that is not loopback without a token file.
    """
    flags = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    values: dict[str, Any] = {
        "music_dir": (),
        "state_dir": os.path.join(_xdg("XDG_STATE_HOME", "~/.local/state"), "auralis"),
        "runtime_dir": default_runtime_dir(),
        "cache_dir": os.path.join(_xdg("XDG_CACHE_HOME", "~/.cache"), "auralis"),
    }
    origin: dict[str, str] = {key: "default" for key in _KEYS}
    for key in ("state_dir", "cache_dir", "runtime_dir"):
        origin[key] = "default (XDG base directory)"
    origin["workers"] = "default (one per core, at most one per 512 MiB of memory)"
    origin["cache_mib"] = "default (1/256 of the memory, 16-128 MiB)"

    explicit_config = flags.get("config")
    config_path = os.path.abspath(os.path.expanduser(explicit_config)) if explicit_config else default_config_path()
    if explicit_config or os.path.exists(config_path):
        data, text = _read_file(config_path)
        values["config"] = config_path
        origin["config"] = "flag --config" if explicit_config else "default path"
        for key, value in data.items():
            line = _line_of(text, key)
            where = f"{config_path}" + (f" line {line}" if line else "")
            if key not in _KEYS or key == "config":
                known = ", ".join(k for k in _KEYS if k != "config")
                raise ConfigError(f"{where}: unknown key '{key}' (known keys: {known})")
            values[key] = _coerce(key, value, where)
            origin[key] = f"file {where}"
    for key, value in flags.items():
        if key not in _KEYS or key == "config" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        values[key] = _coerce(key, value, f"flag {flag}")
        origin[key] = f"flag {flag}"

    if values.get("sidecar_dir") and "sidecars" not in values:
        values["sidecars"] = "mirror"  # a mirror folder alone says where the user wants them
        origin["sidecars"] = f"implied by sidecar_dir ({origin['sidecar_dir']})"
    _check_cluster_settings(values)
    names = {f.name for f in dataclasses.fields(Settings)}
    settings = Settings(**{k: v for k, v in values.items() if k in names})
    seen: set[str] = set()
    for spec in settings.output_specs():
        if spec.name in seen:
            raise ConfigError(f"{spec.kind}: two outputs are named {spec.name!r} (names must be unique)")
        seen.add(spec.name)
    address = settings.control_tcp_address()
    if address is not None and not is_loopback_host(address[0]) and settings.token_file is None:
        raise ConfigError(f"control_tcp: binding {address[0]} (not loopback) requires token_file")
    if not is_loopback_host(settings.http_host) and settings.token_file is None:
        raise ConfigError(f"http_host: serving HTTP on {settings.http_host} (not loopback) requires token_file")
    mpd_remote = settings.mpd_port != 0 and not is_loopback_host(settings.mpd_host)
    if mpd_remote and settings.token_file is None:
        raise ConfigError(f"mpd_host: serving MPD on {settings.mpd_host} (not loopback) requires token_file (the password)")
    if settings.token_file is not None and (address is not None or not is_loopback_host(settings.http_host) or mpd_remote):
        settings.read_token()
    return settings, origin


def _check_cluster_settings(values: Mapping[str, Any]) -> None:
    """The sidecar and Dask settings that only make sense together. Raises ConfigError."""
    if values.get("sidecars") == "mirror" and not values.get("sidecar_dir"):
        raise ConfigError("sidecars: \"mirror\" needs sidecar_dir (the folder of the mirror tree)")
    for spec in values.get("dask_path_map", ()):
        local, sep, remote = spec.partition("=")
        if not sep or not local or not remote:
            raise ConfigError(f"dask_path_map: {spec!r} is not LOCAL=REMOTE")
    if values.get("dask_path_map") and not values.get("dask_scheduler"):
        raise ConfigError("dask_path_map: set dask_scheduler too (the map is for the Dask workers)")
    if values.get("dask_scheduler"):
        import importlib.util

        if importlib.util.find_spec("distributed") is None:  # found, not imported: start-up stays light
            raise ConfigError(
                "dask_scheduler: the Dask 'distributed' package is not installed: pip install 'auralis[cluster]'"
            )


def format_settings(settings: Settings, origin: Mapping[str, str]) -> str:
    """Every effective value with its source, for ``--print-config``: valid TOML that, saved as a
    file, reads back as the same settings.

    Unset keys are shown as comments (TOML has no null), and so is ``config`` (a config file
    cannot name another one). Strings are TOML basic strings with every control character escaped.
    """
    lines = []
    for key in _KEYS:
        value = getattr(settings, key)
        comment = _toml_comment(origin.get(key, "default"))
        if value is None:
            lines.append(f"# {key} is unset  # {comment}")
            continue
        if isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, tuple):
            shown = "[" + ", ".join(_toml_str(v) for v in value) + "]"
        elif isinstance(value, int):
            shown = str(value)
        else:
            shown = _toml_str(value)
        prefix = "# " if key == "config" else ""
        lines.append(f"{prefix}{key} = {shown}  # {comment}")
    return "\n".join(lines)


_TOML_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_str(value: str) -> str:
    """A TOML basic string: quotes and backslashes escaped, control characters as ``\\uXXXX``."""
    out = []
    for char in value:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_comment(text: str) -> str:
    """``text`` made safe for a TOML comment (no control characters but tab)."""
    return "".join("?" if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F else c for c in text)


# ----------------------------------------------------------------- outputs (docs/outputs.md)
OUTPUT_KINDS: Final = ("snapcast", "icecast")
STREAM_OUTPUT_NAME: Final = "stream"  # the WebSocket /stream output, always listed
OUTPUT_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SNAPCAST_DEFAULT_SAMPLEFORMAT: Final = "48000:16:2"  # snapserver's default stream.sampleformat
SNAPCAST_BITS: Final = (16, 24, 32)
ICECAST_DEFAULT_BITRATE_KBPS: Final = 160  # issue 13
ICECAST_BITRATE_RANGE_KBPS: Final = (6, 510)  # what libopus accepts for stereo
ICECAST_OPTIONS: Final = frozenset({"password_file", "bitrate_kbps", "user", "stream_name", "description", "genre"})


@dataclass(frozen=True)
class OutputSpec:
    """One configured output: ``kind`` (``snapcast`` | ``icecast``), its unique ``name``, where it sends
    (``scheme`` ``tcp`` / ``pipe`` / ``http``, ``host``, ``port``, ``path``: a pipe's file or an Icecast
    mount) and its options (query parameters, validated)."""

    kind: str
    name: str
    url: str
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str, default: str = "") -> str:
        return dict(self.options).get(key, default)

    @property
    def sampleformat(self) -> tuple[int, int, int]:
        """Snapcast ``(rate_hz, bits, channels)``."""
        rate, bits, channels = self.option("sampleformat", SNAPCAST_DEFAULT_SAMPLEFORMAT).split(":")
        return int(rate), int(bits), int(channels)

    @property
    def bitrate_kbps(self) -> int:
        return int(self.option("bitrate_kbps", str(ICECAST_DEFAULT_BITRATE_KBPS)))

    @property
    def target(self) -> str:
        """Where it sends, for people (never a secret: passwords live in files)."""
        if self.scheme == "pipe":
            return f"pipe {self.path}"
        if self.scheme == "tcp":
            return f"tcp {self.host}:{self.port}"
        return f"http://{self.host}:{self.port}{self.path}"


def parse_output_spec(kind: str, text: str) -> OutputSpec:
    """``"NAME=URL"`` -> :class:`OutputSpec`; raises ValueError with one sentence saying what is wrong."""
    from urllib.parse import parse_qsl, urlsplit

    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    name, sep, url = str(text).partition("=")
    name = name.strip()
    if not sep or not url:
        raise ValueError(f"{text!r} must be NAME=URL")
    if not OUTPUT_NAME_RE.fullmatch(name) or name == STREAM_OUTPUT_NAME:
        raise ValueError(f"output name {name!r} must be 1-64 letters, digits, '_', '.' or '-' (and not "
                         f"{STREAM_OUTPUT_NAME!r})")
    parts = urlsplit(url.strip())
    options = tuple(parse_qsl(parts.query, keep_blank_values=True))
    if len({k for k, _ in options}) != len(options):
        raise ValueError(f"{name}: an option is given twice in {url!r}")
    if parts.password is not None or parts.username is not None:
        raise ValueError(f"{name}: no user or password in the URL (it would show in ps and logs); "
                         "give password_file=PATH instead")
    if kind == "snapcast":
        allowed = {"sampleformat"}
        if parts.scheme == "tcp":
            if not parts.hostname or parts.port is None:
                raise ValueError(f"{name}: a Snapcast tcp source needs tcp://HOST:PORT, got {url!r}")
            spec = OutputSpec(kind, name, url, "tcp", parts.hostname, parts.port, "", options)
        elif parts.scheme == "pipe":
            if parts.netloc or not parts.path.startswith("/"):
                raise ValueError(f"{name}: a Snapcast pipe needs an absolute path, pipe:///PATH, got {url!r}")
            spec = OutputSpec(kind, name, url, "pipe", "", 0, parts.path, options)
        else:
            raise ValueError(f"{name}: a Snapcast output is tcp://HOST:PORT or pipe:///PATH, got {url!r}")
        rate_bits = dict(options).get("sampleformat", SNAPCAST_DEFAULT_SAMPLEFORMAT)
        fields = rate_bits.split(":")
        if (len(fields) != 3 or not all(f.isdigit() for f in fields) or not 8000 <= int(fields[0]) <= 192_000
                or int(fields[1]) not in SNAPCAST_BITS or int(fields[2]) != 2):
            raise ValueError(f"{name}: sampleformat must be RATE:BITS:2 with RATE 8000-192000 and BITS 16, 24 "
                             f"or 32, got {rate_bits!r}")
    else:
        allowed = set(ICECAST_OPTIONS)
        if parts.scheme != "http" or not parts.hostname or not parts.path or parts.path == "/":
            raise ValueError(f"{name}: an Icecast output is http://HOST:PORT/MOUNT, got {url!r}")
        spec = OutputSpec(kind, name, url, "http", parts.hostname, parts.port or 8000, parts.path, options)
        password_file = dict(options).get("password_file", "")
        if not password_file.startswith("/"):
            raise ValueError(f"{name}: an Icecast output needs password_file=/ABSOLUTE/PATH (the source password, "
                             "read from that file, never given on the command line)")
        bitrate = dict(options).get("bitrate_kbps", str(ICECAST_DEFAULT_BITRATE_KBPS))
        lo, hi = ICECAST_BITRATE_RANGE_KBPS
        if not bitrate.isdigit() or not lo <= int(bitrate) <= hi:
            raise ValueError(f"{name}: bitrate_kbps must be an integer from {lo} to {hi}, got {bitrate!r}")
    unknown = sorted({k for k, _ in options} - allowed)
    if unknown:
        raise ValueError(f"{name}: unknown option {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    return spec


def python_log_level(level: str) -> int:
    return {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}[level]


def settings_from_argv(argv: Sequence[str]) -> tuple[Settings, dict[str, str]]:
    """Convenience for tests: parse ``argv`` with the daemon's flags and load settings."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)))
