"""The differential harness: the same command script sent to the real MPD and to Auralis, compared.

A script is a list of request lines. ``{id:URI}`` in a line is replaced, per server, by the song id
that server gave the queue entry of ``URI`` (ids are each server's own). Replies are compared
field by field under :class:`Rules`: values where they must agree, field sets where only the
presence matters, and nothing for the listed differences (docs/mpd.md, "Differences from MPD").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .conftest import MpdConnection, Reply

_ID = re.compile(r"\{id:([^}]*)\}")


@dataclass
class Rules:
    """How to compare replies. ``presence``: keys whose values may differ but which both must send;
    ``ignore``: keys one side may send and the other not (documented differences);
    ``close``: numeric keys compared within a tolerance; ``ids``: keys holding song ids (compared
    through each server's id -> file map); ``error_text``: compare ACK messages too (else only
    ``[code@index] {command}``)."""

    presence: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset()
    close: dict[str, float] = field(default_factory=dict)
    ids: frozenset[str] = frozenset({"Id", "songid", "nextsongid"})
    error_text: bool = True


# What differs by design everywhere (docs/mpd.md); ``playlist`` (the version) is each server's counter.
DEFAULT_RULES = Rules(
    presence=frozenset({"playlist", "elapsed", "time", "bitrate", "audio", "uptime", "playtime", "db_update"}),
    ignore=frozenset({"Format"}),
    close={"duration": 0.011, "elapsed": 0.6},
)


class Side:
    """One server's connection and its id -> file map (learned from every song block it sends)."""

    def __init__(self, name: str, conn: MpdConnection) -> None:
        self.name = name
        self.conn = conn
        self.file_of_id: dict[str, str] = {}

    def id_of(self, uri: str) -> str:
        for song_id, file in self.file_of_id.items():
            if file == uri:
                return song_id
        info = self.conn.command("playlistinfo")
        self._learn(info)
        for song_id, file in self.file_of_id.items():
            if file == uri:
                return song_id
        raise KeyError(f"{self.name}: {uri} is not queued")

    def run(self, line: str) -> Reply:
        reply = self.conn.command(_ID.sub(lambda m: self.id_of(m.group(1)), line))
        self._learn(reply)
        return reply

    def _learn(self, reply: Reply) -> None:
        file = None
        for key, value in reply.pairs:
            if key == "file":
                file = value
            elif key == "Id" and file is not None:
                self.file_of_id[value] = file


def _error_head(line: str | None, with_text: bool) -> str | None:
    if line is None or with_text:
        return line
    return line.split("} ", 1)[0] + "}"


def compare(line: str, mpd: Reply, auralis: Reply, mpd_side: Side, auralis_side: Side, rules: Rules) -> list[str]:
    """Every difference between the two replies that ``rules`` do not allow, as readable lines."""
    problems = []
    if _error_head(mpd.error, rules.error_text) != _error_head(auralis.error, rules.error_text):
        problems.append(f"{line!r}: error {mpd.error!r} (mpd) != {auralis.error!r} (auralis)")
    a = [(k, v) for k, v in mpd.pairs if k not in rules.ignore]
    b = [(k, v) for k, v in auralis.pairs if k not in rules.ignore]
    keys_a, keys_b = [k for k, _ in a], [k for k, _ in b]
    if sorted(keys_a) != sorted(keys_b):
        missing = sorted(set(keys_a) - set(keys_b))
        extra = sorted(set(keys_b) - set(keys_a))
        counts = "" if missing or extra else f" (counts differ: {len(keys_a)} vs {len(keys_b)})"
        problems.append(f"{line!r}: fields missing in auralis {missing}, extra {extra}{counts}")
        return problems
    by_key_a: dict[str, list[str]] = {}
    by_key_b: dict[str, list[str]] = {}
    for k, v in a:
        by_key_a.setdefault(k, []).append(v)
    for k, v in b:
        by_key_b.setdefault(k, []).append(v)
    for key, values_a in by_key_a.items():
        values_b = by_key_b[key]
        if key in rules.presence:
            continue
        for va, vb in zip(values_a, values_b, strict=True):
            if key in rules.ids:
                ok = mpd_side.file_of_id.get(va) == auralis_side.file_of_id.get(vb)
            elif key in rules.close:
                ok = abs(float(va) - float(vb)) <= rules.close[key]
            else:
                ok = va == vb
            if not ok:
                problems.append(f"{line!r}: {key}: {va!r} (mpd) != {vb!r} (auralis)")
    return problems


def run_script(
    mpd: Side, auralis: Side, script: list[str], rules: Rules = DEFAULT_RULES,
    settle: Callable[[str], None] | None = None,
) -> list[str]:
    """Send every line to both; the differences found (an empty list: they agree)."""
    problems: list[str] = []
    for line in script:
        reply_mpd = mpd.run(line)
        reply_auralis = auralis.run(line)
        if settle is not None:
            settle(line)
        problems += compare(line, reply_mpd, reply_auralis, mpd, auralis, rules)
    return problems
