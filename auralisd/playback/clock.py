"""The clock policy: when the next block is due, stalls, underruns, and no burst after a stall.

Pure: times are passed in (the actor reads ``trio.current_time()``, a test passes numbers or
runs on trio's MockClock). Block ``i`` after the origin is due at
``origin_time + frames_before_i / sample_rate - lead_s``: ``lead_s = 0`` is the shared
player (a block leaves at its play time), a private session in real-time pace sends up to
``lead_s`` ahead. When the data is not ready the clock *stalls* (polling every
``stall_poll_s``, an underrun counted if the epoch had already sent audio) and restarts from
"now" when it is, so a stall is never followed by a burst. A clock that fell more than
``max_late_s`` behind (a long pause of the process) restarts from now too.
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

    def due(self, now: float) -> bool:
        return now >= self.deadline

    def start(self, now: float) -> None:
        """Play from ``now`` (play, resume, seek, track change)."""
        self.running = True
        self.retime(now)

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
        """The block is not ready: poll again soon. Returns True when this counts as an underrun."""
        counted = not self.stalled and self.epoch_blocks > 0
        if counted:
            self.underruns += 1
        self.stalled = True
        self._poll_at = now + self.stall_poll_s
        return counted

    def recover(self, now: float) -> bool:
        """The block is ready (a stall, if any, is over: restart from now). True when it was stalled."""
        if not self.stalled:
            return False
        self.retime(now)
        return True

    def kick(self, now: float) -> None:
        """Data arrived: a stalled clock looks again at once."""
        if self.stalled:
            self._poll_at = now
