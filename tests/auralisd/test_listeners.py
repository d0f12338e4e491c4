"""The shared player's subscriber set: who is told that an epoch follows another (``follows_epoch``), and when
early and on-time subscribers get what the player mixed ahead."""

from __future__ import annotations

from typing import Any

import numpy as np
import trio

from auralisd.actors.listeners import Listeners, PcmBlock, StreamEnd, StreamStart, StreamStatus


def _start(epoch: int, follows: int | None) -> StreamStart:
    return StreamStart(epoch, 0, 44_100, 2, {"track_id": epoch}, "adaptive", 1.0, None, None, follows_epoch=follows)


async def test_follows_epoch_reaches_only_subscribers_that_were_announced_that_epoch() -> None:
    listeners = Listeners()
    old = listeners.add(10)
    listeners.announce(1, lambda: _start(1, None))
    new = listeners.add(10)  # joins after epoch 1 was announced: it heard none of epoch 1
    listeners.announce(2, lambda: _start(2, 1))
    listeners.announce(2, lambda: _start(2, 1))  # announced once per subscriber
    heard = [old.receive.receive_nowait(), old.receive.receive_nowait()]
    assert [(s.epoch, s.follows_epoch) for s in heard] == [(1, None), (2, 1)]
    assert new.receive.receive_nowait().follows_epoch is None  # keeping its queue would join unrelated audio
    listeners.announce(3, lambda: _start(3, 2))  # from now on it heard what epoch 3 follows
    assert new.receive.receive_nowait().follows_epoch == 2


def _block(epoch: int, offset: int) -> PcmBlock:
    return PcmBlock(epoch, offset, np.zeros((10, 2), np.float32), 1)


def _drain(sub: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(sub.receive.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_an_early_subscriber_gets_a_block_when_mixed_an_on_time_one_at_its_play_time() -> None:
    listeners = Listeners()
    early, on_time = listeners.add(10, early=True), listeners.add(10)
    listeners.announce(1, lambda: _start(1, None), now=0.0, play_at=0.5)
    listeners.publish(_block(1, 0), now=0.0, play_at=0.5)
    listeners.publish(_block(1, 10), now=0.0, play_at=0.6)
    assert [type(m).__name__ for m in _drain(early)] == ["StreamStart", "PcmBlock", "PcmBlock"]
    assert _drain(on_time) == [] and listeners.next_release == 0.5
    listeners.release(0.5)
    assert [type(m).__name__ for m in _drain(on_time)] == ["StreamStart", "PcmBlock"]
    listeners.publish(StreamEnd("paused"), now=0.5)  # a record waits for the blocks before it
    listeners.release(0.59)
    assert _drain(on_time) == []
    listeners.release(0.6)
    assert [getattr(m, "offset_frames", None) or type(m).__name__ for m in _drain(on_time)] == [10, "StreamEnd"]


async def test_a_jump_drops_the_audio_held_for_on_time_subscribers_and_keeps_the_records() -> None:
    listeners = Listeners()
    on_time = listeners.add(10)
    listeners.publish(_block(1, 0), now=0.0, play_at=0.2)
    listeners.publish(StreamStatus("ready", 1), now=0.0)
    listeners.publish(_block(1, 10), now=0.0, play_at=0.3)
    listeners.cut(0.1)  # a seek: that audio was never to be heard
    assert [type(m).__name__ for m in _drain(on_time)] == ["StreamStatus"]
    assert listeners.next_release == float("inf")
    listeners.publish(_block(2, 500), now=0.1, play_at=0.1)  # the new position at once
    assert [m.offset_frames for m in _drain(on_time)] == [500]


async def test_nothing_is_held_without_an_on_time_subscriber() -> None:
    listeners = Listeners()
    early = listeners.add(10, early=True)
    listeners.publish(_block(1, 0), now=0.0, play_at=0.5)
    assert len(_drain(early)) == 1 and listeners.next_release == float("inf")
