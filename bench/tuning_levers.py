"""``bench tuning``'s scenarios for the lever rules
(service/domain/advice_levers.py), each driving the node into its rule's
condition:

- ``connections-up`` (connections refused for the limit while the node holds
  90 % of it): MAX_CONNECTIONS=50, 50 users connected (Node), 20 more trying
  to connect every 2 s (python-socketio). Half as many again lets them in.
- ``memory-budget-up`` (publishes refused for memory, RSS at 85 % of the
  budget or more, queues empty): MEMORY_BUDGET_MB=76, under the ~80-85 MiB
  an idle node holds here, and 20 low-priority publishes/s (refused over the
  budget) to offline users. A quarter more (95) was above that RSS on
  2026-12-05 until a run where the node held 92.7 MiB: refusals went on
  (20.0/s before and after). The rule now proposes enough for the RSS to
  be 3/4 of the new budget at most (124 MiB there).
- ``pool-wait`` (checkouts wait >= 10 ms and >= 5 statement times,
  statements < 20 ms, hit rate 0.7-0.95 with LRU evictions): PostgreSQL
  with a pool of one connection (DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0),
  unread counts of 240 users read ~300/s, 32 at once, through 200 cache
  entries. Twice the entries: fewer misses, fewer checkouts to wait for.
  Alone, at 60-300 reads/s, checkouts waited 1.3-7.6 ms (under the old
  floor of 10 ms; at ~300/s 7-8 statement times, which the relative
  condition takes); beside other scenarios they waited 60-370 ms with
  statements of 5-7 ms (over the old absolute 5 ms).
- ``cache-ttl-up`` (hit rate < 0.7, misses mostly expiries): CACHE_TTL_S=2
  and unread counts of 300 users read ~150/s: each is read every 2 s on
  average, so about e^-1 of reads find it expired. 4 s: about e^-2.
- ``compression-down`` (batches 1/4 to 1 of the threshold, >= 1 MB/s
  delivered, CPU < 0.6 of a core): 10 broadcasts/s of ~2.5 KB to 40 users
  (Node) and 20 that take deflate (python-socketio). At 4096 B nothing is
  compressed; at 2048 every batch to the deflate clients is.
"""

from __future__ import annotations

import atexit
import time

import psycopg2

from bench import tuning_clients as clients
from bench import tuning_load as load
from bench.tuning_scenarios import Scenario, fig

PG = "postgresql://postgres@127.0.0.1:5432"


def fresh_postgres() -> dict[str, str]:
    """A database of its own on the project's PostgreSQL, dropped at exit."""
    name = f"tuning_pool_{int(time.time())}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    atexit.register(drop)
    return {"DATABASE_URL": f"{PG}/{name}"}


def _connections(url: str) -> load.Together:
    return load.Together(load.idle(url, 50),
                         clients.connect_attempts(url, [f"extra{i}" for i in range(20)], 2.0))


def _compression(url: str) -> load.Together:
    held = clients.deflate_receivers(url, [f"deflate{i}" for i in range(20)])
    return load.Together(held, load.broadcasts(url, receivers=40, per_second=10.0, procs=1,
                                               size=2500))


LEVER_SCENARIOS = [
    Scenario("connections-up", {"MAX_CONNECTIONS": "50"}, _connections,
             "refused_connections_per_s", fig("refused_connections_per_s"), -1,
             extra={"connections_node_max": fig("connections_node_max")}),
    Scenario("memory-budget-up", {"MEMORY_BUDGET_MB": "76"},
             lambda url: load.publishes(url, per_second=20.0, priority="low"),
             "refused_publishes_per_s", fig("refused_publishes_per_s"), -1,
             extra={"rss_node_max": fig("rss_node_max")}),
    Scenario("pool-wait", {"DB_POOL_SIZE": "1", "DB_MAX_OVERFLOW": "0", "CACHE_ENTRIES": "200"},
             lambda url: load.unread_readers(url, keys=240, per_tick=30, period_s=0.1),
             "pool_wait_ms", fig("pool_wait_ms"), -1, prepare=fresh_postgres,
             extra={"cache_hit_rate": fig("cache_hit_rate"),
                    "pool_waiting": fig("pool_waiting"), "db_query_ms": fig("db_query_ms")}),
    Scenario("cache-ttl-up", {"CACHE_TTL_S": "2"},
             lambda url: load.unread_readers(url, keys=300, per_tick=15, period_s=0.1),
             "cache_hit_rate", fig("cache_hit_rate"), +1),
    Scenario("compression-down", {}, _compression,
             "wire_ratio", fig("wire_ratio"), -1,
             extra={"batch_bytes_mean": fig("batch_bytes_mean"),
                    "cpu_node_max": fig("cpu_node_max")}),
]
