"""The InfluxQL behind the figures of the lever rules
(``domain.advice_levers``) and of their effects, for ``InfluxAnalysisReader``:
statements over a window's ``WHERE`` clause, and what their rows mean. Every
statement names the raw retention policy.
"""

from __future__ import annotations

from typing import Any

from service.adapters.influx import RAW_POLICY

RAW = f'"{RAW_POLICY}"'

# In the window summary (``report.METRIC_KEYS``) beside the key metrics:
# what the lever rules promise to move, so the impact job can judge them.
EFFECT_KEYS = ("refused_connections_per_s", "refused_publishes_per_s", "pool_waiting",
               "wire_ratio", "slow_consumer_drops_per_s")
# Read with the effect figures, for the rules only.
BYTES_KEYS = ("batch_bytes_mean", "delivered_bytes_per_s", "pool_checkouts", "pool_wait_ms")
LEVER_KEYS = ("queued_bytes_max", "pool_size", "cache_misses", "cache_evictions_lru",
              "cache_evictions_ttl", "cache_evictions_bytes", "cache_invalidations")


def effect_statements(where: str, serving: str) -> list[str]:
    """Connections refused for the limit (``connection_limit``: the node's
    or a user's limit, or memory), publishes refused for backpressure, the
    serving nodes' pool checkouts and their wait, delivered bytes as JSON and
    on the wire, and notifications dropped because their client read too
    slowly (``slow_consumer``: the one drop reason a burst can cause)."""
    return [
        f'SELECT sum("count") AS "n" FROM {RAW}."notify_connection" WHERE {where} '
        "AND \"event\" = 'refused' AND \"reason\" = 'connection_limit'",
        f'SELECT sum("count") AS "n" FROM {RAW}."notify_throttle" WHERE {where} '
        "AND \"reason\" = 'backpressure'",
        f'SELECT sum("waits") AS "n", sum("wait_ms_sum") AS "ms" FROM {RAW}."db_pool" '
        f"WHERE {serving}",
        'SELECT sum("bytes") AS "bytes", sum("wire_bytes") AS "wire", sum("batches") AS "b" '
        f'FROM {RAW}."notify_delivery" WHERE {where}',
        f'SELECT sum("count") AS "n" FROM {RAW}."notify_drop" WHERE {where} '
        "AND \"reason\" = 'slow_consumer'",
    ]


def effect_figures(rows: list[dict[str, Any] | None], seconds: float) -> dict[str, float | None]:
    """``EFFECT_KEYS`` and ``BYTES_KEYS`` from the rows of ``effect_statements``
    (each its first row, or None): rates are 0 without points, ratios and
    means None without anything to divide by. ``pool_waiting`` is the time
    checkouts waited per second (how many wait at once, on average): fewer
    checkouts lower it where the wait per checkout stays (measured when a
    bigger cache cut checkouts: docs/benchmarks.md#tuning)."""
    refused_conn, refused_pub, pool, delivery, slow = (row or {} for row in rows)
    checkouts = pool.get("n") or 0
    size, wire, batches = (delivery.get(k) or 0 for k in ("bytes", "wire", "b"))
    return {
        "refused_connections_per_s": (refused_conn.get("n") or 0) / seconds,
        "refused_publishes_per_s": (refused_pub.get("n") or 0) / seconds,
        "pool_waiting": (pool.get("ms") or 0) / 1000.0 / seconds,
        "wire_ratio": wire / size if size else None,
        "pool_wait_ms": (pool.get("ms") or 0) / checkouts if checkouts else None,
        "batch_bytes_mean": size / batches if batches else None,
        "delivered_bytes_per_s": size / seconds,
        "pool_checkouts": float(checkouts),
        "slow_consumer_drops_per_s": (slow.get("n") or 0) / seconds,
    }


def lever_statements(where: str, serving: str) -> list[str]:
    """The most bytes waiting for clients on a node, the serving nodes'
    largest pool, and the caches' misses, evictions by reason and
    invalidations."""
    return [
        f'SELECT max("queued_bytes_max") AS "v" FROM {RAW}."notify_queues" WHERE {where}',
        'SELECT max("s") AS "v" FROM (SELECT last("size") AS "s" FROM '
        f'{RAW}."db_pool" WHERE {serving} GROUP BY "node")',
        'SELECT sum("misses") AS "misses", sum("evictions") AS "lru", '
        'sum("evictions_ttl") AS "ttl", sum("evictions_bytes") AS "bytes", '
        f'sum("invalidations") AS "invalidations" FROM {RAW}."cache" WHERE {where}',
    ]


def lever_figures(rows: list[dict[str, Any] | None]) -> dict[str, float | None]:
    """``LEVER_KEYS`` from the rows of ``lever_statements``; None where no
    point was written (no cache: no cache figures)."""
    queues, pool, cache = rows
    out: dict[str, float | None] = {
        "queued_bytes_max": _float(queues, "v"),
        "pool_size": _float(pool, "v"),
    }
    for key, column in (("cache_misses", "misses"), ("cache_evictions_lru", "lru"),
                        ("cache_evictions_ttl", "ttl"), ("cache_evictions_bytes", "bytes"),
                        ("cache_invalidations", "invalidations")):
        out[key] = None if cache is None else float(cache.get(column) or 0)
    return out


def _float(row: dict[str, Any] | None, column: str) -> float | None:
    value = (row or {}).get(column)
    return None if value is None else float(value)
