"""``auralis-snapcast-control``: the Snapcast stream control script for an Auralis stream (snapserver >= 0.26).

snapserver starts it for the stream whose source names it (``controlscript=...``) and talks to it with
newline-delimited JSON-RPC 2.0 over stdin/stdout (the stream plugin API). It makes Snapweb and the
Snapcast apps show what Auralis plays (title, artist, album, duration, cover art from the daemon's
``/cover/<track_id>``) and turns their buttons into Auralis commands:

* requests from snapserver: ``Plugin.Stream.Player.Control`` (play, pause, playPause, stop, next,
  previous, seek by an offset, setPosition), ``Plugin.Stream.Player.SetProperty`` (loopStatus,
  shuffle, volume; rate and mute are not Auralis settings and answer an error), ``Plugin.Stream.Player
  .GetProperties``;
* notifications to snapserver: ``Plugin.Stream.Ready`` once the daemon answers, then
  ``Plugin.Stream.Player.Properties`` (with ``metadata``) whenever the player, queue, options or
  volume change.

Where the daemon is: ``--socket PATH`` / ``--host HOST:PORT`` (+ ``--token-file``), else
``$AURALIS_SOCKET`` / ``$AURALIS_HOST``, else the user's default socket (as for ``auralisctl``);
``--http URL`` (or ``$AURALIS_HTTP``, default ``http://127.0.0.1:8765``) is the base of cover URLs.
snapserver passes ``--stream``, ``--snapcast-host`` and ``--snapcast-port``; they are accepted and
unused. If the daemon is down or restarts, the script waits and connects again (every second).
Log lines go to stderr (snapserver's log). Only the standard library and msgpack (``auralisctl``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TextIO

from clients import auralisctl as ctl

RETRY_S: Final = 1.0  # wait between attempts to reach the daemon
WATCH_EVENTS: Final = ["player", "queue", "options", "volume", "mastering", "shutdown"]
DEFAULT_HTTP: Final = "http://127.0.0.1:8765"
INVALID_PARAMS: Final = -32602  # JSON-RPC 2.0
METHOD_NOT_FOUND: Final = -32601
PARSE_ERROR: Final = -32700
DAEMON_ERROR: Final = -32000  # JSON-RPC's server-defined range: Auralis refused or is unreachable


class PluginError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def properties(status: dict[str, Any], http_base: str) -> dict[str, Any]:
    """Snapcast stream properties (with ``metadata``) from an Auralis ``status`` reply."""
    state = status.get("state")
    track = status.get("track") or None
    repeat, single = bool(status.get("repeat")), bool(status.get("single"))
    props: dict[str, Any] = {
        "playbackStatus": {"play": "playing", "pause": "paused"}.get(str(state), "stopped"),
        "loopStatus": ("track" if single else "playlist") if repeat else "none",
        "shuffle": bool(status.get("random")),
        "volume": int(status.get("volume") or 0),
        "mute": False,
        "rate": 1.0,
        "position": float(status.get("elapsed_s") or 0.0),
        "canGoNext": bool(status.get("queue_length")),
        "canGoPrevious": bool(status.get("queue_length")),
        "canPlay": bool(status.get("queue_length")),
        "canPause": bool(status.get("queue_length")),  # snapserver 0.26 checks it for playPause too
        "canSeek": track is not None and bool(track.get("duration_s")),
        "canControl": True,
    }
    if track is not None:
        metadata: dict[str, Any] = {"trackId": str(track.get("track_id")), "title": track.get("title") or ""}
        if track.get("artist"):
            metadata["artist"] = [str(track["artist"])]
        if track.get("album"):
            metadata["album"] = str(track["album"])
        if track.get("duration_s"):
            metadata["duration"] = float(track["duration_s"])
        if track.get("path"):
            metadata["file"] = str(track["path"])
        metadata["artUrl"] = f"{http_base.rstrip('/')}/cover/{track.get('track_id')}"
        props["metadata"] = metadata
    return props


def _number(params: dict[str, Any], *names: str) -> float:
    for name in names:
        value = params.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    raise PluginError(INVALID_PARAMS, f"a number {names[0]!r} is required")


def control(call: Callable[..., Any], command: str, params: dict[str, Any]) -> None:
    """One ``Plugin.Stream.Player.Control`` command (names as snapserver 0.26 and later spell them)."""
    name = command.lower()
    simple = {"play": "play", "pause": "pause", "playpause": "toggle", "stop": "stop", "next": "next",
              "previous": "previous"}
    if name in simple:
        call(simple[name])
    elif name == "setposition":
        call("seek", {"position_s": max(0.0, _number(params, "position", "Position"))})
    elif name == "seek":
        status = call("status")
        elapsed = float(status.get("elapsed_s") or 0.0)
        call("seek", {"position_s": max(0.0, elapsed + _number(params, "offset", "Offset"))})
    else:
        raise PluginError(INVALID_PARAMS, f"unknown command {command!r}")


def set_property(call: Callable[..., Any], params: dict[str, Any]) -> None:
    """``Plugin.Stream.Player.SetProperty``: ``{"volume": 50}`` or ``{"property": "volume", "value": 50}``."""
    if "property" in params and "value" in params:
        params = {str(params["property"]): params["value"]}
    for key, value in params.items():
        if key == "loopStatus":
            flags = {"none": (False, False), "playlist": (True, False), "track": (True, True)}.get(str(value))
            if flags is None:
                raise PluginError(INVALID_PARAMS, f"loopStatus must be none, track or playlist, got {value!r}")
            call("options.set", {"repeat": flags[0], "single": flags[1]})
        elif key == "shuffle":
            call("options.set", {"random": bool(value)})
        elif key == "volume":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise PluginError(INVALID_PARAMS, "volume must be a number from 0 to 100")
            call("volume.set", {"percent": max(0, min(100, int(round(value))))})
        else:
            raise PluginError(INVALID_PARAMS, f"Auralis has no {key!r} property")


class Plugin:
    """The script: one connection for requests, one watching events (each reconnects on its own)."""

    def __init__(self, target: ctl.Target, http_base: str, out: TextIO = sys.stdout, log: TextIO = sys.stderr) -> None:
        self.target = target
        self.http_base = http_base
        self._out = out
        self._log = log
        self._lock = threading.Lock()  # one line at a time on stdout
        self._client: ctl.ControlClient | None = None
        self._last_props: dict[str, Any] | None = None
        self.ready = threading.Event()

    # ------------------------------------------------------------------ output
    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps({"jsonrpc": "2.0", **message}, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def say(self, text: str) -> None:
        print(f"auralis-snapcast-control: {text}", file=self._log, flush=True)

    # ------------------------------------------------------------------ the daemon
    def connect(self) -> ctl.ControlClient:
        """A connection to the daemon, waiting (and saying so once) until it answers."""
        said = False
        while True:
            try:
                return ctl.ControlClient.connect(self.target)
            except ctl.CtlError as exc:
                if not said:
                    self.say(f"waiting for auralisd at {self.target.describe()}: {exc}")
                    said = True
                time.sleep(RETRY_S)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        for attempt in (1, 2):
            if self._client is None:
                self._client = self.connect()
            try:
                return self._client.call(method, params)
            except ctl.ConnectError:
                self._client.close()
                self._client = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def publish_properties(self, status: dict[str, Any] | None = None) -> None:
        props = properties(status if status is not None else self.call("status"), self.http_base)
        if props != self._last_props:
            self._last_props = props
            self.send({"method": "Plugin.Stream.Player.Properties", "params": props})

    def watch(self) -> None:
        """Forever: subscribe to the daemon's events and send the properties on every change."""
        while True:
            client = self.connect()
            try:
                client.call("subscribe", {"events": WATCH_EVENTS})
                if not self.ready.is_set():
                    self.ready.set()
                    self.send({"method": "Plugin.Stream.Ready"})
                self.publish_properties(client.call("status"))
                while True:
                    event = client.next_event(timeout_s=None)
                    if event is None:
                        continue
                    if event[0] == "shutdown":
                        break
                    self.publish_properties(client.call("status"))
            except ctl.CtlError as exc:
                self.say(f"lost auralisd ({exc}); reconnecting")
            finally:
                client.close()
            time.sleep(RETRY_S)

    # ------------------------------------------------------------------ requests from snapserver
    def handle_line(self, line: str) -> None:
        try:
            request = json.loads(line)
        except ValueError:
            self.send({"id": None, "error": {"code": PARSE_ERROR, "message": "not JSON"}})
            return
        if not isinstance(request, dict) or "method" not in request:
            self.send({"id": None, "error": {"code": PARSE_ERROR, "message": "not a JSON-RPC request"}})
            return
        if "id" not in request:
            return  # a notification from the server: nothing to answer
        rid, method = request["id"], request.get("method")
        raw = request.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        try:
            if method == "Plugin.Stream.Player.GetProperties":
                status = self.call("status")
                result: Any = properties(status, self.http_base)
            elif method == "Plugin.Stream.Player.Control":
                nested = params.get("params")
                inner: dict[str, Any] = nested if isinstance(nested, dict) else {}
                control(self.call, str(params.get("command", "")), inner)
                result = "ok"
            elif method == "Plugin.Stream.Player.SetProperty":
                set_property(self.call, params)
                result = "ok"
            else:
                raise PluginError(METHOD_NOT_FOUND, f"method {method!r} not found")
        except PluginError as exc:
            self.send({"id": rid, "error": {"code": exc.code, "message": exc.message}})
            return
        except ctl.CtlError as exc:
            self.send({"id": rid, "error": {"code": DAEMON_ERROR, "message": str(exc)}})
            return
        self.send({"id": rid, "result": result})

    def serve(self, stdin: TextIO = sys.stdin) -> None:
        threading.Thread(target=self.watch, name="auralis-events", daemon=True).start()
        for line in stdin:
            if line.strip():
                self.handle_line(line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="auralis-snapcast-control", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", metavar="PATH", help="auralisd's control socket")
    parser.add_argument("--host", metavar="HOST:PORT", help="auralisd's TCP control address")
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--token-file", metavar="FILE", help="the token for --host")
    parser.add_argument("--http", metavar="URL", help=f"auralisd's HTTP base for cover art (default {DEFAULT_HTTP})")
    for ignored in ("--stream", "--snapcast-host", "--snapcast-port"):  # what snapserver passes
        parser.add_argument(ignored, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, _unknown = build_parser().parse_known_args(argv)
    try:
        target = ctl.resolve_target(args)
    except ctl.CtlError as exc:
        print(f"auralis-snapcast-control: {exc}", file=sys.stderr)
        return 2
    http_base = args.http or os.environ.get("AURALIS_HTTP") or DEFAULT_HTTP
    try:
        Plugin(target, http_base).serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
