"""A TTL + LRU cache bounded in entries and in bytes, with group invalidation.

Pure: time comes from an injected clock, nothing here does I/O. Values are
kept in their encoded form (``encode``/``decode``, pickle by default), so
that a value's size is known exactly (the length of what is stored) and a
hit hands back a fresh copy that the caller may change freely. An encoded
value of ``compress_min_bytes`` or more is stored zlib-compressed when that
makes it smaller, and inflated on each hit.

Eviction, counted by reason:

* ``ttl``: an entry older than ``ttl_s`` is never returned. Expired entries
  are dropped when met by ``get``, and from the oldest end whenever room is
  made (the TTL is one per cache, so insertion order is expiry order);
* ``lru``: past ``max_entries``, the least recently used goes;
* ``bytes``: past ``max_bytes``, least recently used first, until it fits.

Each key may belong to one group (for example a user id): a group's keys are
indexed, so dropping all of them costs what they are, not a scan.
"""

from __future__ import annotations

import pickle
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any

COMPRESS_LEVEL = 1  # fast: values are small, and compressed again on every refresh
GLOBAL_SHARE = 8  # the global level gets 1/8 of the bytes: a few values, shared by all
LEVEL_NAMES = ("global", "user")


def split_bounds(entries: int, max_bytes: int) -> dict[str, tuple[int, int]]:
    """(max entries, max bytes) per level from the configured totals: the
    user level takes ``entries`` and 7/8 of the bytes, the global level a
    tenth of the entries (its values are few) and the rest of the bytes."""
    shared_bytes = max_bytes // GLOBAL_SHARE
    return {"user": (entries, max_bytes - shared_bytes),
            "global": (max(entries // 10, min(entries, 16)), shared_bytes)}


@dataclass
class CacheStats:
    """Counters since the cache was made; ``entries``/``bytes`` are gauges."""

    hits: int = 0
    misses: int = 0
    evictions_lru: int = 0
    evictions_ttl: int = 0
    evictions_bytes: int = 0
    invalidations: int = 0  # entries dropped because a write changed them
    entries: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Entry:
    __slots__ = ("data", "compressed", "stored_at", "group")

    def __init__(self, data: bytes, compressed: bool, stored_at: float,
                 group: Hashable | None) -> None:
        self.data = data
        self.compressed = compressed
        self.stored_at = stored_at
        self.group = group


class TtlLruCache:
    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float],
        compress_min_bytes: int | None = None,
        encode: Callable[[Any], bytes] = pickle.dumps,
        decode: Callable[[bytes], Any] = pickle.loads,
    ) -> None:
        self.max_entries = max(0, max_entries)
        self.max_bytes = max(0, max_bytes)
        self.ttl_s = ttl_s
        self.compress_min_bytes = compress_min_bytes  # None: never compress
        self._clock = clock
        self._encode, self._decode = encode, decode
        self._lru: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recent first
        self._age: OrderedDict[Hashable, None] = OrderedDict()  # oldest stored first
        self._groups: dict[Hashable, set[Hashable]] = {}
        self._bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key: Hashable) -> bool:
        """Whether a live entry is stored; no statistics, no recency change."""
        entry = self._lru.get(key)
        return entry is not None and not self._expired(entry, self._clock())

    @property
    def bytes(self) -> int:
        return self._bytes

    def snapshot(self) -> CacheStats:
        stats = CacheStats(**self.stats.as_dict())
        stats.entries, stats.bytes = len(self._lru), self._bytes
        return stats

    # -- reads ----------------------------------------------------------------
    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value (a fresh copy), or ``default`` on a miss."""
        entry = self._lru.get(key)
        if entry is not None and self._expired(entry, self._clock()):
            self._drop(key, "ttl")
            entry = None
        if entry is None:
            self.stats.misses += 1
            return default
        self.stats.hits += 1
        self._lru.move_to_end(key)
        data = zlib.decompress(entry.data) if entry.compressed else entry.data
        return self._decode(data)

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """``get`` for the cache's own upkeep: no statistics, no recency change."""
        entry = self._lru.get(key)
        if entry is None or self._expired(entry, self._clock()):
            return default
        data = zlib.decompress(entry.data) if entry.compressed else entry.data
        return self._decode(data)

    # -- writes ---------------------------------------------------------------
    def put(self, key: Hashable, value: Any, group: Hashable | None = None) -> bool:
        """Store a value; return False if it alone is over the byte bound."""
        data = self._encode(value)
        compressed = False
        if self.compress_min_bytes is not None and len(data) >= self.compress_min_bytes:
            packed = zlib.compress(data, COMPRESS_LEVEL)
            if len(packed) < len(data):
                data, compressed = packed, True
        if key in self._lru:
            self._drop(key, None)
        if len(data) > self.max_bytes or self.max_entries == 0:
            return False  # never stored: evicting everything for it would not help
        now = self._clock()
        self._make_room(len(data), now)
        self._lru[key] = _Entry(data, compressed, now, group)
        self._age[key] = None
        self._bytes += len(data)
        if group is not None:
            self._groups.setdefault(group, set()).add(key)
        return True

    def invalidate(self, key: Hashable) -> bool:
        if key not in self._lru:
            return False
        self._drop(key, "invalidated")
        return True

    def invalidate_group(self, group: Hashable) -> int:
        """Drop every key of the group (found through its index)."""
        keys = tuple(self._groups.get(group, ()))
        for key in keys:
            self._drop(key, "invalidated")
        return len(keys)

    def group_keys(self, group: Hashable) -> tuple[Hashable, ...]:
        return tuple(self._groups.get(group, ()))

    def clear(self) -> int:
        """Drop everything, counted as invalidations."""
        count = len(self._lru)
        self.stats.invalidations += count
        self._lru.clear()
        self._age.clear()
        self._groups.clear()
        self._bytes = 0
        return count

    def resize(self, *, max_entries: int | None = None, max_bytes: int | None = None,
               ttl_s: float | None = None) -> None:
        """New bounds, live: evicts down to them at once."""
        if max_entries is not None:
            self.max_entries = max(0, max_entries)
        if max_bytes is not None:
            self.max_bytes = max(0, max_bytes)
        if ttl_s is not None:
            self.ttl_s = ttl_s
        self._make_room(0, self._clock())

    def purge_expired(self) -> int:
        """Drop expired entries from the oldest end; return how many."""
        return self._purge(self._clock())

    # -- internals ------------------------------------------------------------
    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.stored_at >= self.ttl_s

    def _purge(self, now: float) -> int:
        dropped = 0
        while self._age:
            key = next(iter(self._age))
            if not self._expired(self._lru[key], now):
                break
            self._drop(key, "ttl")
            dropped += 1
        return dropped

    def _make_room(self, incoming: int, now: float) -> None:
        """Room for one more entry of ``incoming`` bytes (none: just fit)."""
        self._purge(now)
        extra = 1 if incoming else 0
        while self._lru and len(self._lru) + extra > self.max_entries:
            self._drop(next(iter(self._lru)), "lru")
        while self._lru and self._bytes + incoming > self.max_bytes:
            self._drop(next(iter(self._lru)), "bytes")

    def _drop(self, key: Hashable, reason: str | None) -> None:
        entry = self._lru.pop(key)
        del self._age[key]
        self._bytes -= len(entry.data)
        if entry.group is not None:
            keys = self._groups.get(entry.group)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._groups[entry.group]
        if reason == "invalidated":
            self.stats.invalidations += 1
        elif reason is not None:
            setattr(self.stats, f"evictions_{reason}",
                    getattr(self.stats, f"evictions_{reason}") + 1)
