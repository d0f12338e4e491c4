"""The clock policy: when the next block is due, stalls, underruns, and no burst after a stall.

Pure: times are passed in (the actor reads ``trio.current_time()``, a test passes numbers or
runs on trio's MockClock). Block ``i`` after the origin is due at
``origin_time + frames_before_i / sample_rate - lead_s``: block ``i`` *plays* at
``origin_time + frames_before_i / sample_rate`` and is made up to ``lead_s`` before (the shared
player and a private session in real-time pace both send up to their lead ahead; the shared player
holds blocks back for the listeners that want them at their play time). When the data is not ready
the clock *stalls* (polling every ``stall_poll_s``, an underrun counted if the epoch had already sent
audio). When it is ready again before the block's play time the lead absorbed the stall and the
schedule holds (the clock catches up at once, at most the lead ahead); after its play time the clock
restarts from "now", so a stall is never followed by a burst beyond the lead. A clock that fell more
than ``max_late_s`` behind (a long pause of the process) restarts from now too.

A jump (seek, another track) starts a new schedule at "now" (:meth:`start`, :meth:`retime`); audio that
goes on from what was sent (a resume, a gapless track change) :meth:`resumes <resume>` it where the audio
already sent ends, never earlier, so the lead never piles up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

STALL_POLL_S: Final = 0.01  # s between looks at a missing chunk (a render report also wakes the clock)
MAX_LATE_S: Final = 0.25  # s behind schedule after which the clock restarts from now instead of bursting


@dataclass
class Clock:
    """Deadlines for one stream at ``sample_rate`` (output frames)."""

    sample_rate: int
    lead_s: float = 0.0
    max_late_s: float = MAX_LATE_S
    stall_poll_s: float = STALL_POLL_S
    running: bool = False
    stalled: bool = False
    underruns: int = 0
    epoch_blocks: int = 0  # blocks sent since the last new epoch (a stall after the first is an underrun)
    _origin_time: float = 0.0
    _frames_since_origin: int = 0
    _poll_at: float = math.inf
    _stall_counted: bool = False  # this stall was counted as an underrun

    @property
    def deadline(self) -> float:
        """When the next block is due (``inf`` when stopped)."""
        if not self.running:
            return math.inf
        if self.stalled:
            return self._poll_at
        return self._origin_time + self._frames_since_origin / self.sample_rate - self.lead_s

    @property
    def origin(self) -> tuple[float, int]:
        """``(time, frames)``: the pacing origin and the frames sent since it. While running and not
        stalled, the frame playing at time ``t`` is ``frames`` before the last one sent plus
        ``(t - time) * sample_rate`` (what a published play position is computed from)."""
        return self._origin_time, self._frames_since_origin

    @property
    def play_time(self) -> float:
        """When the next block to send plays (the end of the audio sent so far, on the schedule)."""
        return self._origin_time + self._frames_since_origin / self.sample_rate

    def due(self, now: float) -> bool:
        return now >= self.deadline

    def start(self, now: float) -> None:
        """Play from ``now`` (play, resume, seek, track change)."""
        self.running = True
        self.retime(now)

    def resume(self, now: float) -> None:
        """Play on from what was sent (resume, gapless track change): the next block plays where the audio
        already scheduled ends, or at ``now`` if that is past."""
        self.start(max(now, self.play_time))

    def stop(self) -> None:
        self.running = False
        self.stalled = False

    def retime(self, now: float) -> None:
        """The next block plays at ``now``: it is due now (``lead_s`` early), the rest at their pace."""
        self.stalled = False
        self._origin_time = now
        self._frames_since_origin = 0

    def new_epoch(self) -> None:
        self.epoch_blocks = 0

    def sent(self, now: float, frames: int) -> None:
        """A block of ``frames`` left; the next one is due ``frames / sample_rate`` later."""
        self.epoch_blocks += 1
        self._frames_since_origin += frames
        if self.deadline < now - self.max_late_s:  # fell far behind (a long GC pause): do not burst
            self.retime(now)

    def stall(self, now: float) -> bool:
        """The block is not ready: poll again soon. Returns True when this counts as an underrun: once per
        stall, when the epoch had sent audio and the block's play time has come (a stall the lead absorbs
        is no underrun)."""
        if not self.stalled:
            self._stall_counted = False
        self.stalled = True
        self._poll_at = now + self.stall_poll_s
        counted = not self._stall_counted and self.epoch_blocks > 0 and now >= self.play_time
        if counted:
            self.underruns += 1
            self._stall_counted = True
        return counted

    def recover(self, now: float) -> bool:
        """The block is ready: a stall, if any, is over. True when it was stalled.

        Before the block's play time (the lead absorbed the stall) the schedule holds; after it, the clock
        restarts from now (the block plays now: no burst to catch up with lost time)."""
        if not self.stalled:
            return False
        if now <= self.play_time:
            self.stalled = False
        else:
            self.retime(now)
        return True

    def kick(self, now: float) -> None:
        """Data arrived: a stalled clock looks again at once."""
        if self.stalled:
            self._poll_at = now
