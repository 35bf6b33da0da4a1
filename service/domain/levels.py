"""Optimization levels: named presets of the runtime's tunable parameters.

A level sets the defaults; an environment variable given explicitly wins
over it, and either can be changed live (service.domain.tuning). The values
are the ``per_level`` columns of the settings table
(service.domain.settings_table); docs/configuration.md, "Optimization
levels", says how each level's limits were chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.domain.model import Priority
from service.domain.settings_table import LEVEL_NAMES, SETTINGS, levelled
from service.domain.token_bucket import Rate

__all__ = ["LEVELS", "LEVEL_NAMES", "Level", "PoolSettings"]


def _balanced(env: str) -> Any:
    return SETTINGS[env].value


@dataclass(frozen=True)
class PoolSettings:
    """The database connection pool (PostgreSQL; SQLite keeps one connection).
    Set at start-up only: an engine is not rebuilt live."""

    size: int = _balanced("DB_POOL_SIZE")
    max_overflow: int = _balanced("DB_MAX_OVERFLOW")
    timeout_s: float = _balanced("DB_POOL_TIMEOUT")  # a checkout waits this long, then 503
    pre_ping: bool = _balanced("DB_POOL_PRE_PING")  # survives a database restart


@dataclass(frozen=True)
class Level:
    """One level's presets (the rows of the table a level sets)."""

    batch_size: int
    batch_timeout_ms: float
    max_connections: int
    max_connections_per_user: int
    send_queue_max_bytes: int
    throttle: dict[Priority, Rate | None]
    gc_gen0_threshold: int  # allocations between young-generation collections
    offline_queue_max: int  # entries kept per user stream, oldest trimmed first
    memory_budget_mb: int  # RSS past which the node sheds load (see Backpressure)
    write_batch_size: int  # publishes appended in one transaction at most
    cache_entries: int  # values in the per-user query cache at most
    cache_ttl_s: float  # a cached value is dropped after this, changed or not
    db_pool: PoolSettings


def _level(name: str) -> Level:
    values = {s.name: s.at(name) for s in levelled()}
    pool = PoolSettings(size=values.pop("db_pool_size"),
                        max_overflow=values.pop("db_max_overflow"),
                        timeout_s=values.pop("db_pool_timeout"))
    return Level(**values, db_pool=pool)


LEVELS: dict[str, Level] = {name: _level(name) for name in LEVEL_NAMES}
