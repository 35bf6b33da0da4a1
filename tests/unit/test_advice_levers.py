"""The lever rules (connections, memory budget, pool, cache TTL, compression):
each fires on its evidence, stays silent just below each threshold and when
another explanation fits, and keeps its change within the tunable's range;
and the impact verdict judges what each promises."""

import pytest

from service.domain import advice
from service.domain.impact import IMPROVED, NEUTRAL, REGRESSED, judge
from service.domain.tuning import TUNABLES, preset

MIB = 2**20
BALANCED = {"level": "balanced", "parameters": preset("balanced")}  # 15,000 conns, 512 MiB
QUIET = {"delivered_per_s": 100.0, "delivery_p99_ms": 30.0, "drops_per_s": 0.0,
         "cache_hit_rate": 0.95, "rss_bytes": 100e6, "published_per_s": 2.0,
         "throttled_per_s": 0.0, "mean_batch": 30.0, "wait_p50_ms": 10.0,
         "connections_node_max": 100.0, "rss_node_max": 100 * MIB, "cpu_node_max": 0.4,
         "db_query_ms": 2.0, "db_slow": 0.0, "telemetry_dropped": 0.0,
         "spool_bytes": 0.0, "job_errors": 0.0, "cache_lookups": 5000.0,
         "refused_connections_per_s": 0.0, "refused_publishes_per_s": 0.0,
         "pool_wait_ms": 0.1, "wire_ratio": 1.0, "batch_bytes_mean": 500.0,
         "delivered_bytes_per_s": 50_000.0, "pool_checkouts": 2000.0,
         "queued_bytes_max": 10_000.0, "pool_size": 10.0, "cache_misses": 250.0,
         "cache_evictions_lru": 0.0, "cache_evictions_ttl": 0.0, "cache_evictions_bytes": 0.0,
         "cache_invalidations": 100.0}

# Each rule's evidence over QUIET (balanced level)
EVIDENCE = {
    "connections-up": {"refused_connections_per_s": 0.5, "connections_node_max": 15_000.0,
                       "rss_node_max": 200 * MIB},
    "memory-budget-up": {"refused_publishes_per_s": 2.0, "rss_node_max": 480 * MIB,
                         "queued_bytes_max": 1 * MIB},
    "pool-wait": {"pool_wait_ms": 40.0, "pool_checkouts": 5000.0, "db_query_ms": 1.0,
                  "cache_hit_rate": 0.8, "cache_misses": 1000.0,
                  "cache_evictions_lru": 600.0},
    "cache-ttl-up": {"cache_hit_rate": 0.4, "cache_misses": 3000.0,
                     "cache_evictions_ttl": 2000.0, "cache_evictions_lru": 100.0,
                     "cache_invalidations": 50.0},
    "compression-down": {"batch_bytes_mean": 2500.0, "delivered_bytes_per_s": 3e6,
                         "cpu_node_max": 0.3},
}

# Just short of a threshold, one figure at a time
BELOW = [
    ("connections-up", "refused_connections_per_s", 0.099),
    ("connections-up", "connections_node_max", 13_499.0),      # < 90 % of 15,000
    ("connections-up", "rss_node_max", 400 * MIB),             # x 1.1 would pass 80 %
    ("memory-budget-up", "refused_publishes_per_s", 0.099),
    ("memory-budget-up", "rss_node_max", 0.849 * 512 * MIB),
    ("memory-budget-up", "queued_bytes_max", 0.05 * 512 * MIB),
    ("pool-wait", "pool_wait_ms", 4.9),
    ("pool-wait", "pool_checkouts", 99.0),
    ("pool-wait", "db_query_ms", 8.01),                         # 40 ms < 5 statement times
    ("pool-wait", "cache_evictions_lru", 199.0),               # < 20 % of 1,000 misses
    ("pool-wait", "cache_hit_rate", 0.95),
    ("pool-wait", "cache_lookups", 99.0),
    ("cache-ttl-up", "cache_hit_rate", 0.7),
    ("cache-ttl-up", "cache_evictions_ttl", 599.0),            # < 20 % of 3,000 misses
    ("cache-ttl-up", "cache_lookups", 99.0),
    ("cache-ttl-up", "rss_node_max", 0.6 * 512 * MIB),
    ("compression-down", "batch_bytes_mean", 1023.0),          # < 1/4 of 4,096
    ("compression-down", "batch_bytes_mean", 4096.0),          # compressed already
    ("compression-down", "delivered_bytes_per_s", 999_999.0),
    ("compression-down", "cpu_node_max", 0.6),
]

# Another explanation for the same symptom: the rule stays silent
COMPETING = {
    # refusals while the node is far below its limit: a user's limit, or memory
    "connections-up": {"connections_node_max": 2_000.0},
    # memory held by send queues (slow clients): a bigger budget lets them grow
    "memory-budget-up": {"queued_bytes_max": 100 * MIB},
    # slow statements: the database, not the pool, is the bottleneck
    "pool-wait": {"db_query_ms": 30.0, "pool_wait_ms": 400.0},
    # writes invalidate more values than expire: a longer TTL keeps none longer
    "cache-ttl-up": {"cache_invalidations": 2500.0},
    # a busy CPU: deflating more batches costs CPU it does not have
    "compression-down": {"cpu_node_max": 0.9},
}


def fired(figures, config=BALANCED):
    return {p.rule: p for p in advice.propose({**QUIET, **figures}, config)}


def test_a_quiet_cluster_gets_no_lever_advice():
    assert not set(fired({})) & set(EVIDENCE)


@pytest.mark.parametrize("rule", EVIDENCE)
def test_each_rule_fires_on_its_evidence(rule):
    proposals = fired(EVIDENCE[rule])
    assert rule in proposals, proposals
    proposal = proposals[rule]
    assert 0.5 <= proposal.confidence <= 0.95 and proposal.expected_effect
    payload = proposal.payload()
    assert payload["id"] == proposal.id and payload["evidence"]
    assert rule in advice.PROMISES


@pytest.mark.parametrize(("rule", "figure", "value"), BELOW)
def test_just_below_each_threshold_the_rule_is_silent(rule, figure, value):
    assert rule not in fired({**EVIDENCE[rule], figure: value})


@pytest.mark.parametrize("rule", COMPETING)
def test_a_competing_explanation_keeps_the_rule_silent(rule):
    assert rule not in fired({**EVIDENCE[rule], **COMPETING[rule]})


@pytest.mark.parametrize(("rule", "figure"), [
    ("connections-up", "refused_connections_per_s"), ("memory-budget-up", "queued_bytes_max"),
    ("pool-wait", "cache_evictions_lru"), ("cache-ttl-up", "cache_evictions_ttl"),
    ("compression-down", "batch_bytes_mean")])
def test_an_unknown_figure_is_no_evidence(rule, figure):
    assert rule not in fired({**EVIDENCE[rule], figure: None})


def test_the_changes_are_exact():
    changes = {rule: fired(EVIDENCE[rule])[rule].change["parameters"] for rule in EVIDENCE}
    assert changes == {"connections-up": {"max_connections": 22_500},
                       "memory-budget-up": {"memory_budget_mb": 640},
                       "pool-wait": {"cache_entries": 10_000},
                       "cache-ttl-up": {"cache_ttl_s": 14_400.0},
                       "compression-down": {"compression_min_bytes": 2048}}


def test_a_budget_the_node_is_well_over_grows_until_the_rss_fits_with_room():
    # the bench's node: 76 MiB budget, 92.7 MiB RSS; a quarter more (95) left it
    # refused at the new budget; 0.75 of the new one is the RSS at most
    proposal = fired({**EVIDENCE["memory-budget-up"], "rss_node_max": 92.7 * MIB},
                     with_values(memory_budget_mb=76))
    assert proposal["memory-budget-up"].change["parameters"] == {"memory_budget_mb": 124}


def test_the_connection_limit_grows_only_as_far_as_memory_allows():
    # 300 MiB for 15,000: at that rate 80 % of 512 MiB holds 20,480
    proposal = fired({**EVIDENCE["connections-up"], "rss_node_max": 300 * MIB})
    assert proposal["connections-up"].change["parameters"] == {"max_connections": 20_480}


def with_values(**values):
    return {"level": "balanced", "parameters": {**preset("balanced"), **values}}


@pytest.mark.parametrize(("rule", "name"), [
    ("connections-up", "max_connections"), ("memory-budget-up", "memory_budget_mb"),
    ("pool-wait", "cache_entries"), ("cache-ttl-up", "cache_ttl_s")])
def test_at_the_top_of_its_range_a_rule_proposes_nothing(rule, name):
    top = TUNABLES[name].maximum
    figures = dict(EVIDENCE[rule])
    if rule == "connections-up":
        figures.update(connections_node_max=float(top), rss_node_max=100 * MIB)
    if rule == "memory-budget-up":
        figures.update(rss_node_max=0.9 * top * MIB)
    assert rule not in fired(figures, with_values(**{name: top}))
    near = TUNABLES[name].kind(top * 0.9)
    if rule == "connections-up":
        figures.update(connections_node_max=float(near))
    if rule == "memory-budget-up":
        figures.update(rss_node_max=0.9 * near * MIB)
    if rule in fired(figures, with_values(**{name: near})):
        proposed = fired(figures, with_values(**{name: near}))[rule].change["parameters"][name]
        assert proposed == top  # clamped to the range, not past it


def test_compression_goes_no_lower_than_one_kib_and_not_when_off():
    assert fired({**EVIDENCE["compression-down"], "batch_bytes_mean": 1200.0},
                 with_values(compression_min_bytes=1500))["compression-down"].change == {
        "parameters": {"compression_min_bytes": 1024}}
    for threshold in (1024, 0):
        assert "compression-down" not in fired(
            {**EVIDENCE["compression-down"], "batch_bytes_mean": 600.0},
            with_values(compression_min_bytes=threshold))


def test_expiring_misses_go_to_cache_ttl_up_not_cache_grow():
    rules = fired(EVIDENCE["cache-ttl-up"])
    assert "cache-ttl-up" in rules and "cache-grow" not in rules
    lru = fired({**EVIDENCE["cache-ttl-up"], "cache_evictions_lru": 3000.0})
    assert "cache-grow" in lru and "cache-ttl-up" not in lru


def test_pool_wait_leaves_a_low_hit_rate_to_cache_grow_and_names_the_pool_size():
    low = fired({**EVIDENCE["pool-wait"], "cache_hit_rate": 0.6})
    assert "cache-grow" in low and "pool-wait" not in low
    assert "DB_POOL_SIZE 10 -> 15" in fired(EVIDENCE["pool-wait"])["pool-wait"].expected_effect


@pytest.mark.parametrize(("before", "after", "verdict"), [
    ({"refused_connections_per_s": 0.5}, {"refused_connections_per_s": 0.0}, IMPROVED),
    ({"refused_connections_per_s": 0.5}, {"refused_connections_per_s": 0.3}, NEUTRAL),
    ({"refused_connections_per_s": 0.0}, {"refused_connections_per_s": 2.0}, REGRESSED),
    ({"refused_publishes_per_s": 3.0}, {"refused_publishes_per_s": 0.2}, IMPROVED),
    ({"refused_publishes_per_s": 0.5}, {"refused_publishes_per_s": 3.0}, REGRESSED),
    ({"pool_waiting": 13.6}, {"pool_waiting": 0.5}, IMPROVED),
    ({"pool_waiting": 0.1}, {"pool_waiting": 0.06}, NEUTRAL),     # 0.04 s/s
    ({"cache_hit_rate": 0.5}, {"cache_hit_rate": 0.8}, IMPROVED),
    ({"cache_hit_rate": 0.5}, {"cache_hit_rate": 0.53}, NEUTRAL),
    ({"wire_ratio": 1.0}, {"wire_ratio": 0.6}, IMPROVED),
    ({"wire_ratio": 1.0}, {"wire_ratio": 0.97}, NEUTRAL),
    # a promise kept does not outweigh a regression
    ({"wire_ratio": 1.0, "delivery_p99_ms": 40.0}, {"wire_ratio": 0.5, "delivery_p99_ms": 90.0},
     REGRESSED),
])
def test_impact_judges_what_the_lever_rules_promise(before, after, verdict):
    assert judge(before, after)[0] == verdict


def test_every_promised_figure_is_in_the_window_summary():
    from service.domain.report import METRIC_KEYS

    assert {figure for figure, _ in advice.PROMISES.values()} <= set(METRIC_KEYS)
    assert set(advice.PROMISES) <= set(advice.RULES)
    # each says which way is better, and the judge counts a move of all but p99's
    assert {better for _, better in advice.PROMISES.values()} <= {"up", "down"}
    from service.domain.impact import PROMISED

    judged = {m.key for m in PROMISED}
    assert {figure for figure, _ in advice.PROMISES.values()} - judged == {"delivery_p99_ms"}


@pytest.mark.parametrize(("wait", "query_ms", "fires"), [
    (60.0, 6.0, True),     # measured under contention: waits 60-370 ms, statements 5-7 ms
    (370.0, 7.0, True),
    (29.9, 6.0, False),    # under five statement times
    (7.6, 1.0, True),      # alone: 7.6 ms for statements of ~1 ms
    (4.9, 0.5, False),     # under the floor
    (400.0, 20.0, False),  # statements of 20 ms: the database is slow
])
def test_pool_wait_compares_the_wait_with_the_statement_time(wait, query_ms, fires):
    figures = {**EVIDENCE["pool-wait"], "pool_wait_ms": wait, "db_query_ms": query_ms}
    assert ("pool-wait" in fired(figures)) is fires
