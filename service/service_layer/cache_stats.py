"""The query caches' statistics as telemetry, and their sizing from the tunables.

Hooked into RuntimeSampler's ``extra=`` list (every 10 s), as QueryStats is.
Counters are emitted as deltas since the previous sample, so that
``sum("hits")`` over any range is right whatever the sampling; ``entries``
and ``bytes`` are gauges read at the sample. Expired entries are purged
first, so that ``entries`` counts only live ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from service.domain.cache import CacheStats, TtlLruCache, split_bounds
from service.service_layer.ports import Telemetry

_COUNTERS = ("hits", "misses", "evictions_lru", "evictions_ttl", "evictions_bytes",
             "invalidations")


class CacheReporter:
    def __init__(self, caches: dict[tuple[str, str], TtlLruCache]) -> None:
        """``caches``: (level, cache name) -> cache."""
        self._caches = caches
        self._last = {key: CacheStats() for key in caches}

    def emit(self, telemetry: Telemetry) -> None:
        for (level, name), cache in self._caches.items():
            cache.purge_expired()
            now = cache.snapshot()
            last, self._last[(level, name)] = self._last[(level, name)], now
            delta = {field: getattr(now, field) - getattr(last, field) for field in _COUNTERS}
            telemetry.emit("cache", (("level", level), ("cache", name)), {
                "hits": delta["hits"], "misses": delta["misses"],
                "evictions": delta["evictions_lru"], "evictions_ttl": delta["evictions_ttl"],
                "evictions_bytes": delta["evictions_bytes"],
                "invalidations": delta["invalidations"],
                "entries": now.entries, "bytes": now.bytes,
            })


def make_caches(values: Mapping[str, Any],
                clock: Callable[[], float] = time.monotonic) -> dict[str, TtlLruCache]:
    """The two levels, sized from the live tunables (``cache_*``)."""
    caches = {level: TtlLruCache(max_entries=entries, max_bytes=max_bytes,
                                 ttl_s=values["cache_ttl_s"], clock=clock)
              for level, (entries, max_bytes) in split_bounds(
                  values["cache_entries"], values["cache_max_bytes"]).items()}
    retune_caches(caches, values)
    return caches


def retune_caches(caches: Mapping[str, TtlLruCache], values: Mapping[str, Any]) -> None:
    """New sizes and TTL, live: smaller bounds evict at once."""
    bounds = split_bounds(values["cache_entries"], values["cache_max_bytes"])
    for level, cache in caches.items():
        entries, max_bytes = bounds[level]
        cache.compress_min_bytes = values["cache_compress_min_bytes"] or None  # 0: never
        cache.resize(max_entries=entries, max_bytes=max_bytes, ttl_s=values["cache_ttl_s"])
