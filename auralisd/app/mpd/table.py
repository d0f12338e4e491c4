"""The MPD command table: name -> argument spec -> permission -> handler.

A command is declared with :func:`mpd_command` next to its handler; a module exports its
commands as a tuple (``COMMANDS``) and :func:`build_table` joins the tuples into one immutable
table (no import-time registry: ``auralisd/app/mpd/__init__.py`` names the modules).

Arguments are validated here, before the handler runs, with MPD's messages: a wrong count is
``ACK [2@i] {name} wrong number of arguments for "name"``, a bad number ``Integer expected: x``
and so on. The handler receives the converted values positionally after the context.

A handler is ``async def`` when it waits for an actor, or a plain ``def`` when it answers from
what is already in memory (``status``, ``currentsong`` read the player's published view): the
session runs a plain one without awaiting anything (:attr:`MpdCommand.sync`), so a request it
answers costs one receive and one send.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntFlag
from types import MappingProxyType
from typing import Any, Final

from ...protocol.mpd import Ack, AckError


class Permission(IntFlag):
    """MPD's permission classes (``default_permissions``); a command needs all of its flags."""

    NONE = 0
    READ = 1
    ADD = 2
    CONTROL = 4
    ADMIN = 8


ALL_PERMISSIONS: Final = Permission.READ | Permission.ADD | Permission.CONTROL | Permission.ADMIN
MAX_INT: Final = 2**31 - 1  # MPD parses numbers as C ints


def _int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise AckError(Ack.ARG, f"Integer expected: {text}") from None
    if abs(value) > MAX_INT:
        raise AckError(Ack.ARG, f"Number too large: {text}")
    return value


def _uint(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise AckError(Ack.ARG, f"Number is negative: {text}")
    return value


def _bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise AckError(Ack.ARG, f"Boolean (0/1) expected: {text}")
    return text == "1"


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AckError(Ack.ARG, f"Float expected: {text}") from None
    if not math.isfinite(value):
        raise AckError(Ack.ARG, f"Float expected: {text}")
    return value


def _range(text: str) -> tuple[int, int | None]:
    """``START:END`` (END excluded; empty END: to the end), one position ``P`` (``P:P+1``), or
    ``-1``: everything (what old clients send)."""
    if text == "-1":
        return 0, None
    start_text, sep, end_text = text.partition(":")
    start = _uint(start_text) if start_text else 0
    if not sep:
        return start, start + 1
    if not end_text:
        return start, None
    end = _uint(end_text)
    if end < start:
        raise AckError(Ack.ARG, "Bad range")
    return start, end


def _prio(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 255:
        raise AckError(Ack.ARG, f"Number too large: {text}")  # MPD's words for both ends
    return value


def _seek_time(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise AckError(Ack.ARG, f"Negative value not allowed: {text}")
    return value


def _relative_time(text: str) -> tuple[str, float]:
    """seekcur's ``[+-]SECONDS``: ``("+", s)``, ``("-", s)`` or ``("", s)`` (absolute)."""
    sign = text[:1] if text[:1] in "+-" and text else ""
    return sign, _seek_time(text[1:] if sign else text)


# kind -> converter from the argument text (raising AckError(ARG) with MPD's message)
ARG_KINDS: Final[Mapping[str, Callable[[str], Any]]] = MappingProxyType({
    "str": str,
    "int": _int,
    "uint": _uint,
    "bool": _bool,
    "float": _float,
    "range": _range,
    "prio": _prio,
    "time": _seek_time,
    "reltime": _relative_time,
})  # fmt: skip


@dataclass(frozen=True)
class Arg:
    """One positional argument: its kind (a key of :data:`ARG_KINDS`) and whether it may be left out."""

    kind: str = "str"
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r}")


# What a handler returns: pairs (``Key: value`` lines), raw bytes (binary responses), or None.
Reply = Iterable[tuple[str, object]] | bytes | None
Handler = Callable[..., Awaitable[Reply]] | Callable[..., Reply]


@dataclass(frozen=True)
class MpdCommand:
    """One MPD command. ``args`` are converted in order; ``rest`` (if set) takes any further
    arguments, each converted with its kind, as one tuple after the others."""

    name: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    rest: Arg | None = None
    permission: Permission = Permission.READ
    sync: bool = field(init=False)  # a plain function: answered without awaiting anything
    permission_bits: int = field(init=False)  # int(permission), checked on every request

    def __post_init__(self) -> None:
        object.__setattr__(self, "sync", not inspect.iscoroutinefunction(self.handler))
        object.__setattr__(self, "permission_bits", int(self.permission))

    def parse(self, given: list[str]) -> list[Any]:
        """Converted arguments for the handler.

        Raises:
            AckError: wrong count or a value of the wrong kind (``ACK_ERROR_ARG``).
        """
        required = sum(1 for a in self.args if not a.optional)
        if self.rest is None and len(given) > len(self.args):
            raise AckError(Ack.ARG, f'too many arguments for "{self.name}"')
        if len(given) < required:
            raise AckError(Ack.ARG, f'wrong number of arguments for "{self.name}"')
        out: list[Any] = []
        for i, arg in enumerate(self.args):
            out.append(ARG_KINDS[arg.kind](given[i]) if i < len(given) else None)
        if self.rest is not None:
            convert = ARG_KINDS[self.rest.kind]
            out.append(tuple(convert(text) for text in given[len(self.args) :]))
        return out


def mpd_command(
    name: str,
    *args: Arg | str,
    rest: Arg | str | None = None,
    permission: Permission = Permission.READ,
) -> Callable[[Handler], MpdCommand]:
    """Decorator: the handler becomes an :class:`MpdCommand`. An argument given as a string is
    ``Arg(kind)`` (required); a kind ending in ``?`` is optional (``"int?"``)."""

    def arg_of(spec: Arg | str) -> Arg:
        if isinstance(spec, Arg):
            return spec
        return Arg(spec.rstrip("?"), optional=spec.endswith("?"))

    def make(handler: Handler) -> MpdCommand:
        parsed = tuple(arg_of(a) for a in args)
        seen_optional = False
        for a in parsed:
            if seen_optional and not a.optional:
                raise ValueError(f"{name}: a required argument follows an optional one")
            seen_optional = seen_optional or a.optional
        return MpdCommand(name, handler, parsed, None if rest is None else arg_of(rest), permission)

    return make


def build_table(*groups: Iterable[MpdCommand]) -> Mapping[str, MpdCommand]:
    """One immutable table from the modules' command tuples; a name declared twice is a bug."""
    table: dict[str, MpdCommand] = {}
    for group in groups:
        for command in group:
            if command.name in table:
                raise ValueError(f"MPD command {command.name!r} is declared twice")
            table[command.name] = command
    return MappingProxyType(table)
