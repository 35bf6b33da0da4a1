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
  of batch_timeout_ms, >= 0.25 of a core busy): 320 publishes/s to 20
  connected users in turn, one every 62.5 ms to each: with a 50 ms timeout
  each goes alone after waiting the whole timeout; with 75 ms two share a
  frame. The publishes are what keep the CPU busy (GC_GEN0_THRESHOLD=100,
  GC_FREEZE=0: Python's collector at its most eager). 320/s used 0.27-0.31
  of a core with p99 near 200 ms; 380/s and 400/s (0.34 and 0.59 of a core)
  put the node behind (p99 of 14-40 s), so 0.6, the rule's first threshold,
  was out of reach of a node that keeps up on this machine.
- ``level-down`` (< 0.25 of a core, p99 > longest batch wait + 20 ms, the
  batch wait p99 at least half of p99 and at most 1.5 times the longest
  wait, room under the lower level's limits): at the default ``balanced``,
  40 ``low`` publishes/s to 50 connected users, with a group-commit window
  of 30 ms (WRITE_BATCH_WINDOW_MS=30, a setting that trades latency for
  fewer transactions, and that a level leaves as it is): an entry waits
  ~30 ms for its commit, then twice the 50 ms timeout in its batch, so p99
  is over the 120 ms target and the batching is most of it.
  ``conservative``'s batches wait half as long. The first scenario, bursts
  of 100 ``low`` publishes to 100 users once a second, made the rule fire
  (then with the wait up to twice the longest) on batches that flushed
  late (wait p99 183-206 ms for a 100 ms longest wait), and the lower level
  cut p99 by 10 % only (192 -> 171 ms, not past the spread): the flushes
  were late by the loop's doing, which a level does not shorten.
- ``burst-down`` (publishes throttled and ``slow_consumer`` drops): a burst
  of 100 ``low`` publishes of 16 KB a second, to one of 10 users in turn,
  past the throttle's burst of 50, with the ``low`` rate at 5/s
  (THROTTLE=low=5:50), so that a burst is throttled and each user's bucket
  is full again by its next burst (10 s later): the burst is what decides
  how many get in. Each user (a raw websocket with a 4 KiB receive buffer)
  stops reading for 3 s on a burst's first batch, then reads what waited,
  and acknowledges what it reads. The kernel keeps at most 128 KiB unsent
  (SOCKET_UNSENT_MAX_BYTES=131072, the default in the run of 2026-12-05,
  off by default since) and the send queue is 600,000 bytes
  (SEND_QUEUE_MAX_BYTES): ~52 entries (50, and what the bucket refills
  during the burst) come to ~840 KB and overflow it by ~100 KB; after the
  change, ~40 come to ~650 KB, ~90 KB under it. One entry a batch
  (BATCH_SIZE=1): the queue counts whole frames. Closed, a user comes back
  at once. Before SOCKET_UNSENT_MAX_BYTES the kernel's send buffer took
  each 800 KB burst whole and nobody was closed; before the acks, each
  reconnect replayed everything the user had ever missed, and the replay,
  not the burst, closed it (with no drops counted). With bursts of 200
  entries of 8 KB to 5 users at 20/s, a burst took long enough for the
  bucket to refill by a third of the burst meanwhile, and whether the
  smaller burst stayed under the bound depended on the other lane: drops
  0.52 -> 0.03/s in one run, 0.48 -> 0.33/s in the next.
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

    held = stalling_receivers(url, load.users("bu", 10), stall_s=3.0)
    return load.Together(held, load.user_bursts(url, receivers=0, per_burst=100, period_s=1.0,
                                                priority="low", size=16000, spread_users=False,
                                                names=load.users("bu", 10)))


SCENARIOS = [
    Scenario("cache-grow", {"CACHE_ENTRIES": "200"},
             lambda url: load.unread_readers(url, keys=500, per_tick=15, period_s=0.1),
             "cache_hit_rate", lambda f: f.get("cache_hit_rate"), +1),
    Scenario("burst-down", {"THROTTLE": "low=5:50", "SEND_QUEUE_MAX_BYTES": "600000",
                            "BATCH_SIZE": "1", "SOCKET_UNSENT_MAX_BYTES": "131072"},
             _bursts_to_stalling_users, "slow_consumer_drops_per_s",
             fig("slow_consumer_drops_per_s"), -1,
             extra={"throttled_per_s": fig("throttled_per_s"), "drops_per_s": fig("drops_per_s")}),
    Scenario("level-down", {"WRITE_BATCH_WINDOW_MS": "30"},
             lambda url: load.trickle(url, receivers=50, per_second=40.0, priority="low"),
             "delivery_p99_ms", lambda f: f.get("delivery_p99_ms"), -1,
             extra={"cpu_node_max": fig("cpu_node_max"), "wait_p99_ms": fig("wait_p99_ms")}),
    Scenario("batch-timeout-up", {"GC_GEN0_THRESHOLD": "100", "GC_FREEZE": "0"},
             lambda url: load.round_robin(url, receivers=20, per_second=320.0),
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
