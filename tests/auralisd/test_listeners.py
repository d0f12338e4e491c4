"""The shared player's subscriber set: who is told that an epoch follows another (``follows_epoch``)."""

from __future__ import annotations

from auralisd.actors.listeners import Listeners, StreamStart


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
