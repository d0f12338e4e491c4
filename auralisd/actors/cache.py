"""Byte-budgeted LRU cache of rendered chunks, with hit/miss/eviction counters.

Keys hold everything that changes a chunk's samples: the file's identity (path, size,
mtime), the engine version, the plan's ``cache_key()`` (preset, intensity and every
fingerprint-derived parameter) and the chunk index. Values are float32 arrays; their
``nbytes`` count against the budget. All methods are non-blocking and touch the state in
one synchronous step (no checkpoint inside), so concurrent tasks cannot interleave.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CacheStatistics:
    hits: int
    misses: int
    evictions: int
    bytes: int
    budget_bytes: int
    entries: int

    def to_wire(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "bytes": self.bytes,
            "budget_bytes": self.budget_bytes,
            "entries": self.entries,
        }


class ChunkCache:
    """LRU over ``nbytes``; an item larger than the whole budget is not stored."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        item = self._items.get(key)
        if item is None:
            self._misses += 1
            return None
        self._items.move_to_end(key)
        self._hits += 1
        return item

    def peek(self, key: Hashable) -> bool:
        """True when ``key`` is cached (no counter or recency change)."""
        return key in self._items

    def put(self, key: Hashable, value: np.ndarray) -> None:
        size = int(value.nbytes)
        if size > self.budget_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= int(old.nbytes)
        value.setflags(write=False)  # shared by every reader: nobody may modify it in place
        self._items[key] = value
        self._bytes += size
        while self._bytes > self.budget_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= int(evicted.nbytes)
            self._evictions += 1

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            self._hits, self._misses, self._evictions, self._bytes, self.budget_bytes, len(self._items)
        )
