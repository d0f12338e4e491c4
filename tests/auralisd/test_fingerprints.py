"""The fingerprint resolver's public view of its memory (what a private session asks before planning)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from auralisd.actors.database import Database
from auralisd.actors.events import EventHub
from auralisd.actors.fingerprints import FingerprintResolver
from auralisd.actors.library import Library
from auralisd.actors.pool import open_mastering_pool

from .conftest import write_tracks


async def test_remembers_a_track_once_resolved_and_forgets_it_when_its_file_changes(tmp_path: Path) -> None:
    music = tmp_path / "music"
    (a,) = write_tracks(music, [("1.flac", 2.0, 44_100, 1, False)])
    db = Database(str(tmp_path / "state.sqlite3"))
    hub = EventHub()
    async with trio.open_nursery() as outer:
        await outer.start(db.run)
        async with open_mastering_pool(1) as pool, trio.open_nursery() as nursery:
            library = Library(db, hub, [str(music)])
            await nursery.start(library.run)
            resolver = FingerprintResolver(db, pool, hub, cache_dir=str(tmp_path / "cache"))
            await nursery.start(resolver.run)
            library.scan()
            await library.wait_scan()
            (track,) = await library.resolve_paths([str(a)])
            assert not resolver.remembers(track)  # nothing resolved yet: a session shows "analyzing"
            with trio.fail_after(60):
                resolved = await resolver.plan_inputs(track)
            assert resolved is not None and resolver.remembers(track)
            hits = resolver.statistics().memory_hits
            assert await resolver.plan_inputs(track) is not None
            assert resolver.statistics().memory_hits == hits + 1  # remembered means answered from memory
            changed = dataclasses.replace(track, mtime_ns=track.mtime_ns + 1)  # the file was rewritten since
            assert not resolver.remembers(changed)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
