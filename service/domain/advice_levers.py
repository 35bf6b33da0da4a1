"""Recommendation rules for the levers the older design's advice named:
connection limit, memory budget, database pool, query-cache TTL and
compression threshold. Pure; ``advice.RULES`` lists them with the others,
and docs/operations.md gives each one's thresholds.

Each fires only when its figures over the window agree, and stays silent
when another explanation fits them as well (named at each rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from service.domain.advice_base import (
    MIB,
    Config,
    Figures,
    Proposal,
    clamp,
    known,
    margin,
    memory_share,
)
from service.domain.health import MIN_LOOKUPS

REFUSED_PER_S = 0.1  # refusals per second that are evidence (180 in 30 minutes)
BUDGET_HEADROOM = 0.75  # memory-budget-up: the RSS seen is at most this share of the new budget
COMPRESSION_FLOOR = 1024  # below ~1 KiB deflate saves little (domain.compression)
BANDWIDTH = 1e6  # JSON bytes per second delivered that make wire size worth CPU
# pool-wait: a checkout waits this many statement times or more (a queue for
# the pool several deep), at least POOL_WAIT_MS (shorter waits are not worth
# memory), and statements average under SLOW_STATEMENT_MS (slower, the
# database is the bottleneck). Measured with a pool of one: waits of 7-8
# statement times alone, 9-74 under contention (docs/operations.md).
POOL_WAIT_FACTOR = 5.0
POOL_WAIT_MS = 5.0
SLOW_STATEMENT_MS = 20.0


def connections_up(f: Figures, config: Config) -> Proposal | None:
    """Connections are refused for the limit while the busiest node holds
    (nearly) ``max_connections``, and memory per connection leaves room: half
    as many again, or fewer if that would pass 80 % of the memory budget.
    Silent when the node is below its limit (the refusals are then the
    per-user limit's or memory's: ``connection_limit`` is theirs too)."""
    figures = known(f, "refused_connections_per_s", "connections_node_max", "rss_node_max")
    if figures is None:
        return None
    refused, conns, rss = figures
    p = config["parameters"]
    limit, budget = p["max_connections"], p["memory_budget_mb"] * MIB
    if not (refused >= REFUSED_PER_S and conns >= 0.9 * limit and conns > 0 and rss > 0):
        return None
    # rss / conns over-counts a connection (the base is in it): a safe estimate
    room = math.floor(0.8 * budget * conns / rss)
    to = clamp("max_connections", min(round(limit * 1.5), room))
    if to < 1.1 * limit:
        return None
    return Proposal("connections-up", {"parameters": {"max_connections": to}},
                    {"refused_connections_per_s": refused, "connections_node_max": conns,
                     "memory_share": rss / budget},
                    f"fewer connections refused for the limit; RSS up to about "
                    f"{rss * to / conns / MIB:.0f} MiB of {p['memory_budget_mb']}",
                    margin(refused, REFUSED_PER_S))


def memory_budget_up(f: Figures, config: Config) -> Proposal | None:
    """Publishes are refused for backpressure while the largest node's RSS
    sits at the budget and the send queues are nearly empty: the budget is
    below this load's working set, so a quarter more, or more where the RSS
    needs it to sit at ``BUDGET_HEADROOM`` of the new budget (under the 90 %
    where backpressure releases, with room). Silent when the
    queues hold memory (slow clients: a larger budget would let them grow).
    The figures do not show the host's memory: the admin must know it fits."""
    figures = known(f, "refused_publishes_per_s", "rss_node_max", "queued_bytes_max")
    if figures is None:
        return None
    refused, rss, queued = figures
    p = config["parameters"]
    budget = p["memory_budget_mb"] * MIB
    if not (refused >= REFUSED_PER_S and rss >= 0.85 * budget and queued < 0.05 * budget):
        return None
    # a quarter more, or enough that the RSS seen is BUDGET_HEADROOM of it (a
    # quarter more of a budget the node was already 22 % over left it over)
    fits = math.ceil(rss / BUDGET_HEADROOM / MIB)
    to = clamp("memory_budget_mb", max(round(p["memory_budget_mb"] * 1.25), fits))
    if to == p["memory_budget_mb"]:
        return None
    return Proposal("memory-budget-up", {"parameters": {"memory_budget_mb": to}},
                    {"refused_publishes_per_s": refused, "memory_share": rss / budget,
                     "queued_share": queued / budget},
                    f"publishes no longer refused for memory; the node may hold "
                    f"{to - p['memory_budget_mb']} MiB more: only where the host has it",
                    margin(refused, REFUSED_PER_S))


def pool_wait(f: Figures, config: Config) -> Proposal | None:
    """Checkouts wait for a database connection several statement times or
    more (``POOL_WAIT_FACTOR``; at least ``POOL_WAIT_MS``): the pool is short,
    not the database. Relative, because under contention statements slow
    too: an absolute bound on them kept the rule silent where waits were ten
    to fifty statement times. The pool's size is set at start-up
    only (an engine is not rebuilt live), so this proposes the nearest live
    lever: twice the cache entries, where the entry bound evicts values that
    are read again, so fewer reads need a connection. Silent when statements
    are slow (the database is the bottleneck: more connections would queue
    there), when evictions by the entry bound are few, and below a hit rate of
    0.7 (cache-grow proposes the same change there). Slow statements are
    those averaging ``SLOW_STATEMENT_MS`` or more, or a wait of fewer than
    ``POOL_WAIT_FACTOR`` statement times."""
    figures = known(f, "pool_wait_ms", "pool_checkouts", "db_query_ms", "cache_hit_rate",
                    "cache_lookups", "cache_misses", "cache_evictions_lru")
    share = memory_share(f, config)
    if figures is None or share is None:
        return None
    wait, checkouts, query_ms, rate, lookups, misses, lru = figures
    p = config["parameters"]
    if not (checkouts >= 100 and wait >= POOL_WAIT_MS and wait >= POOL_WAIT_FACTOR * query_ms
            and query_ms < SLOW_STATEMENT_MS):
        return None
    if not (lookups >= MIN_LOOKUPS and 0.7 <= rate < 0.95 and misses > 0
            and lru >= 0.2 * misses and share < 0.6 and p["cache_entries"] > 0):
        return None
    to = clamp("cache_entries", p["cache_entries"] * 2)
    if to == p["cache_entries"]:
        return None
    size = f.get("pool_size")
    restart = (f"; DB_POOL_SIZE {size:g} -> {math.ceil(size * 1.5)} at the next restart "
               "if waits stay" if size else "")
    return Proposal("pool-wait", {"parameters": {"cache_entries": to}},
                    {"pool_wait_ms": wait, "db_query_ms": query_ms, "cache_hit_rate": rate,
                     "lru_share_of_misses": lru / misses},
                    "less time waiting for database connections: fewer reads need one, "
                    f"for some memory{restart}",
                    margin(wait, max(POOL_WAIT_MS, POOL_WAIT_FACTOR * query_ms)))


def cache_misses_expire(f: Figures) -> bool:
    """Most cache evictions are expiries, they are a fifth of the misses or
    more, and writes invalidate fewer values than expire: a longer TTL, not
    more entries, keeps values until they are read again."""
    figures = known(f, "cache_evictions_ttl", "cache_evictions_lru", "cache_evictions_bytes",
                    "cache_invalidations", "cache_misses")
    if figures is None:
        return False
    ttl, lru, by_bytes, invalidated, misses = figures
    return (ttl > 0 and ttl >= 0.5 * (ttl + lru + by_bytes) and ttl >= 0.2 * misses
            and ttl > invalidated)


def cache_ttl_up(f: Figures, config: Config) -> Proposal | None:
    """The hit rate is low, the misses are values that expired (not ones a
    write invalidated, nor ones the bounds pushed out), and memory has room:
    twice the TTL."""
    figures = known(f, "cache_hit_rate", "cache_lookups")
    share = memory_share(f, config)
    if figures is None or share is None:
        return None
    rate, lookups = figures
    p = config["parameters"]
    if not (lookups >= MIN_LOOKUPS and rate < 0.7 and share < 0.6 and p["cache_entries"] > 0
            and cache_misses_expire(f)):
        return None
    to = clamp("cache_ttl_s", p["cache_ttl_s"] * 2)
    if to == p["cache_ttl_s"]:
        return None
    evictions = known(f, "cache_evictions_ttl", "cache_evictions_lru", "cache_evictions_bytes")
    if evictions is None:  # not reached: cache_misses_expire found them known
        return None
    ttl, lru, by_bytes = evictions
    return Proposal("cache-ttl-up", {"parameters": {"cache_ttl_s": to}},
                    {"cache_hit_rate": rate, "ttl_share_of_evictions":
                     ttl / (ttl + lru + by_bytes), "memory_share": share},
                    "a higher hit rate: values live until they are read again, for "
                    "some memory", margin(rate, 0.7))


def compression_down(f: Figures, config: Config) -> Proposal | None:
    """Batches average just under the compression threshold (a quarter of it
    or more) while much is delivered and the CPU has room: half the
    threshold, so more of them go compressed to clients that take deflate.
    Silent when the CPU is busy (deflating costs CPU), when batches are far
    below the threshold, and at 1 KiB (compression is off at 0)."""
    figures = known(f, "batch_bytes_mean", "delivered_bytes_per_s", "cpu_node_max")
    if figures is None:
        return None
    size, bandwidth, cpu = figures
    threshold = config["parameters"]["compression_min_bytes"]
    if not (threshold > COMPRESSION_FLOOR and threshold / 4 <= size < threshold
            and bandwidth >= BANDWIDTH and cpu < 0.6):
        return None
    to = clamp("compression_min_bytes", max(COMPRESSION_FLOOR, threshold // 2))
    return Proposal("compression-down", {"parameters": {"compression_min_bytes": to}},
                    {"batch_bytes_mean": size, "delivered_bytes_per_s": bandwidth,
                     "cpu_node_max": cpu},
                    "fewer bytes on the wire to clients that take deflate, for some CPU",
                    margin(bandwidth, BANDWIDTH))


LEVER_RULES: dict[str, Callable[[Figures, Config], Proposal | None]] = {
    "connections-up": connections_up,
    "memory-budget-up": memory_budget_up,
    "pool-wait": pool_wait,
    "cache-ttl-up": cache_ttl_up,
    "compression-down": compression_down,
}
