"""The sans-IO MPD protocol: tokenizer, responses, ACK lines, line and command-list framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralisd.protocol.mpd import (
    GREETING,
    Ack,
    AckError,
    CommandListFramer,
    CommandListTooLong,
    LineSplitter,
    LineTooLong,
    Run,
    binary_chunk,
    format_pairs,
    join,
    parse_pairs,
    tokenize,
)
from auralisd.protocol.mpd.tokenizer import read_words


def test_greeting_names_the_protocol_level() -> None:
    assert GREETING == b"OK MPD 0.23.0\n"


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        ("status", ["status"]),
        ("play 3", ["play", "3"]),
        ("  play\t3  ", ["play", "3"]),
        ('add "Album/01 first.flac"', ["add", "Album/01 first.flac"]),
        (r'find "(Artist == \"AC/DC\")"', ["find", '(Artist == "AC/DC")']),
        (r'add "back\\slash"', ["add", "back\\slash"]),
        ('sendmessage auralis "preset warm"', ["sendmessage", "auralis", "preset warm"]),
        ('add ""', ["add", ""]),
        ("add Ünïcödé/ß.flac", ["add", "Ünïcödé/ß.flac"]),
    ],
)
def test_tokenize_follows_mpd_quoting(line: str, tokens: list[str]) -> None:
    assert tokenize(line) == tokens


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pla-y", "Invalid word character"),
        ('play "1', "Missing closing '\"'"),
        ('play "1"x', "Space expected after closing '\"'"),
        ("play 'x'", "Invalid unquoted character"),
        ('play a"b', "Invalid unquoted character"),
        ("", "No command given"),
    ],
)
def test_tokenize_errors_are_mpds(line: str, message: str) -> None:
    with pytest.raises(AckError) as caught:
        tokenize(line)
    assert caught.value.code == Ack.UNKNOWN  # real MPD 0.23 answers these with code 5 and {}
    assert caught.value.message == message
    assert caught.value.to_line() == f"ACK [5@0] {{}} {message}\n".encode()


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00")), max_size=6))
def test_join_then_tokenize_round_trips_any_arguments(args: list[str]) -> None:
    assert tokenize(join("cmd", *args)) == ["cmd", *args]


@given(st.text(max_size=60))
def test_tokenize_never_fails_other_than_with_an_ack(line: str) -> None:
    try:
        tokens = tokenize(line)
    except AckError as exc:
        assert exc.code == Ack.UNKNOWN
    else:
        assert tokens and tokens[0]


def _outcome(read, line: str) -> object:
    try:
        return read(line)
    except AckError as exc:
        return (type(exc), exc.message, getattr(exc, "silent", None))


_PLAINISH = st.text(alphabet=st.sampled_from(list("ab_Z9 \t\"'\\\x7f\x85\xa0\u00e4/.-+:")), max_size=24)


@given(st.one_of(_PLAINISH, _PLAINISH.map(lambda rest: "status" + rest), st.text(max_size=40)))
def test_the_plain_line_shortcut_reads_every_line_as_the_full_reader_does(line: str) -> None:
    # tokenize() answers plain lines (a command word and unquoted arguments) with one regex match
    assert _outcome(tokenize, line) == _outcome(read_words, line)


def test_ack_line_format_and_codes() -> None:
    error = AckError(Ack.NO_EXIST, "No such song", command="playid", index=3)
    assert error.to_line() == b"ACK [50@3] {playid} No such song\n"
    assert [int(a) for a in Ack] == [1, 2, 3, 4, 5, 50, 51, 52, 53, 54, 55, 56]
    assert AckError(Ack.ARG, "two\nlines").to_line() == b"ACK [2@0] {} two lines\n"


def test_format_pairs_and_binary() -> None:
    body = format_pairs([("volume", 50), ("repeat", True), ("elapsed", 1.5), ("skipped", None), ("file", "a b")])
    assert body == b"volume: 50\nrepeat: 1\nelapsed: 1.500\nfile: a b\n"
    assert parse_pairs(body.decode()) == [("volume", "50"), ("repeat", "1"), ("elapsed", "1.500"), ("file", "a b")]
    assert binary_chunk(b"\x00\n\xff") == b"binary: 3\n\x00\n\xff\n"


def test_line_splitter_bounds_what_it_holds() -> None:
    splitter = LineSplitter(max_line_bytes=16)
    assert splitter.feed(b"ping\nsta") == [b"ping"]
    assert splitter.feed(b"tus\n") == [b"status"]
    with pytest.raises(LineTooLong):
        splitter.feed(b"x" * 16)  # no newline within the limit
    with pytest.raises(LineTooLong):
        LineSplitter(max_line_bytes=16).feed(b"y" * 20 + b"\n")


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=10), st.integers(1, 7))
def test_line_splitter_is_independent_of_how_bytes_arrive(lines: list[bytes], step: int) -> None:
    data = b"".join(line + b"\n" for line in lines)
    splitter = LineSplitter(max_line_bytes=64)
    out = []
    for i in range(0, len(data), step):
        out += splitter.feed(data[i : i + step])
    assert out == lines


def test_command_list_framing() -> None:
    framer = CommandListFramer()
    assert framer.feed(("status",), 7) == Run((("status",),))
    assert framer.feed(("command_list_ok_begin",), 22) is None
    assert framer.feed(("play", "1"), 7) is None
    assert framer.feed(("status",), 7) is None
    assert framer.feed(("command_list_end",), 17) == Run((("play", "1"), ("status",)), in_list=True, list_ok=True)
    assert framer.feed(("command_list_begin",), 19) is None
    assert framer.feed(("command_list_end",), 17) == Run((), in_list=True, list_ok=False)
    with pytest.raises(AckError, match="unknown command"):
        framer.feed(("command_list_end",), 17)


def test_command_list_is_bounded() -> None:
    framer = CommandListFramer(max_bytes=100, max_commands=1000)
    framer.feed(("command_list_begin",), 19)
    with pytest.raises(CommandListTooLong):
        for _ in range(20):
            framer.feed(("status",), 7)
    assert not framer.collecting  # the list is dropped with the connection
    counted = CommandListFramer(max_bytes=10**9, max_commands=3)
    counted.feed(("command_list_begin",), 19)
    with pytest.raises(CommandListTooLong):
        for _ in range(4):
            counted.feed(("ping",), 5)
