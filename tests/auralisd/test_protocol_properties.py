"""Property-based run of every documented method against a real daemon over its real socket.

Hypothesis generates parameters for each method in docs/protocol.md: well-formed ones (from the
command table's declared kinds, ranges and choices, with real paths of the test library mixed in)
and ill-typed ones (any msgpack value, extreme numbers, odd strings, unknown keys). Properties:
every request is answered (a response with its msgid), no request is answered ``internal``, and
the daemon keeps serving (a ping on a fresh connection after each request, and on the same
connection unless the reply was ``unauthorized``, which closes it by design).

Bounded and deterministic: a fixed number of examples per method, ``derandomize=True`` and no
example database, ``deadline=None`` (a cold fingerprint may take a while on a loaded machine).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auralisd.app.commands import COMMANDS, MAX_UINT, Param

from .conftest import REPO, write_tracks
from .rpc import Client

EXAMPLES_PER_METHOD = 30
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES_PER_METHOD,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def documented_methods() -> list[str]:
    """Every method docs/protocol.md documents (headings and list items like ``name {params}``)."""
    text = (REPO / "docs" / "protocol.md").read_text()
    commands = text[text.index("\n## Commands") : text.index("\n## WebSocket audio")]
    return sorted(set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*) \{", commands)))


def test_the_documented_methods_are_the_served_methods() -> None:
    assert set(documented_methods()) == set(COMMANDS)


@pytest.fixture(scope="module")
def live(module_daemon_factory, tmp_path_factory):
    base = tmp_path_factory.mktemp("properties")
    music = base / "music"
    write_tracks(music / "Album", [("01 a.flac", 1.0, 44_100, 1, False), ("02 b.wav", 1.0, 48_000, 2, True)])
    write_tracks(music, [("03 c.flac", 1.0, 44_100, 3, False)])
    (music / "notes.txt").write_text("not audio")
    daemon = module_daemon_factory(music, name="properties").start()
    with daemon.client() as c:
        daemon.wait_scan(c, 3)
        c.call("queue.add", paths=["Album"])
    return daemon, music


def test_an_absurd_seek_while_playing_is_invalid_params_and_the_music_plays_on(live) -> None:
    """issue 9: ``seek`` with 1e308 s raised OverflowError in the player and the daemon exited 1."""
    daemon, _ = live
    with Client.unix(daemon.socket_path, timeout_s=60) as c:
        c.call("play", pos=0)
        for bad in (1e308, -1e308, 1e9 + 1, -0.001):
            _, _, error, _ = c.call_raw("seek", {"position_s": bad})
            assert error is not None and error["code"] == "invalid_params", (bad, error)
        _, _, error, result = c.call_raw("seek", {"position_s": 1e9})  # the largest accepted: clamped to the end
        assert error is None or error["code"] == "not_found", error
        assert c.call("status")["queue_length"] == 2
        c.call("stop")
    assert daemon.proc.poll() is None


# ----------------------------------------------------------------- strategies
ODD_TEXT = st.sampled_from(["", " ", "..", "../../etc/passwd", "/", "//", "\u00e9\u0301", "\U0001f3b5", "a" * 300,
                            "/etc/passwd", "Album/../..", "\u202e", "~", "*", "%00", "\\", "\x7f"])  # fmt: skip
ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, float("nan"), float("inf"), float("-inf")]),
    st.text(max_size=40),
    ODD_TEXT,
    st.binary(max_size=40),
)
ANY_VALUE = st.recursive(
    ANY_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def path_values(music: Path) -> st.SearchStrategy[str]:
    real = [str(music), str(music / "Album"), str(music / "Album" / "01 a.flac"), "Album", "03 c.flac",
            "Album/02 b.wav", str(music / "notes.txt"), str(music / "missing.flac"), str(music / "Album" / ".." / "..")]  # fmt: skip
    return st.one_of(st.sampled_from(real), ODD_TEXT, st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=60))


def well_formed_value(param: Param, music: Path) -> st.SearchStrategy[Any]:
    """Values of the declared kind (inside a declared range or set of choices)."""
    kind = param.kind
    if param.choices is not None:
        one: st.SearchStrategy[Any] = st.sampled_from(param.choices)
        return st.lists(one, max_size=4) if kind == "strs" else one
    if kind in ("int", "uint"):
        lo = int(param.lo) if param.lo is not None else (0 if kind == "uint" else -(2**63))
        hi = int(param.hi) if param.hi is not None else MAX_UINT
        return st.one_of(st.integers(min_value=lo, max_value=min(hi, lo + 5)), st.integers(min_value=lo, max_value=hi))
    if kind == "number":
        lo_f = param.lo if param.lo is not None else -1e300
        hi_f = param.hi if param.hi is not None else 1e300
        return st.one_of(st.floats(min_value=lo_f, max_value=hi_f, allow_nan=False), st.sampled_from([lo_f, hi_f]),
                         st.integers(min_value=int(lo_f), max_value=int(min(hi_f, 10**6))))  # fmt: skip
    if kind == "str":
        return st.one_of(st.text(max_size=40), ODD_TEXT, st.sampled_from(["adaptive", "warm", "a"]))
    if kind == "bool":
        return st.booleans()
    if kind == "path":
        return path_values(music)
    if kind == "paths":
        return st.lists(path_values(music), max_size=4)
    if kind == "uints":
        return st.lists(st.one_of(st.integers(0, 6), st.integers(0, MAX_UINT)), max_size=4)
    if kind == "strs":
        return st.lists(st.text(max_size=10), max_size=4)
    if kind == "tags":
        from auralisd.protocol.query import MATCH_TAGS

        return st.dictionaries(st.sampled_from(MATCH_TAGS), st.one_of(st.text(max_size=20), ODD_TEXT), min_size=1,
                               max_size=4)  # fmt: skip
    raise AssertionError(f"no strategy for parameter kind {kind!r}: add one")


def well_formed_params(method: str, music: Path) -> st.SearchStrategy[dict[str, Any]]:
    params = COMMANDS[method].params
    return st.fixed_dictionaries(
        {}, optional={name: well_formed_value(param, music) for name, param in params.items()}
    )


def ill_typed_params(method: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.one_of(st.sampled_from(sorted(COMMANDS[method].params) or ["x"]), st.text(max_size=12))
    return st.dictionaries(keys, st.one_of(ANY_SCALAR, ANY_VALUE), max_size=5)  # scalars more often: extremes


# ----------------------------------------------------------------- the property
def answer(daemon, method: str, params: dict[str, Any]) -> None:
    with Client.unix(daemon.socket_path, timeout_s=120) as client:
        client.send_raw(msgpack.packb([0, 4242, method, params], use_bin_type=True))
        while True:
            message = client.read_message()  # raises ConnectionError when the daemon hangs up unanswered
            if message[0] == 1:
                break
        kind, msgid, error, _ = message
        assert msgid == 4242, message
        assert error is None or error["code"] != "internal", f"{method} {params!r} -> {error}"
        if error is None or error["code"] != "unauthorized":
            assert client.call("ping") == "pong"  # the connection stays
    assert daemon.proc.poll() is None, f"the daemon exited after {method} {params!r}"
    with Client.unix(daemon.socket_path, timeout_s=60) as other:
        assert other.call("ping") == "pong"


@pytest.mark.parametrize("method", documented_methods())
def test_every_well_formed_request_is_answered_and_never_internal(live, method: str) -> None:
    daemon, music = live

    @PROPERTY_SETTINGS
    @given(params=well_formed_params(method, music))
    def run(params: dict[str, Any]) -> None:
        answer(daemon, method, params)

    run()


@pytest.mark.parametrize("method", [*documented_methods(), "no.such.method", ""])
def test_every_ill_typed_request_is_answered_and_the_daemon_serves_on(live, method: str) -> None:
    daemon, _ = live

    @PROPERTY_SETTINGS
    @given(params=ill_typed_params(method) if method in COMMANDS else st.dictionaries(st.text(max_size=5), ANY_VALUE))
    def run(params: dict[str, Any]) -> None:
        answer(daemon, method, params)

    run()


def test_the_daemon_log_has_no_traceback_after_the_run(live) -> None:
    daemon, _ = live
    assert "Traceback" not in daemon.log()
