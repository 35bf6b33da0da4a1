"""``bench tuning``'s scenarios: for each recommendation rule
(service/domain/advice.py), the node's start-up settings and the load that
put it into the rule's condition, and the figure the rule promises to move
(the same inputs the rules read: ``InfluxAnalysisReader.health_inputs``).

Each condition, and how the load meets it:

- ``cache-grow`` (hit rate < 0.7 of 100+ lookups, RSS < 60 % of the budget):
  unread counts of 500 users read at random, ~150/s, through a per-user
  cache of 200 entries (CACHE_ENTRIES=200): the hit rate settles near 0.5
  (with 360 users it was 0.70, just over the threshold). Twice the entries
  hold most of the working set.
- ``batch-timeout-up`` (mean batch < 1/4 of batch_size, entries wait >= 80 %
  of batch_timeout_ms, >= 0.6 of a core busy): 160 publishes/s to 10
  connected users in turn, one every 62.5 ms to each: with a 50 ms timeout
  each goes alone after waiting the whole timeout; with 75 ms two share a
  frame. The publishes are what keep the CPU busy: 16 broadcasts/s to 500
  users (8,000 deliveries/s) used 0.15 of a core, and more receivers would
  need more than this machine's two cores for the Node clients; 160
  publishes/s used under 0.3, and still 0.28 with Python's collector at its
  most eager (GC_GEN0_THRESHOLD=100, GC_FREEZE=0, as the scenario starts the
  node now). Batches were 1.0 entry and waited 52 ms: only the CPU is short.
- ``level-up`` (< 0.3 of a core, p99 > longest batch wait + 20 ms): at
  ``conservative``, bursts of 100 high-priority publishes to 100 users once a
  second; group commit takes 10 a transaction (WRITE_BATCH_SIZE of the level),
  so the last of a burst waits for ten commits. ``balanced`` takes 50.
- ``burst-down`` (publishes throttled and ``slow_consumer`` drops): a burst
  of 200 ``low`` publishes of 8 KB a second, to one of 5 users in turn, past
  the throttle's burst of 100, with the ``low`` rate at 20/s
  (THROTTLE=low=20:100) so that a burst is throttled and each user's bucket
  is full again by its next burst (5 s later): the burst is what decides how
  many get in. Each user (a raw websocket with a 4 KiB receive buffer) stops
  reading for 3 s on a burst's first batch, then reads what waited; the send
  queue is 640,000 bytes (SEND_QUEUE_MAX_BYTES), between what 75 and 100
  entries of 8 KB come to, so a burst of 100 overflows it and the node
  closes the user as a slow consumer. One entry a batch (BATCH_SIZE=1): the
  queue counts whole frames, and with 50 entries a frame (400 KB) one of the
  two frames of a burst was being written, the other under the bound, and
  nobody was closed (2026-12-05, SEND_QUEUE_MAX_BYTES=680000). **Not yet
  met**: with one entry a batch nobody was closed either: nothing waited in
  the node's send queue (queued_bytes_max 0, p99 6.9 ms), so the kernel's
  buffers took each 800 KB burst while the client stalled (the node's send
  buffer grows to tcp_wmem's 4 MiB). The e2e slow-consumer tests flood 3.6
  MB; a burst here would need to be several MB. Closed, it comes back at once. Before
  (2026-12-05) the users left and came back every 0.5 s: those drops were
  ``disconnected``, which a throttle does not cause, and did not fall.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench import tuning_load as load
from bench.tuning_load import Load

Figure = Callable[[dict], float | None]


def cpu_ms_per_1k(f: dict) -> float | None:
    """CPU time of the busiest serving process per 1,000 deliveries, ms."""
    cpu, rate = f.get("cpu_node_max"), f.get("delivered_per_s")
    return None if cpu is None or not rate else cpu / rate * 1e6


@dataclass(frozen=True)
class Scenario:
    rule: str
    env: dict[str, str]
    start: Callable[[str], Load]
    figure: str  # what the rule promised to move
    measure: Figure
    better: int  # +1: the promise is that it rises; -1: that it falls
    slices: int = 6  # of each window, for the spread
    extra: dict[str, Figure] = field(default_factory=dict)  # shown, not judged
    prepare: Callable[[], dict[str, str]] | None = None  # more env, made per run


def fig(key: str) -> Figure:
    return lambda f: f.get(key)


def _bursts_to_stalling_users(url: str) -> load.Together:
    from bench.tuning_clients import stalling_receivers

    held = stalling_receivers(url, load.users("bu", 5), stall_s=3.0)
    return load.Together(held, load.user_bursts(url, receivers=0, per_burst=200, period_s=1.0,
                                                priority="low", size=8000, spread_users=False,
                                                names=load.users("bu", 5)))


SCENARIOS = [
    Scenario("cache-grow", {"CACHE_ENTRIES": "200"},
             lambda url: load.unread_readers(url, keys=500, per_tick=15, period_s=0.1),
             "cache_hit_rate", lambda f: f.get("cache_hit_rate"), +1),
    Scenario("burst-down", {"THROTTLE": "low=20:100", "SEND_QUEUE_MAX_BYTES": "640000",
                            "BATCH_SIZE": "1"},
             _bursts_to_stalling_users, "slow_consumer_drops_per_s",
             fig("slow_consumer_drops_per_s"), -1,
             extra={"throttled_per_s": fig("throttled_per_s"), "drops_per_s": fig("drops_per_s")}),
    Scenario("level-up", {"OPTIMIZATION_LEVEL": "conservative"},
             lambda url: load.user_bursts(url, receivers=100, per_burst=100, period_s=1.0,
                                          priority="high"),
             "delivery_p99_ms", lambda f: f.get("delivery_p99_ms"), -1,
             extra={"cpu_node_max": fig("cpu_node_max"), "wait_p99_ms": fig("wait_p99_ms")}),
    Scenario("batch-timeout-up", {"GC_GEN0_THRESHOLD": "100", "GC_FREEZE": "0"},
             lambda url: load.round_robin(url, receivers=10, per_second=160.0),
             "cpu_ms_per_1k_deliveries", cpu_ms_per_1k, -1, slices=3,
             extra={"mean_batch": lambda f: f.get("mean_batch"),
                    "delivery_p99_ms": lambda f: f.get("delivery_p99_ms")}),
]


def by_rule() -> dict[str, Scenario]:
    from bench.tuning_levers import LEVER_SCENARIOS  # it builds on this module
    return {s.rule: s for s in SCENARIOS + LEVER_SCENARIOS}


def bad_change_load(url: str) -> Load:
    """The load under the deliberately bad change: 40 publishes/s to 50
    connected users, so p99 follows batch_timeout_ms."""
    return load.trickle(url, receivers=50, per_second=40.0)


BAD_CHANGE = {"parameters": {"batch_timeout_ms": 1000}}  # the tunable's maximum
