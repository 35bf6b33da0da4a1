"""Storage: notifications persisted per second on real PostgreSQL, group
commit against row-by-row commits, side by side in one run.

Each round appends the same workload twice to a fresh database, in
alternating order: ``batched`` (WriteBatcher at the level's write batch
size; ``aggressive`` by default, 100) and ``row_by_row`` (the same code
with a batch of one, so every publish is its own transaction). Many
publishers at once, each a greenlet that waits for its commit before the
next publish, as HTTP publishers do;
psycopg2 waits through gevent (psycogreen), as in the server. The workload:
targeted publishes to 1-3 of 10,000 users, a broadcast every 50th.

Prints: persist_per_s (batched), row_by_row_per_s, batch_gain, the mean
batch, and the per-round figures.

Then the query cache (``cache_workload``): a Zipf (s = 1.1) workload over
100,000 users, 95 % reads and 5 % publishes, run once through the cached log
and once straight against the SQL log, on the same database and the same
operations. Prints cache_hit_rate and db_query_reduction (statements counted
by a ``before_cursor_execute`` listener) beside the two sides' figures.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import statistics
import sys
import time
import uuid
from dataclasses import replace

import gevent
from psycogreen.gevent import patch_psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from bench.telemetry import paired_median
from service.adapters.database import make_engine
from service.adapters.migrate import migrate
from service.adapters.notification_log import SqlNotificationLog
from service.domain.idempotency import parse_key
from service.domain.levels import LEVELS
from service.domain.model import PublishRequest, utcnow
from service.domain.tuning import preset
from service.service_layer.cache_stats import make_caches
from service.service_layer.cached_log import CachedNotificationLog
from service.service_layer.write_batching import WriteBatcher

PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
SIDES = ("batched", "row_by_row")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def workload(count: int, users: int, seed: int, keys: bool = False) -> list[PublishRequest]:
    """``keys``: each publish carries an Idempotency-Key, stored with it."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        if i % 50 == 0:
            target: dict = {"broadcast": True}
        else:
            target = {"user_ids": [f"u{rng.randrange(users)}" for _ in range(rng.randint(1, 3))]}
        bodies.append({**target, "category": "bench", "payload": {"i": i, "text": "x" * 100}})
    requests = [PublishRequest.from_body(b) for b in bodies]
    if keys:
        requests = [replace(r, key=parse_key(f"s{seed}-{i}", b))
                    for i, (r, b) in enumerate(zip(requests, bodies, strict=True))]
    return requests


class ScratchDatabase:
    """A fresh PostgreSQL database named for its benchmark, dropped on exit:
    each statement on a new connection, the drop retried, as a long run may
    outlive the server's connections (a restart of PostgreSQL during a soak
    was seen here). A drop that still fails is told, not raised."""

    DROP_ATTEMPTS = 5

    def __init__(self, admin_url: str, prefix: str = "bench_storage") -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.url = admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    def __enter__(self) -> str:
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        return self.url

    def __exit__(self, *exc: object) -> None:
        for attempt in range(1, self.DROP_ATTEMPTS + 1):
            try:
                with self.admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
                break
            except SQLAlchemyError as exc:
                if attempt == self.DROP_ATTEMPTS:
                    log(f"could not drop database {self.name}, drop it by hand: {exc}")
                else:
                    gevent.sleep(2.0)
        self.admin.dispose()


class CountingLog:
    """The log, counting its transactions."""

    def __init__(self, inner: SqlNotificationLog) -> None:
        self.inner = inner
        self.batches = 0

    def append_many(self, drafts: list) -> list:
        self.batches += 1
        return self.inner.append_many(drafts)


def persist(side: str, requests: list[PublishRequest], args: argparse.Namespace) -> dict:
    """Append every request through a WriteBatcher with ``args.publishers``
    greenlets; the rate runs from the first append to the last commit."""
    with ScratchDatabase(args.admin_url) as url:
        engine = make_engine(url, pool_size=args.pool)
        try:
            migrate(engine)
            notification_log = CountingLog(SqlNotificationLog(engine))
            batch = 1 if side == "row_by_row" else args.batch
            batcher = WriteBatcher(notification_log, lambda a: None, max_batch=batch)
            share = [requests[k::args.publishers] for k in range(args.publishers)]

            def publisher(k: int) -> None:
                for i, request in enumerate(share[k]):
                    batcher.append(request, f"{k}-{i}", utcnow())

            started = time.perf_counter()
            gevent.joinall([gevent.spawn(publisher, k) for k in range(args.publishers)],
                           raise_error=True)
            elapsed = time.perf_counter() - started
            head = notification_log.inner.head()
        finally:
            engine.dispose()
    if head != len(requests):
        raise SystemExit(f"{side}: the log holds {head} entries, not {len(requests)}")
    batches = notification_log.batches
    return {"rate": len(requests) / elapsed, "elapsed_s": elapsed,
            "mean_batch": len(requests) / max(batches, 1)}


def zipf_ops(count: int, users: int, s: float, seed: int) -> list[tuple[str, str]]:
    """(kind, user id): 95 % reads, of which 4 in 5 are unread counts (the
    badge an app polls) and 1 in 5 a stream page (the list it opens), and 5 %
    publishes to the drawn user. Users are drawn Zipf(s): rank k with weight
    k^-s, user ids shuffled so rank is not id order."""
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(k ** -s for k in range(1, users + 1)))
    total = cumulative[-1]
    ids = [f"z{i}" for i in range(users)]
    random.Random(0).shuffle(ids)
    ops = []
    for _ in range(count):
        user = ids[min(users - 1, bisect.bisect_left(cumulative, rng.random() * total))]
        r = rng.random()
        ops.append(("unread" if r < 0.76 else "page" if r < 0.95 else "publish", user))
    return ops


def apply_ops(log: object, ops: list[tuple[str, str]], tag: str) -> None:
    body = {"category": "bench", "payload": {"text": "x" * 100}}
    for i, (kind, user) in enumerate(ops):
        if kind == "unread":
            log.unread(user)
        elif kind == "page":
            log.read(user, 0, 20)
        else:
            request = PublishRequest.from_body({**body, "user_id": user})
            log.append_many([(request, f"{tag}{i}", utcnow())])


def cache_workload(args: argparse.Namespace) -> dict:
    """The same operations with the cache (after a warm-up) and without."""
    values = preset(args.cache_level)
    log(f"storage: cache, Zipf s={args.zipf_s} over {args.zipf_users:,} users, "
        f"{values['cache_entries']:,} entries ({args.cache_level})")
    warmup = zipf_ops(args.cache_warmup, args.zipf_users, args.zipf_s, seed=1)
    measured = zipf_ops(args.cache_ops, args.zipf_users, args.zipf_s, seed=2)
    with ScratchDatabase(args.admin_url) as url:
        engine = make_engine(url, pool_size=args.pool)
        try:
            migrate(engine)
            sql_log = SqlNotificationLog(engine)
            caches = make_caches(values)
            cached = CachedNotificationLog(sql_log, users=caches["user"],
                                           shared=caches["global"])
            statements = [0]
            event.listen(engine, "before_cursor_execute",
                         lambda *_a: statements.__setitem__(0, statements[0] + 1))
            apply_ops(cached, warmup, "w")
            sides = {}
            for side, target in (("cached", cached), ("uncached", sql_log)):
                before = caches["user"].snapshot(), caches["global"].snapshot()
                statements[0] = 0
                started = time.perf_counter()
                apply_ops(target, measured, side[0])
                elapsed = time.perf_counter() - started
                after = caches["user"].snapshot(), caches["global"].snapshot()
                # per level: the user level's rate is the per-read one (a hit there
                # also looks the head up in the global level, nearly always a hit)
                rates = [(a.hits - b.hits) / max(1, a.hits - b.hits + a.misses - b.misses)
                         for a, b in zip(after, before, strict=True)]
                sides[side] = {"statements": statements[0], "ops_per_s": len(measured) / elapsed,
                               "user_rate": rates[0], "global_rate": rates[1]}
                log(f"  {side:8} {statements[0]:>7,} statements, "
                    f"{len(measured) / elapsed:>8,.0f} ops/s")
        finally:
            engine.dispose()
    cached_side = sides["cached"]
    return {
        "cache_hit_rate": round(cached_side["user_rate"], 3),
        "cache_hit_rate_global_level": round(cached_side["global_rate"], 3),
        "db_query_reduction": round(
            1 - cached_side["statements"] / max(sides["uncached"]["statements"], 1), 3),
        "cache_statements": {side: m["statements"] for side, m in sides.items()},
        "cache_ops_per_s": {side: round(m["ops_per_s"]) for side, m in sides.items()},
        "cache_user_entries": caches["user"].snapshot().entries,
    }


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench storage")
    parser.add_argument("--publishes", type=int, default=20_000, help="per batched run")
    parser.add_argument("--row-publishes", type=int, default=4_000,
                        help="per row-by-row run (fewer: it is the slow side)")
    parser.add_argument("--publishers", type=int, default=400, help="concurrent publishers")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    # aggressive: a write batch of 100, the top of the levels' usual range and
    # what a node taking heavy publish rates runs (--level balanced: 50)
    parser.add_argument("--level", default="aggressive", choices=sorted(LEVELS))
    parser.add_argument("--batch", type=int, default=None,
                        help="write batch size (default: the level's)")
    parser.add_argument("--pool", type=int, default=10, help="connection pool size")
    parser.add_argument("--admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--only", choices=("all", "persist", "cache"), default="all")
    parser.add_argument("--keys", action="store_true",
                        help="every publish with an Idempotency-Key (its cost, run beside one "
                             "without)")
    parser.add_argument("--cache-level", default="maximum", choices=sorted(LEVELS),
                        help="the level whose cache size and TTL are used")
    parser.add_argument("--cache-ops", type=int, default=20_000, help="measured, per side")
    parser.add_argument("--cache-warmup", type=int, default=60_000,
                        help="operations through the cache before measuring")
    parser.add_argument("--zipf-users", type=int, default=100_000)
    parser.add_argument("--zipf-s", type=float, default=1.1)
    args = parser.parse_args(argv)
    args.batch = args.batch or LEVELS[args.level].write_batch_size
    patch_psycopg()
    cache = cache_workload(args) if args.only in ("all", "cache") else {}
    if args.only == "cache":
        return {**cache, "notes": cache_notes(args)}
    counts = {"batched": args.publishes, "row_by_row": args.row_publishes}
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for r in range(args.rounds):
        log(f"storage: round {r + 1}/{args.rounds}")
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            m = persist(side, workload(counts[side], args.users, seed=r, keys=args.keys), args)
            runs[side].append(m)
            log(f"  {side:10} {m['rate']:>9,.0f} notifications/s ({counts[side]:,} in "
                f"{m['elapsed_s']:.1f} s, mean batch {m['mean_batch']:.1f})")
    rates = {side: [m["rate"] for m in runs[side]] for side in SIDES}
    return {
        "persist_per_s": round(statistics.median(rates["batched"])),
        "row_by_row_per_s": round(statistics.median(rates["row_by_row"])),
        "batch_gain": paired_median(rates["batched"], rates["row_by_row"]),
        "batch_gain_range": [round(min(a / b for a, b in zip(*rates.values(), strict=True)), 2),
                             round(max(a / b for a, b in zip(*rates.values(), strict=True)), 2)],
        "mean_batch": round(statistics.median(m["mean_batch"] for m in runs["batched"]), 1),
        "per_round": {side: [round(x) for x in rates[side]] for side in SIDES},
        **cache,
        "targets": {"persist_per_s": ">= 20000", "batch_gain": ">= 5",
                    "cache_hit_rate": ">= 0.9", "db_query_reduction": ">= 0.8"},
        "notes": (
            f"real PostgreSQL, a fresh database per run; {args.publishers} concurrent "
            f"publishers (greenlets, psycogreen), each waiting for its commit; write batch "
            f"{args.batch} ({args.level}) against 1; targeted publishes to 1-3 of "
            f"{args.users:,} users and a broadcast every 50th; {args.rounds} rounds in "
            f"alternating order, gain = median of round-by-round ratios. "
            + cache_notes(args)),
    }


def cache_notes(args: argparse.Namespace) -> str:
    return (f"Cache: Zipf s={args.zipf_s} over {args.zipf_users:,} users; 95 % reads (76 % "
            f"unread counts, 19 % first stream pages of 20), 5 % publishes to the drawn "
            f"user; the {args.cache_level} level's cache; {args.cache_warmup:,} operations "
            f"of warm-up, then the same {args.cache_ops:,} with and without the cache, "
            f"one greenlet; statements counted by before_cursor_execute.")
