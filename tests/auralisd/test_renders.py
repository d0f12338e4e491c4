"""The one render-ahead machinery (``actors/renders.py``) of the shared player and every private session.

Fake chunks on trio's MockClock (the renderer is the only fake; the deck is the real core): a chunk
lost to a dead worker is fetched again as urgently as the playhead's chunk and at most
``CHUNK_RETRIES`` times, a chunk of bad audio ends the track at once, a failed fast-start piece is
only counted, and nothing is taken or retried for a deck its owner closed. The private session's
``DeckSource`` runs on the same machinery: a read returns the frames once a retry succeeds and
raises the render's own error where the track cannot be rendered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
import trio_parallel
import trio_websocket

from auralis.resample import ChunkGrid
from auralisd.actors.cache import ChunkCache
from auralisd.actors.mastering import Mastering, chunk_frames
from auralisd.actors.pool import JobPriority, MasteringPool
from auralisd.actors.renders import DeckRenders, Outcome, RenderReport
from auralisd.actors.session import DeckSource, PreparedTrack, SessionBackend
from auralisd.jobs import JobFailed
from auralisd.playback import Deck
from auralisd.playback.deck import CHUNK_RETRIES, PRIORITY_LOOKAHEAD, PRIORITY_PLAYHEAD_CHUNK
from auralisd.transport.http import HttpPolicy, HttpServer, WebSocketRoute
from auralisd.transport.sessions import private_session_handler

from .playback.test_player_timing import CHUNK, RATE, track


class Plan:
    preset, intensity, decision, original_gain_db = "adaptive", 1.0, "", 0.0


class Renderer:
    """Mastering's facade: ``fail(kind, k, attempt)`` returns the exception a render raises, or None."""

    def __init__(self, fail: Callable[[str, int, int], BaseException | None] = lambda kind, k, n: None) -> None:
        self.fail = fail
        self.requests: list[tuple[str, int, int]] = []  # (kind, index, priority)

    def cached_chunk(self, *args: Any) -> None:
        return None

    def ticket(self, priority: int = 10, seq: int | None = None) -> int:
        return priority  # the pool's ticket; a plain priority here (no pool)

    async def _render(self, kind: str, t: Any, k: int, frames: int, out_rate: int, priority: int) -> np.ndarray:
        attempt = sum(1 for r in self.requests if r[:2] == (kind, k))
        self.requests.append((kind, k, priority))
        await trio.sleep(0.05 if kind == "piece" else 0.1)  # virtual render time: a piece is ready first
        error = self.fail(kind, k, attempt)
        if error is not None:
            raise error
        a, b = ChunkGrid(t.sample_rate, out_rate, t.num_frames, frames).span(k)
        return np.repeat(np.arange(a, b, dtype=np.float32)[:, None], 2, axis=1)

    async def render_chunk(self, t: Any, plan: Any, k: int, *, out_rate: int, priority: int) -> np.ndarray:
        return await self._render("chunk", t, k, CHUNK, out_rate, priority)

    async def render_piece(self, t: Any, plan: Any, j: int, frames: int, *, out_rate: int, priority: int) -> np.ndarray:
        return await self._render("piece", t, j, frames, out_rate, priority)


def deck() -> Deck:
    t = track(1, 12.0)
    d = Deck.open(1, t, "adaptive", 1.0, in_rate=RATE, out_rate=RATE, num_frames=t.num_frames, chunk_frames=CHUNK)
    d.plan = Plan()
    return d


async def settle_all(renderer: Renderer, d: Deck, *, render_ahead: int = 0) -> list[Outcome]:
    """Schedule ``d`` at frame 0 and settle every report as its owner would, until nothing is in flight."""
    outcomes: list[Outcome] = []
    async with trio.open_nursery() as nursery:
        reports_send, reports = trio.open_memory_channel[RenderReport](64)
        renders = DeckRenders(renderer, RATE, reports_send.send, nursery)  # type: ignore[arg-type]
        renders.schedule(d, 0, render_ahead, playhead=True)
        while d.fetching or d.piece_fetching:
            outcomes.append(renders.settle(await reports.receive()))
        nursery.cancel_scope.cancel()
    return outcomes


async def test_a_chunk_lost_to_a_dead_worker_is_fetched_again_at_the_playhead_priority_then_given_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    renderer = Renderer(lambda kind, k, n: trio_parallel.BrokenWorkerError("worker died") if kind == "chunk" else None)
    d = deck()
    outcomes = await settle_all(renderer, d)
    chunk_requests = [r for r in renderer.requests if r[0] == "chunk"]
    assert len(chunk_requests) == 1 + CHUNK_RETRIES
    assert all(priority == PRIORITY_PLAYHEAD_CHUNK for _, _, priority in chunk_requests)
    assert outcomes.count(Outcome.RETRY) == CHUNK_RETRIES and outcomes[-1] is Outcome.BROKEN
    assert d.end_frame == 0  # the track ends where the chunk that cannot be rendered starts


async def test_bad_audio_ends_the_track_at_once_and_a_failed_piece_is_only_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def fail(kind: str, k: int, attempt: int) -> BaseException | None:
        if kind == "piece" and k == 0:
            return trio_parallel.BrokenWorkerError("worker died")
        return JobFailed("bad_audio", "cannot decode\nTraceback ...") if kind == "chunk" and k == 1 else None

    renderer = Renderer(fail)
    d = deck()
    async with trio.open_nursery() as nursery:
        reports_send, reports = trio.open_memory_channel[RenderReport](64)
        renders = DeckRenders(renderer, RATE, reports_send.send, nursery)  # type: ignore[arg-type]
        renders.schedule(d, 0, 1, playhead=True)
        seen: dict[tuple[str, int], Outcome] = {}
        while d.fetching or d.piece_fetching or 1 not in d.failures:
            report = await reports.receive()
            seen[report.fetch.kind, report.fetch.index] = renders.settle(report)
            renders.schedule(d, 0, 1, playhead=True)  # the look-ahead starts once the playhead's chunk is here
        nursery.cancel_scope.cancel()
    assert seen["piece", 0] is Outcome.PIECE_FAILED and seen["piece", 1] is Outcome.PIECE
    assert seen["chunk", 0] is Outcome.CHUNK and seen["chunk", 1] is Outcome.BROKEN
    assert renders.statistics().piece_failures == 1 and renders.statistics().chunk_retries == 0
    assert [r for r in renderer.requests if r[0] == "piece" and r[1] == 0] == [("piece", 0, 0)]  # not retried
    assert [r for r in renderer.requests if r[:2] == ("chunk", 1)] == [("chunk", 1, PRIORITY_LOOKAHEAD)]
    assert d.end_frame == d.grid.start(1)


@pytest.mark.parametrize("closed", [True, False])
async def test_nothing_is_taken_or_retried_for_a_deck_its_owner_closed(
    autojump_clock: trio.testing.MockClock, closed: bool
) -> None:
    renderer = Renderer(lambda kind, k, n: trio_parallel.BrokenWorkerError("worker died") if n == 0 else None)
    d = deck()
    async with trio.open_nursery() as nursery:
        reports_send, reports = trio.open_memory_channel[RenderReport](64)
        renders = DeckRenders(renderer, RATE, reports_send.send, nursery)  # type: ignore[arg-type]
        fetch = d.schedule(0, 0, playhead=False)[0]  # chunk 0 alone (as for the next track)
        renders.start(d, fetch)
        report = await reports.receive()  # its first attempt failed
        if closed:
            d.close()
        outcome = renders.settle(report)
        if not closed:  # the control: an open deck asks again and takes the chunk
            assert outcome is Outcome.RETRY
            assert renders.settle(await reports.receive()) is Outcome.CHUNK
        nursery.cancel_scope.cancel()
    if closed:
        assert outcome is Outcome.STALE
        assert renderer.requests == [("chunk", 0, PRIORITY_LOOKAHEAD)] and d.chunks == {}
    else:
        assert [r[2] for r in renderer.requests] == [PRIORITY_LOOKAHEAD, PRIORITY_PLAYHEAD_CHUNK]
        assert d.has_chunk0()


class Backend:
    def __init__(self, renderer: Renderer) -> None:
        self.mastering = renderer


def prepared() -> PreparedTrack:
    t = track(1, 12.0)
    return PreparedTrack(t, None, t.num_frames, RATE, CHUNK)


async def test_a_session_source_reads_through_a_retry_and_raises_the_renders_error_where_the_track_breaks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def fail(kind: str, k: int, attempt: int) -> BaseException | None:
        if kind == "piece" or kind == "chunk" and k == 0 and attempt == 0:  # no head start: only the chunk
            return trio_parallel.BrokenWorkerError("worker died")
        return JobFailed("bad_audio", "cannot decode") if kind == "chunk" and k == 1 else None

    renderer = Renderer(fail)
    async with trio.open_nursery() as nursery:
        source = DeckSource(Backend(renderer), prepared(), Plan(), "mastered", nursery)  # type: ignore[arg-type]
        start = CHUNK - 100  # the last frames of chunk 0: the retried chunk brings them
        block = await source.read(start, start + 50)
        assert block[:, 0].tolist() == list(range(start, start + 50))
        assert [r for r in renderer.requests if r[0] == "chunk" and r[1] == 0] == [
            ("chunk", 0, PRIORITY_PLAYHEAD_CHUNK), ("chunk", 0, PRIORITY_PLAYHEAD_CHUNK)
        ]
        with pytest.raises(JobFailed):
            await source.read(CHUNK - 10, CHUNK + 10)  # reaches into chunk 1, which cannot be rendered
        source.close()
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ first come, first served (issue 11)
class StartOrder:
    """The trio-parallel stand-in under the real pool and mastering layer: records the order jobs start in
    as ``(track id, kind, index)``; each job takes 10 ms of virtual time."""

    def __init__(self) -> None:
        self.started: list[tuple[int, str, int]] = []

    async def run_sync(self, fn: Any, path: str, plan: Any, k: int, frames: int | None, out_rate: int | None, *,
                       kill_on_cancel: bool, limiter: Any) -> np.ndarray:
        self.started.append((int(path.rsplit("/", 1)[1].split(".")[0]), "piece" if frames else "chunk", k))
        await trio.sleep(0.01)
        return np.zeros((4, 2), dtype=np.float32)


class KeyedPlan(Plan):
    def cache_key(self) -> str:
        return "plan"


def session_deck(track_id: int) -> Deck:
    t = track(track_id, 12.0)
    d = Deck.open(track_id, t, "adaptive", 1.0, in_rate=RATE, out_rate=RATE, num_frames=t.num_frames,
                  chunk_frames=CHUNK)
    d.plan = KeyedPlan()
    return d


SESSIONS = 16


@pytest.mark.parametrize("tasks_reversed", [False, True])
async def test_sessions_asking_in_turn_get_their_first_pieces_in_that_order_and_before_any_look_ahead(
    autojump_clock: trio.testing.MockClock, tasks_reversed: bool
) -> None:
    """Issue 11: at 64 simultaneous ``/session`` starts the first-started sessions heard audio last. Each
    fetch reaches the pool through two ``start_soon`` hops, and trio may run a batch of ready tasks in
    reverse, so the pool (which numbered jobs when they joined its queue) served equal priorities in
    reverse order of asking in about half the runs. A ticket taken when the deck asks keeps the order.
    Eight rounds: the old numbering passes all of them with probability 1/256 at best.

    ``tasks_reversed``: the sessions' commands arrived in order (each took its place in line then,
    ``asked``), but their tasks got to ask the deck in reverse: the place in line still decides."""
    for _ in range(8):
        ctx = StartOrder()
        pool = MasteringPool(ctx, workers=2)  # type: ignore[arg-type]
        mastering = Mastering(pool, ChunkCache(0))  # nothing cached: every fetch is a job
        async with trio.open_nursery() as nursery:
            await nursery.start(mastering.run)
            reports_send, reports = trio.open_memory_channel[RenderReport](math.inf)
            renders = DeckRenders(mastering, RATE, reports_send.send, nursery)
            playing = session_deck(100)  # a session already playing: it holds chunk 0, asks for its look-ahead
            playing.chunks[0] = np.zeros((CHUNK, 2), dtype=np.float32)
            renders.schedule(playing, 0, 2, playhead=True)
            decks = [session_deck(i) for i in range(SESSIONS)]
            if tasks_reversed:
                places = [pool.ticket().seq for _ in decks]  # the commands arrive, in order
                for d, asked in reversed(list(zip(decks, places, strict=True))):
                    renders.schedule(d, 0, 2, playhead=True, asked=asked)
            else:
                for d in decks:  # the sessions start one after the other (in one instant)
                    renders.schedule(d, 0, 2, playhead=True)
            for _ in range(2 + 3 * SESSIONS):  # two look-ahead chunks; two pieces and chunk 0 per session
                await reports.receive()
            nursery.cancel_scope.cancel()
        first_pieces = [(i, "piece", 0) for i in range(SESSIONS)]
        second_pieces = [(i, "piece", 1) for i in range(SESSIONS)]
        playhead_chunks = [(i, "chunk", 0) for i in range(SESSIONS)]
        assert ctx.started == first_pieces + second_pieces + playhead_chunks + [(100, "chunk", 1), (100, "chunk", 2)]


async def test_equal_priorities_start_in_ticket_order_whatever_order_their_tasks_join_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctx = StartOrder()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    tickets = [pool.ticket(0) for _ in range(5)]  # asked for in this order
    async with trio.open_nursery() as nursery:
        for i in reversed(range(5)):  # their tasks reach the pool last-asked first, one at a time
            nursery.start_soon(lambda i=i: pool.run(_job, f"/music/{i}.flac", None, 0, 100, None, priority=tickets[i]))
            await trio.testing.wait_all_tasks_blocked()
    assert [i for i, _, _ in ctx.started] == [4, 0, 1, 2, 3]  # 4 found the worker free; then ticket order
    # a more urgent requester of a waiting job moves it up; an equally urgent later one does not
    late, early = JobPriority(1, 10), JobPriority(1, 20)
    early.lower(1, 5)
    late.lower(1, 30)
    assert (early.value, early.seq) == (1, 5) and (late.value, late.seq) == (1, 10)


def _job(*args: Any) -> None:
    return None


# ------------------------------------------------------------------ /session: served in the order accepted
class GatedStart(StartOrder):
    """:class:`StartOrder` whose jobs hold their worker until ``open`` is set: while the first job holds
    the only worker, everything asked for meanwhile queues, and the queue's order is what is tested.
    Returns chunks and pieces of their true length (the sessions slice and send them)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = trio.Event()

    async def run_sync(self, fn: Any, path: str, plan: Any, k: int, frames: int | None, out_rate: int | None, *,
                       kill_on_cancel: bool, limiter: Any) -> np.ndarray:
        await super().run_sync(fn, path, plan, k, frames, out_rate, kill_on_cancel=kill_on_cancel, limiter=limiter)
        await self.open.wait()
        if frames is None:  # a chunk: its span on the output grid
            t = track(int(path.rsplit("/", 1)[1].split(".")[0]), 12.0)
            a, b = ChunkGrid(RATE, int(out_rate or RATE), t.num_frames, chunk_frames(RATE)).span(k)
            frames = b - a
        return np.zeros((frames, 2), dtype=np.float32)


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listening socket in memory: :meth:`connect` is a client connecting (accepted in that order)."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](math.inf)

    def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self._send.send_nowait(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self._receive.close()
        await trio.lowlevel.checkpoint()


class Library:
    """What a session reads of the database and the fingerprint resolver: 12 s tracks, plans known."""

    async def get_track(self, track_id: int) -> Any:
        return track(track_id, 12.0)

    def remembers(self, t: Any) -> bool:
        return True

    async def plan_inputs(self, t: Any) -> None:
        return None  # the neutral plan


async def _sessions_in_one_batch(commands: str) -> tuple[list[tuple[int, str, int]], list[int]]:
    """``SESSIONS`` clients connect at once and each plays track i: the jobs in the order they started,
    and the clients in the order their first audio came."""
    ctx = GatedStart()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    mastering = Mastering(pool, ChunkCache(0))  # nothing cached: every fetch is a job
    backend = SessionBackend(Library(), Library(), mastering, sample_rate=RATE)
    routes = {"/session": WebSocketRoute(private_session_handler(backend))}
    server = HttpServer(routes, HttpPolicy(bind_host="127.0.0.1", port=8765), arrival=backend.ticket)
    listener = MemoryListener()
    first_audio: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(mastering.run)
        await nursery.start(server.serve, [listener])
        # the only worker is busy: what the sessions ask for queues behind it
        nursery.start_soon(lambda: pool.run(_job, "/music/100.flac", None, 0, 100, None, priority=0))
        streams = [listener.connect() for _ in range(SESSIONS)]  # one batch, accepted in this order
        clients = [await trio_websocket.wrap_client_stream(nursery, s, "127.0.0.1", "/session") for s in streams]

        async def play(i: int) -> None:
            await clients[i].send_message(json.dumps({"type": "play_enhanced", "track_id": i, "pace": "burst"}))

        if commands == "together":  # every client sends at once: trio runs the batch in its own order
            async with trio.open_nursery() as sending:
                for i in range(SESSIONS):
                    sending.start_soon(play, i)
        else:
            for i in reversed(range(SESSIONS)):
                await play(i)

        async def listen(i: int) -> None:
            while not isinstance(await clients[i].get_message(), bytes):
                pass
            first_audio.append(i)

        async with trio.open_nursery() as listening:
            for i in range(SESSIONS):
                listening.start_soon(listen, i)
            await trio.testing.wait_all_tasks_blocked()
            assert ctx.started == [(100, "piece", 0)]  # every session asked; nothing more started
            ctx.open.set()
        nursery.cancel_scope.cancel()
    return ctx.started, first_audio


@pytest.mark.parametrize("commands", ["together", "in reverse"])
async def test_sessions_accepted_in_one_batch_get_their_first_chunks_in_accept_order(
    autojump_clock: trio.testing.MockClock, commands: str
) -> None:
    """``SESSIONS`` WebSockets accepted by the real HTTP server in one batch, each playing its own
    track through the real ``/session`` handler, session actor, mastering facade and pool: their first
    chunks start in the order the connections were accepted, and each client's first audio comes in
    that order. The place in line is taken at accept (``HttpServer(arrival=...)``); taken when each
    session's task read its command, the order trio ran those tasks in decided ("together": every
    client sends at once; "in reverse": last-connected first). Eight rounds: the numbering at the
    command passes "together" with probability 1/256 at best, and "in reverse" never."""
    for _ in range(8):
        started, first_audio = await _sessions_in_one_batch(commands)
        first_pieces = [entry for entry in started if entry[1:] == ("piece", 0)]
        assert first_pieces == [(100, "piece", 0)] + [(i, "piece", 0) for i in range(SESSIONS)]
        assert started[1 : SESSIONS + 1] == first_pieces[1:]  # before anything else was started
        assert first_audio == list(range(SESSIONS))
