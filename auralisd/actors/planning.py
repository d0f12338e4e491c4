"""Planning a deck: which plan a track plays with (its album's, or its own), off the event loop.

The shared player asks this for every deck it prepares (the playing track, a preset change's new
deck, the next track for a gapless change). Album mode first (:func:`~auralisd.actors.albums.album_scope`
decides whether the album's plan applies; a cold album gets a short wait, then the track plan until
the next boundary), else the track's plan inputs (:class:`FingerprintResolver`, the neutral plan when
analysis failed); planning runs through ``run_sync`` (a thread by default). A failure never stops
playback: an album plan that fails falls back to the track plan, a track plan to the neutral plan.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from .albums import AlbumContext, AlbumPlans, album_scope
from .database import Track
from .fingerprints import FingerprintResolver

log = logging.getLogger("auralisd.player")


@dataclass(frozen=True)
class AlbumArgs:
    """What album mode needs to know of a deck: the mode, the random flag, its queue neighbours, and how
    long a cold album's analysis may be waited for (s)."""

    mode: str = "off"
    random: bool = False
    previous_id: int | None = None
    next_id: int | None = None
    wait_s: float = 0.0


@dataclass(frozen=True)
class DeckPlan:
    """The plan a deck plays with: ``source`` (``album``, ``memory``, ``database``, ``neutral`` ...),
    the album context when it is the album's plan, and why album mode did or did not apply."""

    plan: Any
    source: str
    album: AlbumContext | None
    scope_reason: str


class DeckPlanner:
    def __init__(
        self, resolver: FingerprintResolver, albums: AlbumPlans | None, run_sync: Callable[..., Awaitable[Any]]
    ) -> None:
        self._resolver = resolver
        self._albums = albums
        self._run_sync = run_sync

    async def plan(self, track: Track, preset: str, intensity: float, album_args: AlbumArgs = AlbumArgs()) -> DeckPlan:
        from auralis.plan import plan_mastering

        try:
            album_plan, context, reason = await self._album_plan(track, preset, intensity, album_args)
        except Exception:
            log.exception("album plan for %s failed; using the track's own plan", track.path)
            album_plan, context, reason = None, None, "album plan failed: track plan"
        if album_plan is not None:
            return DeckPlan(album_plan, "album", context, reason)
        resolved = await self._resolver.plan_inputs(track)
        value = None if resolved is None else resolved.value
        source = "neutral" if resolved is None else resolved.source
        try:
            plan = await self._run_sync(plan_mastering, value, preset, intensity)
        except Exception:
            log.exception("planning %s failed; using the neutral plan", track.path)
            plan = await self._run_sync(plan_mastering, None, preset, intensity)
            source = "neutral"
        return DeckPlan(plan, source, None, reason)

    async def _album_plan(
        self, track: Track, preset: str, intensity: float, args: AlbumArgs
    ) -> tuple[Any, AlbumContext | None, str]:
        """``(plan or None, context, reason)``: the album plan when album mode applies and the album is analysed."""
        from auralis.album import plan_album

        if args.mode == "off" or self._albums is None:
            return None, None, "album mode off"
        album = await self._albums.album_of(track)
        scope = album_scope(args.mode, random=args.random, album=album, track_id=track.track_id,
                            previous_id=args.previous_id, next_id=args.next_id)
        if not scope.album_plan or album is None:
            return None, None, scope.reason
        inputs = await self._albums.stored(album)
        if inputs is None and self._albums.failure(album) is None:
            # cold: the album is analysed at idle priority (never ahead of the playhead's own analysis and
            # chunks); a short wait, then the track plan, and album mode from the next boundary after it is done
            with trio.move_on_after(args.wait_s):
                inputs = await self._albums.plan_inputs(album, background=True)
        if inputs is None:
            failed = self._albums.failure(album)
            if failed is not None:
                return None, None, f"album {album.name!r} cannot be played as one ({failed}): track plan"
            self._albums.prefer([album])
            return None, None, (f"{scope.reason}, but album {album.name!r} is still being analysed: track plan "
                                "until the next track boundary")
        index = album.index_of(track.track_id)
        assert index is not None  # album_scope checked it
        plan = await self._run_sync(
            lambda: plan_album(inputs, preset, intensity, tracks=len(album.tracks), name=album.name)
        )
        return plan, AlbumContext(album, index, album.layout()), scope.reason
