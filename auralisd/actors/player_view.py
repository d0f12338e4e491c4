"""How the shared player shows itself on the wire: status, events, queue items.

Pure functions from the player's state to the plain maps its facade returns and its events
carry (the app sends them as they are). Kept beside the actor, not in ``auralisd/app``, because
actors do not import the app (docs/architecture.md); the decision event of ``/session`` and
``/stream`` (LWRP regions) is the app's (:mod:`auralisd.app.presentation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..playback import Deck
from .albums import album_key_of, album_name_of
from .database import Track


@dataclass(frozen=True)
class PlayerView:
    """What the shared player is doing, as of its latest change: an immutable record the player
    publishes (:attr:`Player.view <auralisd.actors.player.Player.view>`) whenever one of these
    fields changes, before it answers the command that changed it.

    Readers (the MPD frontend's ``status`` and ``currentsong``) take it without a mailbox hop:
    everything is as of the change but the play position, which the reader computes for its
    own moment with :meth:`elapsed_s` from the anchor (``position_s`` at ``anchor_time``,
    advancing while ``moving``). ``version`` grows with every new view, so a reader can cache
    what it derives from one.
    """

    version: int
    state: str  # play | pause | stop
    volume: int  # percent
    repeat: bool
    random: bool
    single: bool
    consume: bool
    crossfade_s: int
    album_mode: str
    queue_version: int  # MPD's playlist version
    queue_length: int
    queue_pos: int | None  # the current entry (it may be stopped)
    song_id: int | None  # its MPD song id
    prio: int  # its priority
    entry: Track | None  # the queue entry at queue_pos
    track: Track | None  # the track of the deck being played (None: nothing loaded)
    end_s: float  # where the loaded track ends (s of output)
    next_pos: int | None  # the entry that plays after the current one
    next_song_id: int | None
    sample_rate: int  # Hz, the output rate
    position_s: float  # the play position at anchor_time
    anchor_time: float  # trio.current_time() at which position_s held
    moving: bool  # playing and not stalled: the position advances with the clock

    def elapsed_s(self, now: float) -> float:
        """The play position at ``now`` (``trio.current_time()``), never past the track's end."""
        if not self.moving:
            return self.position_s
        return min(self.position_s + max(0.0, now - self.anchor_time), self.end_s)


def track_brief(track: Track) -> dict[str, Any]:
    """A queue entry or the playing track: ids, path, tags, duration, and its album by the album rule."""
    wire = track.to_wire()
    brief = {k: wire[k] for k in ("track_id", "path", "title", "artist", "album", "duration_s")}
    # the album the track belongs to by the album rule (docs/mastering.md): tag, else its folder
    brief["album_key"] = album_key_of(track)
    brief["album_name"] = album_name_of(track)
    return brief


def queue_items(entries: list[Track], current: int | None) -> dict[str, Any]:
    return {"items": [{"pos": i, **track_brief(t)} for i, t in enumerate(entries)], "current": current}


def mastering_event(deck: Deck) -> dict[str, Any]:
    """The decision event: the plan, and which album mode and which album plan are in effect."""
    assert deck.plan is not None
    return {
        "track_id": deck.track.track_id,
        "decision": deck.decision,
        "plan": deck.plan.to_dict(),
        "album_mode": deck.album_mode,
        "plan_scope": "album" if deck.album is not None else "track",
        "album": None if deck.album is None else deck.album.to_wire(),
        "scope_reason": deck.scope_reason,
    }


def player_event(*, state: str, queue_pos: int | None, deck: Deck | None, elapsed_s: float, epoch: int) -> dict[str, Any]:
    """The ``player`` event: play state, queue position, track and position."""
    return {
        "state": state,
        "queue_pos": queue_pos,
        "track_id": None if deck is None else deck.track.track_id,
        "elapsed_s": elapsed_s,
        "epoch": epoch,
    }


def options_event(flags: dict[str, bool], *, preset: str, intensity: float, album_mode: str) -> dict[str, Any]:
    """The ``options`` event: repeat/random/single/consume, preset, intensity, album mode."""
    return {**flags, "preset": preset, "intensity": intensity, "album_mode": album_mode}


def mastering_status(deck: Deck | None, *, stalled: bool) -> str | None:
    """``preparing`` until the deck is planned and playing without a stall, then ``ready``."""
    if deck is None:
        return None
    return "ready" if deck.plan is not None and not stalled else "preparing"


def status(
    *, state: str, queue_pos: int | None, queue_length: int, deck: Deck | None, elapsed_s: float, preset: str,
    intensity: float, volume: int, flags: dict[str, bool], album_mode: str, stalled: bool, next_ready: bool | None,
    epoch: int, sample_rate: int, statistics: dict[str, int],
) -> dict[str, Any]:
    """What ``status`` answers (and what every playback command answers after its change)."""
    track = None if deck is None else deck.track
    planned = deck if deck is not None and deck.plan is not None else None
    return {
        "state": state,
        "queue_pos": queue_pos,
        "queue_length": queue_length,
        "track": None if track is None else track_brief(track),
        "elapsed_s": elapsed_s,
        "duration_s": None if track is None else track.duration_s,
        "preset": preset,
        "intensity": intensity,
        "volume": volume,
        **flags,
        "album_mode": album_mode,
        "plan_scope": None if planned is None else ("album" if planned.album is not None else "track"),
        "album": None if deck is None or deck.album is None else deck.album.to_wire(),
        "scope_reason": None if planned is None else planned.scope_reason,
        "plan": None if planned is None else planned.plan.to_dict(),
        "plan_source": None if deck is None else (deck.plan_source or None),
        "decision": None if deck is None else deck.decision,
        "mastering_status": mastering_status(deck, stalled=stalled),
        "next_ready": next_ready,
        "epoch": epoch,
        "sample_rate": sample_rate,
        "channels": 2,
        "player": statistics,
    }
