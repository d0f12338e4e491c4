"""What every MPD session shares: the command table, the token, the message channels, song URIs."""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final

from ...actors.database import Track
from ...actors.events import Event
from ...actors.tagquery import UriRoots
from ...protocol.mpd import format_pairs
from ...protocol.paths import path_from_wire, path_to_line, path_to_wire, text_to_wire
from ..commands import Services
from .playback import StatusText
from .songs import TAG_TYPES, song_pairs
from .table import MpdCommand

if TYPE_CHECKING:
    from .session import MpdSession

MAX_SONG_BLOCKS: Final = 50_000  # cached song blocks (~300 B each: ~15 MB at most)
MAX_MESSAGES: Final = 64  # unread messages kept per client (MPD's CLIENT_MAX_MESSAGES)
MAX_SUBSCRIPTIONS: Final = 16  # channels per client (MPD's CLIENT_MAX_SUBSCRIPTIONS)
MAX_CHANNEL_MESSAGE_BYTES: Final = 4096  # bounded by the request line anyway
AURALIS_CHANNEL: Final = "auralis"
_CHANNEL_NAME: Final = re.compile(r"[A-Za-z0-9_\-.:]+")

# Daemon events -> MPD idle subsystems (scan_progress: see MpdServer.on_event)
EVENT_SUBSYSTEMS: Final = {
    "player": ("player",),
    "queue": ("playlist",),
    "options": ("options",),
    "volume": ("mixer",),
    "stored_playlist": ("stored_playlist",),
    "output": ("output",),
}


def valid_channel(name: str) -> bool:
    """MPD's rule: letters, digits and ``_-.:``."""
    return bool(_CHANNEL_NAME.fullmatch(name))


class MessageBroker:
    """Client-to-client channels (``subscribe``/``sendmessage``); Auralis itself listens on ``auralis``."""

    def __init__(self) -> None:
        self._members: dict[str, set[MpdSession]] = {}
        self.sessions: set[MpdSession] = set()  # every connected session: a subscription change wakes all (MPD)

    def _subscriptions_changed(self) -> None:
        for session in self.sessions:
            session.note("subscription")

    def subscribe(self, session: MpdSession, channel: str) -> bool:
        """False when already subscribed."""
        members = self._members.setdefault(channel, set())
        if session in members:
            return False
        members.add(session)
        session.channels.add(channel)
        self._subscriptions_changed()
        return True

    def unsubscribe(self, session: MpdSession, channel: str) -> bool:
        members = self._members.get(channel)
        if members is None or session not in members:
            return False
        members.discard(session)
        session.channels.discard(channel)
        if not members:
            del self._members[channel]
        self._subscriptions_changed()
        return True

    def join(self, session: MpdSession) -> None:
        self.sessions.add(session)

    def leave(self, session: MpdSession) -> None:
        """A session ends: its subscriptions go (and every other session hears of it)."""
        self.sessions.discard(session)
        for channel in list(session.channels):
            self.unsubscribe(session, channel)

    def channels(self) -> list[str]:
        return sorted(self._members)

    def post(self, channel: str, text: str) -> int:
        """Deliver ``text`` to every subscriber of ``channel``; how many got it."""
        members = self._members.get(channel, set())
        for session in members:
            session.deliver(channel, text)
        return len(members)


class SongUris:
    """MPD's song URIs: paths relative to the music folder. With several music folders, each
    folder's name leads its URIs (``Music/Album/01.flac``), as if they were the folders of one
    music directory (MPD's view, and its order: by name)."""

    def __init__(self, music_dirs: tuple[str, ...]) -> None:
        self.music_dirs = tuple(os.path.abspath(d) for d in music_dirs)
        self.several = len(self.music_dirs) > 1
        # the music folders in MPD's order of the top folder's entries (by name)
        self.by_name = tuple(sorted(self.music_dirs, key=lambda d: (os.path.basename(d), d))) if self.several else ()
        self.roots: UriRoots = tuple((path_to_wire(d), path_to_wire(os.path.basename(d))) for d in self.by_name)
        """What ``file``/``base`` filters see (``tagquery.UriRoots``): empty with one music folder."""

    def uri(self, path: str) -> str:
        """The URI of an OS path (wire-escaped text: a name that is not UTF-8 shows ``\\xHH``, a line
        break ``\\x0A``: :func:`~auralisd.protocol.paths.path_to_line`)."""
        for music_dir in self.music_dirs:
            rel = os.path.relpath(path, music_dir)
            if rel != ".." and not rel.startswith("../"):
                if self.several:
                    name = os.path.basename(music_dir)
                    rel = name if rel == "." else os.path.join(name, rel)
                return path_to_line(path_to_wire("" if rel == "." else rel))
        return path_to_line(path_to_wire(path))

    def path(self, uri: str) -> str | None:
        """The wire path (absolute) the library resolves for a URI (``""``: the one music folder);
        None for a URI that names no music folder (with several, its first name is none of theirs,
        or it is the top, which is no folder on disk)."""
        rel = path_from_wire(uri.strip("/"))
        if not self.music_dirs:
            return None
        if not self.several:
            return path_to_wire(os.path.join(self.music_dirs[0], rel) if rel else self.music_dirs[0])
        head, _, rest = rel.partition("/")
        for music_dir in self.by_name:
            if os.path.basename(music_dir) == head:
                return path_to_wire(os.path.join(music_dir, rest) if rest else music_dir)
        return None


class MpdServer:
    """Shared by the sessions of one MPD listener (built by ``main``; one per daemon)."""

    def __init__(
        self,
        services: Services,
        table: Mapping[str, MpdCommand],
        *,
        token: str | None = None,
        default_tagtypes: tuple[str, ...] = (),
    ) -> None:
        self.services = services
        self.table = table
        self.token = token
        self.default_tagtypes = default_tagtypes
        self.broker = MessageBroker()
        self.status_text = StatusText()  # status is formatted once per player view
        self.error: str | None = None  # status's `error:`: why the shared player could not play a track
        self.max_messages = MAX_MESSAGES
        self.started_at = time.monotonic()
        self._uris: SongUris | None = None
        self._uris_of: tuple[str, ...] | None = None
        # song block text (everything but Pos/Id/Prio) of the full tag selection, per track version
        self._blocks: OrderedDict[tuple[int, int, str], bytes] = OrderedDict()

    def on_event(self, event: Event) -> None:
        """The event hub's listener (registered by the transport while it serves): the idle
        subsystems the event changed are noted on every session, in the publisher's task, so an
        idle client's own task is woken directly by the change (no task in between)."""
        subsystems: tuple[str, ...] | None = EVENT_SUBSYSTEMS.get(event.name)
        if event.name == "error" and isinstance(event.data, dict) and event.data.get("source") == "player":
            self.error = text_to_wire(str(event.data.get("message") or "cannot play the track"))
            subsystems = ("player",)  # as MPD: status changed (its error field)
        if event.name == "scan_progress":
            running = not isinstance(event.data, dict) or event.data.get("running") is not False
            subsystems = ("update",) if running else ("update", "database")
        if subsystems:
            for session in self.broker.sessions:
                session.note(*subsystems)

    @property
    def uris(self) -> SongUris:
        """The URI mapping of the current music folders (rebuilt when they change, e.g. on SIGHUP)."""
        music_dirs = self.services.library.music_dirs
        if self._uris is None or music_dirs != self._uris_of:
            self._uris, self._uris_of = SongUris(music_dirs), music_dirs
            self._blocks.clear()
        return self._uris

    def song_block(self, track: Track, tagtypes: Iterable[str]) -> bytes:
        """A song's lines up to ``duration`` (``songs.song_pairs`` without Pos/Id/Prio), as bytes.

        Blocks of the full tag selection are cached per (track, mtime, path), at most
        :data:`MAX_SONG_BLOCKS` (least recently used first out): a 10,000-entry ``playlistinfo``
        then only joins bytes.
        """
        uris = self.uris
        selection = set(tagtypes)
        if not selection.issuperset(TAG_TYPES):
            return format_pairs(song_pairs(track, uris.uri(track.path), selection))
        key = (track.track_id, track.mtime_ns, track.path)
        block = self._blocks.get(key)
        if block is None:
            block = format_pairs(song_pairs(track, uris.uri(track.path), TAG_TYPES))
            self._blocks[key] = block
            if len(self._blocks) > MAX_SONG_BLOCKS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return block
