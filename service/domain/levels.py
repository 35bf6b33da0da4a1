"""Optimization levels: named presets of the runtime's tunable parameters.

A level sets the defaults; an environment variable given explicitly wins
over it, and either can be changed live (service.domain.tuning).

The query result cache (service.service_layer.cached_log) holds
``cache_entries`` per-user values (the global level a tenth of that) for up
to ``cache_ttl_s``: 1K-20K entries and 1-4 h, as the issue sets them.

Connection limits come from ``bench connections``: one node held 19,500 idle
WebSockets (the machine's open-files limit) at 27 KB each over a 72 MB base.
Each level's limit fits within its memory budget with room for send queues:
5,000 x 27 KB + 72 MB = 207 MB of 256; 15,000 -> 477 of 512; 30,000 -> 882
of 1,024; 50,000 -> 1,422 of 2,048 (that many also needs `ulimit -n` above it).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.model import Priority
from service.domain.throttle import Rate


@dataclass(frozen=True)
class PoolSettings:
    """The database connection pool (PostgreSQL; SQLite keeps one connection).
    Set at start-up only: an engine is not rebuilt live."""

    size: int = 10
    max_overflow: int = 10
    timeout_s: float = 5.0  # a checkout waits this long, then the request gets 503
    pre_ping: bool = True  # test a connection before use: survives a database restart


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
    write_batch_size: int = 50  # publishes appended in one transaction at most
    cache_entries: int = 5_000  # values in the per-user query cache at most
    cache_ttl_s: float = 7_200.0  # a cached value is dropped after this, changed or not
    db_pool: PoolSettings = PoolSettings()


def _rates(low: tuple[float, float], normal: tuple[float, float],
           high: tuple[float, float]) -> dict[Priority, Rate | None]:
    """Per user and priority. critical is never throttled: it is what a flood
    must not block."""
    return {Priority.CRITICAL: None, Priority.LOW: Rate(*low), Priority.NORMAL: Rate(*normal),
            Priority.HIGH: Rate(*high)}


LEVELS: dict[str, Level] = {
    # smallest batches and tightest limits: lowest latency and memory, least throughput
    "conservative": Level(10, 25.0, 5_000, 5, 256 * 1024,
                          _rates((50, 100), (100, 200), (200, 400)), 700,
                          offline_queue_max=200, memory_budget_mb=256, write_batch_size=10,
                          cache_entries=1_000, cache_ttl_s=3_600.0,
                          db_pool=PoolSettings(5, 5, 5.0)),
    "balanced": Level(50, 50.0, 15_000, 10, 1 << 20,
                      _rates((50, 100), (200, 400), (500, 1000)), 20_000,
                      offline_queue_max=1_000, memory_budget_mb=512, write_batch_size=50,
                      cache_entries=5_000, cache_ttl_s=7_200.0,
                      db_pool=PoolSettings(10, 10, 5.0)),
    "aggressive": Level(100, 100.0, 30_000, 20, 2 << 20,
                        _rates((100, 300), (300, 600), (500, 1000)), 50_000,
                        offline_queue_max=5_000, memory_budget_mb=1024, write_batch_size=100,
                        cache_entries=10_000, cache_ttl_s=10_800.0,
                        db_pool=PoolSettings(20, 20, 10.0)),
    # biggest batches: most throughput per CPU, up to 200 ms of added latency
    "maximum": Level(100, 200.0, 50_000, 50, 4 << 20,
                     _rates((200, 500), (500, 1000), (500, 1000)), 100_000,
                     offline_queue_max=10_000, memory_budget_mb=2048, write_batch_size=200,
                     cache_entries=20_000, cache_ttl_s=14_400.0,
                     db_pool=PoolSettings(30, 30, 10.0)),
}
