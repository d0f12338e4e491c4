"""The playback core: pure, synchronous, no trio, no I/O.

The shared player and every private ``/session`` are actors over these pieces:

- :mod:`.queue`: the play queue and MPD's play order (random rounds, history, consume/single/repeat);
- :mod:`.deck`: one track read at the output rate: wanted chunks, priorities, failures, slicing;
- :mod:`.mixer`: the one block / crossfade / volume-ramp implementation;
- :mod:`.clock`: deadlines, stalls and underruns.
"""

from .clock import Clock
from .deck import Deck, Fetch
from .mixer import BLOCK_S, CROSSFADE_S, Crossfade, VolumeRamp, volume_gain
from .queue import Advance, PlayQueue, QueueChanges, QueueError

__all__ = [
    "Advance", "BLOCK_S", "CROSSFADE_S", "Clock", "Crossfade", "Deck", "Fetch", "PlayQueue", "QueueChanges", "QueueError",
    "VolumeRamp", "volume_gain",
]
