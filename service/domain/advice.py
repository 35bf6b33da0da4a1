"""Recommendation rules: documented conditions over the cluster's recent
figures (``InfluxAnalysisReader.health_inputs``) and the live config, each
proposing one exact change. Pure.

A rule that fires gives a ``Proposal``: its id is the rule and the change
(``cache-grow:cache_entries=10000``), so the same advice is issued once and a
new one is issued when the proposed value moves. The rules for the levers
the older design named (connections, memory, pool, cache TTL, compression)
are in ``advice_levers``; ``RULES`` lists them all. docs/operations.md lists
the rules; a test checks it names each one.
"""

from __future__ import annotations

from collections.abc import Callable

from service.domain.advice_base import MIB, Config, Figures, Proposal, memory_share
from service.domain.advice_base import clamp as _clamp
from service.domain.advice_base import margin as _margin
from service.domain.advice_levers import LEVER_RULES, cache_misses_expire
from service.domain.batching import longest_wait_ms
from service.domain.health import MIN_LOOKUPS, p99_target_ms
from service.domain.levels import LEVELS
from service.domain.report import METRIC
from service.domain.token_bucket import Rate, format_rates, parse_rates

__all__ = ["PROMISES", "RULES", "Proposal", "propose"]
LEVEL_ORDER = tuple(LEVELS)  # conservative, balanced, aggressive, maximum


# A node under this share of a core is mostly idle: level-down spends the idle
# CPU on latency; at or over it, batch-timeout-up saves CPU for some latency.
# Not higher: a node on SQLite fell behind before its CPU got there
# (docs/operations.md).
IDLE_CPU = 0.25


def _p99_target(config: Config) -> float:
    return p99_target_ms(config["parameters"]["batch_timeout_ms"])


def batch_timeout_up(f: Figures, config: Config) -> Proposal | None:
    """Batches flush by timeout at small sizes while the CPU is busy: wait
    longer, so each frame carries more (cheaper per delivery). Measured
    weak where the publishes' own work is most of the CPU: frames of two
    entries instead of one gave 3.7 % less CPU per delivery
    (docs/operations.md)."""
    p = config["parameters"]
    batch, wait, cpu = f.get("mean_batch"), f.get("wait_p50_ms"), f.get("cpu_node_max")
    if batch is None or wait is None or cpu is None:
        return None
    if not (batch < 0.25 * p["batch_size"] and wait >= 0.8 * p["batch_timeout_ms"]
            and cpu >= IDLE_CPU):
        return None
    to = _clamp("batch_timeout_ms", round(p["batch_timeout_ms"] * 1.5))
    if to == p["batch_timeout_ms"]:
        return None
    return Proposal("batch-timeout-up", {"parameters": {"batch_timeout_ms": to}},
                    {"mean_batch": batch, "wait_p50_ms": wait, "cpu_node_max": cpu},
                    f"larger batches, less CPU per delivery; p99 up to "
                    f"{to - p['batch_timeout_ms']:g} ms higher", _margin(cpu, IDLE_CPU))


def cache_grow(f: Figures, config: Config) -> Proposal | None:
    """The hit rate is low and the memory budget has room: twice the entries."""
    p = config["parameters"]
    rate, share = f.get("cache_hit_rate"), memory_share(f, config)
    if rate is None or share is None or (f.get("cache_lookups") or 0) < MIN_LOOKUPS:
        return None
    if not (rate < 0.7 and share < 0.6 and p["cache_entries"] > 0):
        return None
    if cache_misses_expire(f):
        return None  # the values expire before they are read again: cache-ttl-up
    to = _clamp("cache_entries", p["cache_entries"] * 2)
    if to == p["cache_entries"]:
        return None
    return Proposal("cache-grow", {"parameters": {"cache_entries": to}},
                    {"cache_hit_rate": rate, "memory_share": share},
                    "a higher hit rate and fewer database reads, for some memory",
                    _margin(rate, 0.7))


def burst_down(f: Figures, config: Config) -> Proposal | None:
    """Publishes are throttled and clients are closed for reading too slowly
    in the same window: bursts let through more than those clients keep up
    with, so a quarter less. Only ``slow_consumer`` drops count: a
    ``disconnected`` drop (a batch still waiting when its client left) and a
    ``handoff_error`` (a failed hand-off) are not the burst's doing, and a
    smaller burst did not lower them (docs/operations.md)."""
    throttled, drops = f.get("throttled_per_s"), f.get("slow_consumer_drops_per_s")
    if not throttled or not drops:
        return None
    rates = parse_rates(config["parameters"]["throttle"], {})
    lowered = {prio: None if r is None else Rate(r.per_second, max(1.0, round(r.burst * 0.75)))
               for prio, r in rates.items()}
    to = format_rates(lowered)
    if to == format_rates(rates):
        return None
    return Proposal("burst-down", {"parameters": {"throttle": to}},
                    {"throttled_per_s": throttled, "slow_consumer_drops_per_s": drops},
                    "fewer clients closed for reading slowly after bursts; publishers "
                    "see 429 sooner", _margin(drops, 0.0))


# level-down's premise: the live entries' batch wait p99 is at least this share
# of delivery p99 (the latency is spent in the batches, not before them) and
# at most LATE times the longest wait the level means (the batches flush on
# time: waits past that are the node flushing late, not the batching).
BATCHING_SHARE = 0.5
LATE = 1.5
# ...and the node fits the lower level's limits with room: its connections
# and its memory at most these shares of that level's limit and budget.
LOWER_LIMIT_SHARE, LOWER_BUDGET_SHARE = 0.8, 0.6


def level_down(f: Figures, config: Config) -> Proposal | None:
    """The CPU is mostly idle while latency misses its target, and the
    latency is the batching's own: the p99 of live entries' wait in their
    batch is half of delivery p99 or more, and within 1.5 times the longest
    wait the level means (LATE). Then the level below, whose batches wait half as long
    (for more CPU per delivery, which is idle), if the node's connections and
    memory fit its lower limits with room. Silent otherwise: a shorter wait
    shortens neither latency from before the batches (waiting for database
    commits) nor batches flushed late (a node whose loop was held up).
    This rule was ``level-up`` until the level above was measured to raise
    p99 (its batches wait twice as long; docs/operations.md)."""
    cpu, p99, wait = f.get("cpu_node_max"), f.get("delivery_p99_ms"), f.get("wait_p99_ms")
    if cpu is None or p99 is None or wait is None:
        return None
    index = LEVEL_ORDER.index(config["level"])
    if not (cpu < IDLE_CPU and p99 > _p99_target(config)) or index == 0:
        return None
    longest = longest_wait_ms(config["parameters"]["batch_timeout_ms"])
    if not BATCHING_SHARE * p99 <= wait <= LATE * longest:
        return None
    lower = LEVELS[LEVEL_ORDER[index - 1]]
    connections, rss = f.get("connections_node_max"), f.get("rss_node_max")
    if connections is None or rss is None:
        return None
    if not (connections <= LOWER_LIMIT_SHARE * lower.max_connections
            and rss <= LOWER_BUDGET_SHARE * lower.memory_budget_mb * MIB):
        return None
    return Proposal("level-down", {"level": LEVEL_ORDER[index - 1]},
                    {"cpu_node_max": cpu, "delivery_p99_ms": p99, "wait_p99_ms": wait},
                    "lower latency (batches wait half as long) for the idle CPU; the "
                    "lower level's limits and budget", _margin(p99, _p99_target(config)))


RULES: dict[str, Callable[[Figures, Config], Proposal | None]] = {
    "batch-timeout-up": batch_timeout_up,
    "cache-grow": cache_grow,
    "burst-down": burst_down,
    "level-down": level_down,
    **LEVER_RULES,
}

# What each rule's change should move, in the impact job's window summary
# (``report.METRICS``, which says which way is better). batch-timeout-up's
# promise (CPU per delivery) is not in the summary.
PROMISED_FIGURE: dict[str, str] = {
    "cache-grow": "cache_hit_rate",
    "burst-down": "slow_consumer_drops_per_s",
    "level-down": "delivery_p99_ms",
    "connections-up": "refused_connections_per_s",
    "memory-budget-up": "refused_publishes_per_s",
    "pool-wait": "pool_waiting",
    "cache-ttl-up": "cache_hit_rate",
    "compression-down": "wire_ratio",
}
# rule -> (figure, "up" or "down")
PROMISES: dict[str, tuple[str, str]] = {
    rule: (figure, METRIC[figure].better) for rule, figure in PROMISED_FIGURE.items()}


def propose(figures: Figures, config: Config) -> list[Proposal]:
    """Every rule that fires on these figures."""
    return [p for rule in RULES.values() if (p := rule(figures, config)) is not None]
