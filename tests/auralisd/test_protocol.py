"""The control protocol at three layers: the sans-IO codec, the command table, and requests
through a real daemon's sockets (the end of this file)."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from auralisd.app.commands import COMMANDS, validate
from auralisd.app.replies import error_to_wire
from auralisd.errors import RpcError
from auralisd.protocol.codec import (
    MAX_FRAME_BYTES,
    BadRequestShape,
    Decoder,
    Notification,
    ProtocolViolation,
    Request,
    Response,
    encode_notification,
    encode_request,
    encode_response,
    wire_safe,
)


def decode_all(data: bytes, step: int = 7) -> list:
    decoder = Decoder()
    out = []
    for i in range(0, len(data), step):  # fed in awkward slices, as a socket would
        decoder.feed(data[i : i + step])
        out += list(decoder.messages())
    return out


def test_round_trips_of_every_message_kind() -> None:
    data = (
        encode_request(1, "queue.add", {"paths": ["a/ü.flac"], "track_ids": [3]})
        + encode_response(1, None, {"added": [{"pos": 0, "track_id": 3}]})
        + encode_response(2, {"code": "not_found", "message": "no track 9"}, None)
        + encode_notification("player", {"state": "play", "elapsed_s": 1.5})
    )
    assert decode_all(data) == [
        Request(1, "queue.add", {"paths": ["a/ü.flac"], "track_ids": [3]}),
        Response(1, None, {"added": [{"pos": 0, "track_id": 3}]}),
        Response(2, {"code": "not_found", "message": "no track 9"}, None),
        Notification("player", {"state": "play", "elapsed_s": 1.5}),
    ]


def test_numpy_values_encode_as_plain_numbers() -> None:
    (message,) = decode_all(encode_notification("x", {"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(2)}))
    assert message.data == {"a": 0.5, "b": 3, "c": [0, 1]}


def test_wire_safe_turns_non_finite_floats_into_none() -> None:
    assert wire_safe({"lufs": -math.inf, "x": [math.nan, 1.0]}) == {"lufs": None, "x": [None, 1.0]}


@pytest.mark.parametrize(
    "obj",
    [
        "hello",
        [],
        [0, 1, "ping"],  # params missing
        [0, -1, "ping", {}],  # negative msgid
        [0, True, "ping", {}],  # bool is not an int here
        [0, 1, "", {}],
        [0, 1, 5, {}],
        [0, 1, "ping", [1, 2]],  # positional params are not part of the protocol
        [3, 1, "ping", {}],
        [2, 5, {}],
    ],
)
def test_malformed_shapes_are_answerable_bad_requests(obj) -> None:
    (message,) = decode_all(msgpack.packb(obj))
    assert isinstance(message, BadRequestShape)


def test_bad_shape_keeps_the_msgid_when_it_can() -> None:
    (message,) = decode_all(msgpack.packb([0, 42, "ping", "params"]))
    assert isinstance(message, BadRequestShape) and message.msgid == 42


def test_garbage_bytes_violate_the_protocol() -> None:
    decoder = Decoder()
    decoder.feed(b"\xc1\xc1\xc1")  # 0xc1 is never used in msgpack
    with pytest.raises(ProtocolViolation):
        list(decoder.messages())


@pytest.mark.parametrize(
    "obj",
    [
        [0, 9, "ping", {1: 2}],  # an integer key in params
        [0, 9, "ping", {"x": {1.5: 2}}],  # a float key deeper down
        [0, 9, "ping", {"x": {(1, 2): 3}}],  # an array as a key
        [0, 9, "ping", {"x": msgpack.ExtType(5, b"abc")}],  # an ext value
        [0, 9, msgpack.ExtType(1, b"")],  # an ext value where the method should be
    ],
)
def test_well_formed_values_of_the_wrong_shape_are_answerable_and_keep_the_stream(obj) -> None:
    """docs/protocol.md: a well-formed value of the wrong shape is answered (msgid kept) and the
    connection stays; before, integer keys and ext values raised ProtocolViolation (connection closed)."""
    messages = decode_all(msgpack.packb(obj, use_bin_type=True) + encode_request(10, "ping"))
    assert len(messages) == 2
    bad, after = messages
    assert isinstance(bad, BadRequestShape) and bad.msgid == 9
    assert isinstance(after, Request) and after.msgid == 10 and after.method == "ping"


def test_keys_and_ext_values_are_refused_inside_responses_and_notifications_too() -> None:
    for obj in ([2, "x", {7: 1}], [1, 3, None, msgpack.ExtType(2, b"z")]):
        (message,) = decode_all(msgpack.packb(obj))
        assert isinstance(message, BadRequestShape)


def test_oversized_ext_values_still_violate_the_limits() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolViolation):
        decoder.feed(msgpack.packb([0, 1, "ping", {"x": msgpack.ExtType(5, b"a" * (MAX_FRAME_BYTES + 10))}]))
        list(decoder.messages())


def test_frames_over_one_mebibyte_are_refused_without_buffering_them() -> None:
    decoder = Decoder()
    big = msgpack.packb([0, 1, "ping", {"x": "a" * MAX_FRAME_BYTES}])
    with pytest.raises(ProtocolViolation):
        for i in range(0, len(big), 65536):
            decoder.feed(big[i : i + 65536])
            list(decoder.messages())
    # a header that announces a 100 MB string fails as soon as 1 MiB of it is buffered
    decoder = Decoder()
    decoder.feed(b"\x94\x00\x01\xa4ping\x81\xa1x\xdb" + (100_000_000).to_bytes(4, "big"))
    assert list(decoder.messages()) == []
    with pytest.raises(ProtocolViolation):
        for _ in range(20):
            decoder.feed(b"a" * 65536)
            list(decoder.messages())


def test_a_frame_just_under_the_limit_is_fine() -> None:
    frame = msgpack.packb([0, 1, "ping", {"x": "a" * (MAX_FRAME_BYTES - 100)}])
    assert len(frame) < MAX_FRAME_BYTES
    (message,) = decode_all(frame, step=65536)
    assert isinstance(message, Request) and len(message.params["x"]) == MAX_FRAME_BYTES - 100


# ----------------------------------------------------------------- command table
def test_every_contract_method_is_in_the_table() -> None:
    expected = {
        "ping", "auth", "status", "play", "pause", "toggle", "stop", "next", "previous", "seek",
        "queue.add", "queue.insert", "queue.delete", "queue.move", "queue.clear", "queue.list",
        "queue.shuffle", "queue.crop", "queue.swap",
        "library.scan", "library.list", "library.search", "library.rejected", "library.track", "fingerprint.get",
        "preset.list", "preset.set", "intensity.set", "volume.set", "options.set", "album_mode.set", "subscribe",
        "library.find", "library.values", "library.count", "library.stats",
        "playlist.list", "playlist.show", "playlist.save", "playlist.load", "playlist.add", "playlist.clear",
        "playlist.delete", "playlist.move", "playlist.rename", "playlist.remove",
        "outputs", "enable_output", "disable_output", "pool.timeline",
    }  # fmt: skip
    assert set(COMMANDS) == expected


@pytest.mark.parametrize(
    ("method", "params", "needle"),
    [
        ("seek", {}, "missing parameter 'position_s'"),
        ("seek", {"position_s": "1"}, "'position_s' must be a finite number"),
        ("seek", {"position_s": math.inf}, "finite number"),
        ("play", {"pos": -1}, "'pos' must be an integer >= 0"),
        ("play", {"pos": 1.5}, "'pos' must be an integer >= 0"),
        ("queue.add", {"paths": "a.flac"}, "'paths' must be an array"),
        ("queue.add", {"paths": [1]}, "'paths' must be an array"),
        ("queue.delete", {"positions": [0, "1"]}, "'positions' must be an array"),
        ("options.set", {"repeat": 1}, "'repeat' must be true or false"),
        ("status", {"verbose": True}, "unexpected parameter 'verbose'"),
        ("library.find", {"tags": {"nosuchtag": "x"}}, "'tags' must be a map of 1 to 32 tags"),
        ("library.find", {"tags": {"artist": 1}}, "'tags' must be a map"),
        ("library.values", {"tag": "any"}, "'tag' must be a string among"),
        ("library.values", {"tag": "album", "group": ["file"]}, "'group' must be an array"),
        ("library.search", {}, "give at least one of 'query', 'tags' or 'filter'"),
        ("playlist.save", {"name": "x", "mode": "overwrite"}, "among: create, append, replace"),
        ("playlist.load", {}, "missing parameter 'name'"),
    ],
)
def test_validation_rejects_wrong_params_naming_them(method: str, params: dict, needle: str) -> None:
    with pytest.raises(RpcError) as info:
        validate(COMMANDS[method], params)
    assert info.value.code == "invalid_params"
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("method", "params", "needle"),
    [
        ("seek", {"position_s": 1e308}, "'position_s' must be a finite number between 0 and"),  # OverflowError before
        ("seek", {"position_s": -0.5}, "'position_s' must be a finite number between 0 and"),
        ("intensity.set", {"value": 1.0000001}, "'value' must be a finite number between 0 and 1"),
        ("volume.set", {"percent": 101}, "'percent' must be an integer between 0 and 100"),
        ("volume.set", {"percent": 2**70}, "'percent' must be an integer between 0 and 100"),
        ("subscribe", {"events": ["player", "nope"]}, "'events' must be an array of"),
        ("queue.add", {"paths": ["a" * 5000]}, "at most 4095 bytes"),
        ("library.list", {"path": "/" + "x" * 256}, "components of at most 255 bytes"),
        ("library.track", {"track_id": 1, "path": "a.flac"}, "give exactly one of 'track_id' or 'path'"),
        ("library.track", {}, "give exactly one of 'track_id' or 'path'"),
        ("fingerprint.get", {}, "give exactly one of 'track_id' or 'path'"),
        ("queue.add", {}, "give at least one of 'paths' or 'track_ids'"),
        ("queue.insert", {"pos": 0, "paths": []}, "give at least one of 'paths' or 'track_ids'"),
        ("options.set", {}, "give at least one of 'repeat', 'random', 'single' or 'consume'"),
    ],
)
def test_ranges_and_parameter_groups_are_declared_in_the_table(method: str, params: dict, needle: str) -> None:
    with pytest.raises(RpcError) as info:
        validate(COMMANDS[method], params)
    assert info.value.code == "invalid_params"
    assert needle in info.value.message, info.value.message


def test_every_parameter_of_every_command_is_declared_with_a_known_kind() -> None:
    from auralisd.app.commands import Param

    for cmd in COMMANDS.values():
        for name, param in cmd.params.items():
            assert isinstance(param, Param), (cmd.name, name)


def test_validation_passes_good_params_through() -> None:
    assert validate(COMMANDS["queue.insert"], {"pos": 0, "track_ids": [1, 2]}) == {"pos": 0, "track_ids": [1, 2]}
    assert validate(COMMANDS["play"], {"pos": None}) == {}


def test_error_to_wire_maps_library_errors_to_codes() -> None:
    from auralis.errors import AudioNotFoundError, CorruptAudioError, UnknownPresetError

    assert error_to_wire(AudioNotFoundError("/x.flac", "no such file"))["code"] == "not_found"
    assert error_to_wire(CorruptAudioError("/x.flac", "bad"))["code"] == "bad_audio"
    assert error_to_wire(UnknownPresetError("nope"))["code"] == "unknown_preset"
    internal = error_to_wire(KeyError("secret internals"))
    assert internal["code"] == "internal" and "secret" not in internal["message"]


@pytest.mark.parametrize(
    ("method", "params", "needle"),
    [
        ("queue.add", {"track_ids": [2**64 - 1]}, "'track_ids' must be an array"),
        ("queue.insert", {"pos": 2**63, "track_ids": [1]}, "'pos' must be an integer >= 0 (at most"),
        ("library.track", {"track_id": 2**64 - 1}, "'track_id' must be an integer >= 0 (at most"),
        ("queue.add", {"paths": ["Album/a\x00b.flac"]}, "without NUL"),
        ("library.track", {"path": "a\x00b.flac"}, "without NUL"),
        ("library.list", {"path": "\x00"}, "without NUL"),
        ("fingerprint.get", {"path": "x\x00"}, "without NUL"),
    ],
)
def test_validation_refuses_what_the_database_and_os_cannot_hold(method: str, params: dict, needle: str) -> None:
    with pytest.raises(RpcError) as info:
        validate(COMMANDS[method], params)
    assert info.value.code == "invalid_params" and needle in info.value.message
    assert validate(COMMANDS["library.track"], {"track_id": 2**63 - 1}) == {"track_id": 2**63 - 1}


def test_internal_errors_name_nothing_of_the_exception() -> None:
    wire = error_to_wire(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert wire == {"code": "internal", "message": "internal error; see the daemon log"}


def test_session_commands_refuse_huge_ids_and_deep_nesting() -> None:
    from auralisd.protocol.audio_frames import FrameError, parse_session_command

    with pytest.raises(FrameError) as info:
        parse_session_command(f'{{"type": "play_enhanced", "track_id": {2**70}}}')
    assert info.value.code == "invalid_params"
    with pytest.raises(FrameError) as info:
        parse_session_command("[" * 4096)  # RecursionError inside json, before the fix
    assert info.value.code == "bad_request"


# ----------------------------------------------------------------- a real daemon, real sockets
TOKEN = "protocol-test-token-0123456789"


@pytest.fixture(scope="module")
def tcp_daemon(module_daemon_factory, tmp_path_factory):
    """A real auralisd with an empty music folder, the Unix socket and a TCP control port."""
    from .conftest import free_port

    root = tmp_path_factory.mktemp("protocol")
    (root / "music").mkdir()
    token_file = root / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    daemon = module_daemon_factory(
        root / "music", ["--control-tcp", f"127.0.0.1:{port}", "--token-file", str(token_file)], name="protocol"
    ).start()
    return daemon, port


def test_refused_input_gets_invalid_params_not_internal(tcp_daemon) -> None:
    daemon, _ = tcp_daemon
    with daemon.client() as c:
        for method, params in [
            ("queue.add", {"track_ids": [2**64 - 1]}),
            ("library.track", {"track_id": 2**64 - 1}),
            ("queue.add", {"paths": [str(daemon.music / "a\x00b.flac")]}),
            ("library.track", {"path": str(daemon.music / "a\x00b.flac")}),
        ]:
            _, _, error, result = c.call_raw(method, params)
            assert error is not None and error["code"] == "invalid_params", (method, error)
        _, _, error, _ = c.call_raw("library.track", {"track_id": 2**63 - 1})  # the largest id reaches the database
        assert error["code"] == "not_found"
        assert c.call("ping") == "pong"
    log = daemon.log()
    assert "OverflowError" not in log and "embedded null byte" not in log


def test_ping_needs_no_auth_on_tcp_but_everything_else_does(tcp_daemon) -> None:
    from .rpc import Client

    _, port = tcp_daemon
    with Client.tcp("127.0.0.1", port) as c:
        assert c.call("ping") == "pong"
        _, _, error, _ = c.call_raw("status")
        assert error["code"] == "unauthorized"
    with Client.tcp("127.0.0.1", port) as c:
        _, _, error, _ = c.call_raw("frobnicate")  # unknown methods are not a way around auth
        assert error["code"] == "unauthorized"


def test_idle_unauthenticated_tcp_clients_are_closed_and_authenticated_ones_stay(tcp_daemon) -> None:
    """On a real socket, by events only: the idle client's close; when it comes (exactly AUTH_TIMEOUT_S)
    is checked on trio's MockClock in test_control_timing.py. The socket timeout is a safety bound."""
    import socket

    from .rpc import Client

    _, port = tcp_daemon
    with Client.tcp("127.0.0.1", port) as good, socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
        assert good.call("auth", token=TOKEN) is True
        assert idle.recv(1) == b""  # the daemon hung up
        assert good.call("status")["queue_length"] == 0


def test_idle_tcp_clients_cannot_lock_the_owner_out_of_the_unix_socket(tcp_daemon) -> None:
    import socket

    daemon, port = tcp_daemon
    idle = []
    try:
        for _ in range(300):  # more than the old shared limit of 256
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # the daemon refuses the last of the burst (beyond MAX_TCP_CONNECTIONS) at once: then it has seen them
        # all. The socket timeout is a safety bound only.
        try:
            assert idle[-1].recv(1) == b""
        except ConnectionResetError:
            pass
        with daemon.client() as c:
            assert c.call("ping") == "pong"
            assert c.call("status")["queue_length"] == 0
    finally:
        for sock in idle:
            sock.close()
