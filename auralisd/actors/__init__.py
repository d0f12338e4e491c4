"""The actors: each owns one piece of state and serves it through a facade.

database (SQLite on a thread), library (scans), fingerprints (resolver), pool (worker
processes), cache (chunk LRU), mastering (chunk renders), player (queue + PCM clock),
events (notification fan-out).
"""

from .cache import ChunkCache
from .database import Database, Track
from .events import EventHub
from .fingerprints import FingerprintResolver
from .library import Library
from .mastering import Mastering
from .player import PcmBlock, PcmSubscription, Player, PlayerView, StreamEnd, StreamStart, StreamStatus
from .pool import MasteringPool, open_mastering_pool

__all__ = [
    "ChunkCache",
    "Database",
    "EventHub",
    "FingerprintResolver",
    "Library",
    "Mastering",
    "MasteringPool",
    "PcmBlock",
    "PcmSubscription",
    "Player",
    "PlayerView",
    "StreamEnd",
    "StreamStart",
    "StreamStatus",
    "Track",
    "open_mastering_pool",
]
