"""Outputs through a real daemon process: the control commands, ``status``, events, auralisctl, and a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clients import auralisctl

from .conftest import free_port
from .rpc import RpcError


def test_outputs_are_listed_switched_saved_and_shown_by_auralisctl(
    daemon_factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = free_port()  # nothing listens there: the output keeps retrying, the daemon serves on
    fifo_dir = tmp_path / "pipes"
    fifo_dir.mkdir()
    extra = ["--snapcast", f"room=tcp://127.0.0.1:{dead}", "--snapcast", f"den=pipe://{fifo_dir}/missing"]
    daemon = daemon_factory(None, extra).start()
    with daemon.client() as client:
        listed = client.call("outputs")["outputs"]
        assert [(o["id"], o["name"], o["kind"]) for o in listed] == [
            (0, "stream", "stream"), (1, "room", "snapcast"), (2, "den", "snapcast")]
        status = client.wait_status(lambda s: [o["state"] for o in s["outputs"]] == ["connected", "reconnecting",
                                                                                     "reconnecting"])
        room = status["outputs"][1]
        assert room["message"] == (f"cannot connect to snapserver at 127.0.0.1:{dead} (connection refused): is it "
                                   "running with a tcp source in server mode there?")
        assert status["outputs"][2]["message"] == (f"the pipe {fifo_dir}/missing does not exist (snapserver "
                                                   "creates it with mode=create)")
        client.call("subscribe", events=["output"])
        off = client.call("disable_output", name="room")
        assert (off["enabled"], off["state"]) == (False, "disabled")
        event = client.wait_event("output", lambda d: d["name"] == "room")
        assert event["state"] == "disabled"
        with pytest.raises(RpcError) as err:
            client.call("enable_output", name="kitchen")
        assert err.value.code == "not_found"
        with pytest.raises(RpcError) as err:
            client.call("enable_output", name="room", id=1)
        assert err.value.code == "invalid_params"
    code = auralisctl.main(["--socket", daemon.socket_path, "outputs"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == "0 stream (stream WebSocket /stream): enabled, connected"
    assert out.splitlines()[1] == f"1 room (snapcast tcp 127.0.0.1:{dead}): disabled"
    assert out.splitlines()[2].startswith(f"2 den (snapcast pipe {fifo_dir}/missing): enabled, reconnecting: the pipe")
    assert auralisctl.main(["--socket", daemon.socket_path, "disable", "2"]) == 0
    assert capsys.readouterr().out == f"2 den (snapcast pipe {fifo_dir}/missing): disabled\n"
    daemon.stop()

    again = daemon_factory(None, extra, root=daemon.root).start()  # same state folder: the choices were saved
    with again.client() as client:
        assert [(o["name"], o["enabled"]) for o in client.call("outputs")["outputs"]] == [
            ("stream", True), ("room", False), ("den", False)]
        on = client.call("enable_output", id=1)
        assert on["enabled"] and on["state"] in ("connecting", "reconnecting")
    log = again.log()  # both runs (one log file)
    assert "Traceback" not in log
    assert log.count(f"output den (snapcast pipe {fifo_dir}/missing): reconnecting") == 1


def test_disabling_the_stream_output_closes_its_listeners_and_refuses_new_ones(daemon_factory) -> None:
    http_port = free_port()
    daemon = daemon_factory(None, ["--http-port", str(http_port)]).start()
    url = f"ws://127.0.0.1:{http_port}/stream"
    deadline = time.monotonic() + 30
    while True:  # the control socket answers a moment before the HTTP port listens
        try:
            listening = auralisctl.WebSocketClient.connect(url)
            break
        except auralisctl.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        with daemon.client() as client:
            client.call("disable_output", name="stream")
            while listening.recv() is not None:  # events until the close frame
                pass
            assert (listening.close_code, listening.close_reason) == (1013, "the stream output is disabled")
            refused = auralisctl.WebSocketClient.connect(url)
            while refused.recv() is not None:
                pass
            assert refused.close_code == 1013
            refused.close()
            client.call("enable_output", id=0)
            again = auralisctl.WebSocketClient.connect(url)
            again.settimeout(1.0)
            try:
                again.recv()  # nothing plays: no message, but the connection stays open
            except (TimeoutError, OSError):
                pass
            assert again.close_code is None
            again.close()
    finally:
        listening.close()
