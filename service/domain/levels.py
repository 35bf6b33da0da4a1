"""Optimization levels: named presets of the runtime's tunable parameters.

A level sets the defaults; an environment variable given explicitly wins
over it. Only parameters the runtime acts on today are here; cache sizes and
the memory budget join when the cache and the budget exist. The connection
limits are provisional until the connections benchmark measures what one
node holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.model import Priority
from service.domain.throttle import Rate


@dataclass(frozen=True)
class Level:
    batch_size: int
    batch_timeout_ms: float
    max_connections: int
    max_connections_per_user: int
    send_queue_max_bytes: int
    throttle: dict[Priority, Rate | None]
    # allocations between young-generation collections (Python's default is 700)
    gc_gen0_threshold: int = 700
    offline_queue_max: int = 1_000  # entries kept per user stream, oldest trimmed first
    memory_budget_mb: int = 512  # RSS past which the node sheds load (see Backpressure)


def _rates(low: tuple[float, float], normal: tuple[float, float],
           high: tuple[float, float]) -> dict[Priority, Rate | None]:
    """Per user and priority. critical is never throttled: it is what a flood
    must not block."""
    return {Priority.CRITICAL: None, Priority.LOW: Rate(*low), Priority.NORMAL: Rate(*normal),
            Priority.HIGH: Rate(*high)}


LEVELS: dict[str, Level] = {
    # smallest batches and tightest limits: lowest latency and memory, least throughput
    "conservative": Level(10, 25.0, 2_000, 5, 256 * 1024,
                          _rates((50, 100), (100, 200), (200, 400)), 700,
                          offline_queue_max=200, memory_budget_mb=256),
    "balanced": Level(50, 50.0, 10_000, 10, 1 << 20,
                      _rates((50, 100), (200, 400), (500, 1000)), 20_000,
                      offline_queue_max=1_000, memory_budget_mb=512),
    "aggressive": Level(100, 100.0, 20_000, 20, 2 << 20,
                        _rates((100, 300), (300, 600), (500, 1000)), 50_000,
                        offline_queue_max=5_000, memory_budget_mb=1024),
    # biggest batches: most throughput per CPU, up to 200 ms of added latency
    "maximum": Level(100, 200.0, 40_000, 50, 4 << 20,
                     _rates((200, 500), (500, 1000), (500, 1000)), 100_000,
                     offline_queue_max=10_000, memory_budget_mb=2048),
}
