"""clients/snapcast_control.py: Auralis status -> Snapcast properties, and Snapcast commands -> Auralis requests.

The end-to-end path through a real snapserver is in tests/auralisd/test_snapcast.py; these pin the mapping.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from clients.snapcast_control import Plugin, PluginError, control, properties, set_property

STATUS: dict[str, Any] = {
    "state": "play", "queue_length": 3, "elapsed_s": 12.5, "volume": 80, "repeat": True, "single": False,
    "random": True, "track": {"track_id": 7, "title": "Song", "artist": "Band", "album": "Record", "duration_s": 201.0,
                              "path": "/music/a.flac"},
}  # fmt: skip


def test_properties_carry_state_options_and_metadata_with_cover_url() -> None:
    props = properties(STATUS, "http://box:8765/")
    assert props["playbackStatus"] == "playing" and props["loopStatus"] == "playlist" and props["shuffle"] is True
    assert props["volume"] == 80 and props["position"] == 12.5 and props["canSeek"] and props["canControl"]
    assert props["metadata"] == {"trackId": "7", "title": "Song", "artist": ["Band"], "album": "Record",
                                 "duration": 201.0, "file": "/music/a.flac", "artUrl": "http://box:8765/cover/7"}
    stopped = properties({"state": "stop", "queue_length": 0}, "http://x")
    assert stopped["playbackStatus"] == "stopped" and "metadata" not in stopped and not stopped["canPlay"]


def test_commands_map_to_auralis_requests_in_either_spelling() -> None:
    calls: list[tuple[str, Any]] = []

    def call(method: str, params: Any = None) -> Any:
        calls.append((method, params))
        return STATUS if method == "status" else None

    for command in ("play", "Pause", "playPause", "stop", "next", "Previous"):
        control(call, command, {})
    control(call, "setPosition", {"position": 30})
    control(call, "Seek", {"Offset": -20})
    assert calls == [("play", None), ("pause", None), ("toggle", None), ("stop", None), ("next", None),
                     ("previous", None), ("seek", {"position_s": 30.0}), ("status", None),
                     ("seek", {"position_s": 0.0})]  # 12.5 - 20 stops at the start
    calls.clear()
    set_property(call, {"loopStatus": "track"})
    set_property(call, {"property": "volume", "value": 55.4})
    set_property(call, {"shuffle": False})
    assert calls == [("options.set", {"repeat": True, "single": True}), ("volume.set", {"percent": 55}),
                     ("options.set", {"random": False})]
    with pytest.raises(PluginError):
        set_property(call, {"rate": 2.0})
    with pytest.raises(PluginError):
        control(call, "eject", {})


def test_bad_requests_get_json_rpc_errors() -> None:
    out = io.StringIO()
    plugin = Plugin(target=None, http_base="http://x", out=out)  # type: ignore[arg-type]
    plugin.handle_line("not json")
    plugin.handle_line(json.dumps({"id": 4, "jsonrpc": "2.0", "method": "Plugin.Stream.Player.Nope"}))
    plugin.handle_line(json.dumps({"id": 5, "jsonrpc": "2.0", "method": "Plugin.Stream.Player.Control",
                                   "params": {"command": "eject"}}))
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["error"]["code"] for r in replies] == [-32700, -32601, -32602]
    assert [r["id"] for r in replies] == [None, 4, 5]
