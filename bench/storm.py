"""Storm: N official socket.io clients connecting at once to a fresh node
while a publisher keeps publishing, against the Node peer in the same run.

Each round, for each storage (SQLite, PostgreSQL), two sides in alternating
order: ``ours`` (``serve`` as a user gets it: OPTIMIZATION_LEVEL balanced,
throttles and the per-address limits on, telemetry on, no settling time
after it answers /healthz) and ``peer`` (clients/js/peer-server.mjs). Each
side takes two storms on one server: ``new`` (users it has never seen) and,
once those clients have closed, ``returning`` (the same users again; for
ours their streams exist; the peer keeps nothing, so its second storm is
the same as its first).

The clients are storm.mjs processes (--client-procs), from --addresses
loopback source addresses (127.1.x.y), so the per-address connect limit
(CONNECT_RATE_PER_IP, 50/s with a burst of 1,000 per address) acts as with
clients from many hosts. They open all at once on "go". This process
publishes broadcasts at --publish-rate from that moment until every client
has connected or failed, and --tail-s after; a publish's answer time is
measured here, not in the Node processes busy connecting. Then each client
checks what it received against the publish log: order, and every
broadcast sent after its connect.

Prints, per storage and cohort (``sqlite_new``, ``postgres_returning``...):
connect_s, connect_per_s, node_peer_connect_per_s, connect_ratio_vs_node
(and its range), refused and refusals, publish_p50_ms and publish_p99_ms
(answers sent during the storm, all rounds pooled), delivered, owed,
missing; and problems, per_round, targets, notes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator

import gevent
import urllib3

from bench.harness import ServeProcess, raise_nofile
from bench.loadgen import NodePeer, Publisher, self_cpu_seconds
from bench.storage import PG_ADMIN_URL, ScratchDatabase
from bench.storm_procs import StormClients, issue_tokens, listen_backlog, listen_overflows
from bench.storm_stats import (
    merge_done,
    per_round,
    problems,
    storm_figures,
    summarize_config,
    targets,
)
from service.adapters.influx import InfluxClient, InfluxSettings
from service.domain.levels import LEVELS

STORAGES = ("sqlite", "postgres")
# The broadcasts during a storm, by default, carry this many deliveries a
# second once every client is in: a steady load well inside what either
# server fans out. 10 broadcasts/s to 10,000 clients (100,000 deliveries/s,
# each its own frame, each frame acked) overloaded ours and the Node peer
# alike, and then the figure measured the fan-out, not the storm.
STORM_DELIVERIES_PER_S = 10_000
COHORTS = ("new", "returning")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def open_side(side: str, storage: str, args: argparse.Namespace
              ) -> Iterator[ServeProcess | NodePeer]:
    if side == "peer":
        with NodePeer() as peer:
            yield peer
        return
    with contextlib.ExitStack() as stack:
        env = {"OPTIMIZATION_LEVEL": args.level, "TELEMETRY_ENABLED": "1",
               "INFLUX_DB": args.influx.settings.database}
        if storage == "postgres":  # a fresh database: "new" users are new
            env["DATABASE_URL"] = stack.enter_context(
                ScratchDatabase(args.admin_url, prefix="bench_storm"))
        # the per-address limits stay on: the clients come from many addresses
        yield stack.enter_context(ServeProcess(env, lift_ip_limits=False))


def reporter(procs: list[StormClients], label: str) -> None:
    """A progress line every 2 s while the storm lasts (killed by the caller)."""
    while True:
        gevent.sleep(2.0)
        lasts = [p.last for p in procs]
        log(f"    {label}: connected {sum(s.get('connected', 0) for s in lasts):,}, "
            f"refused {sum(s.get('refused', 0) for s in lasts):,}, "
            f"delivered {sum(s.get('delivered', 0) for s in lasts):,}")


def storm_once(url: str, tokens: list[str], args: argparse.Namespace, label: str) -> dict:
    """Open every client at once and publish until all settled (+ the tail)."""
    share = -(-len(tokens) // args.client_procs)
    extra = ("--wait-go", "--quiet-ms", str(int(args.quiet_s * 1000)),
             "--connect-timeout-ms", str(args.connect_timeout_ms))
    procs = [StormClients(url, tokens[start:start + share], publish="external", extra=extra,
                          addresses=args.addresses, address_start=start,
                          timeout_s=args.storm_timeout_s + args.quiet_s + 60)
             for start in range(0, len(tokens), share)]
    progress = None
    try:
        for p in procs:
            p.loaded.wait(timeout=60)
        publisher = Publisher(url, concurrency=4)
        # a publisher is a long-lived backend: its first connection is open
        # before the storm (more are opened if answers overlap, as they would)
        publisher.http.request("GET", f"{url}/healthz", timeout=10)
        deadline = time.monotonic() + args.storm_timeout_s
        stop_at: list[float] = []

        def over() -> bool:
            if not stop_at and all(p.settled.is_set() for p in procs):
                stop_at.append(time.monotonic() + args.tail_s)
            return time.monotonic() >= (stop_at[0] if stop_at else deadline)

        progress = gevent.spawn(reporter, procs, label)
        overflows = listen_overflows()
        for p in procs:
            p.go()
        publisher.paced(None, args.publish_rate, until=over)
        overflows = listen_overflows() - overflows
        progress.kill()
        for p in procs:
            p.finish(publisher.answers)
        events = [p.result(timeout=args.quiet_s + 120) for p in procs]
    finally:
        if progress is not None:
            progress.kill()
        for p in procs:
            p.close()
    return storm_figures(merge_done(events), publisher.answers) | {
        "listen_overflows": overflows}


def wait_closed(server: ServeProcess, timeout: float = 30.0) -> float:
    """Seconds until the node counts no connection (the first storm's
    clients have closed): the returning users then find only their streams."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if not server.metrics()["connections"]:
                break
        except urllib3.exceptions.HTTPError:  # busy closing 10,000 sockets: ask again
            pass
        gevent.sleep(0.2)
    return round(time.monotonic() - started, 2)


def measure_side(side: str, storage: str, args: argparse.Namespace) -> dict[str, dict]:
    tokens = issue_tokens([f"storm{u}" for u in range(args.clients)])
    runs: dict[str, dict] = {}
    with open_side(side, storage, args) as server:
        args.backlog[side] = listen_backlog(server.port)
        for cohort in args.cohorts:
            close_s = None
            if cohort == "returning" and isinstance(server, ServeProcess):
                close_s = wait_closed(server)
            cpu = server.cpu_seconds()
            run = storm_once(server.url, tokens, args, f"{storage} {side} {cohort}")
            run["server_cpu_s"] = round(server.cpu_seconds() - cpu, 2)
            run["close_s"] = close_s
            runs[cohort] = run
            log(describe(side, cohort, run))
    return runs


def describe(side: str, cohort: str, m: dict) -> str:
    publish = m["publish_during"]
    rate = f"{m['connect_per_s']:,}/s" if m["connect_per_s"] else "never settled"
    return (f"  {side:4} {cohort:9} {m['connected']:,}/{m['clients']:,} in {m['connect_s']} s "
            f"({rate}), refused {m['refused']} {m['refusals'] or ''}; publish during "
            f"p50 {publish['p50_ms']} p99 {publish['p99_ms']} ms (n={publish['n']}); "
            f"delivered {m['delivered']:,}, missing {m['missing']}/{m['owed']}, "
            f"out of order {m['out_of_order']}; server CPU {m['server_cpu_s']} s, "
            f"clients {m['clients_cpu_s']} s")


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench storm")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--storage", default=",".join(STORAGES),
                        help="comma-separated, of sqlite and postgres")
    parser.add_argument("--cohorts", default=",".join(COHORTS),
                        help="new, or new,returning (returning users need the new storm)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--addresses", type=int, default=250,
                        help="loopback source addresses the clients are spread over")
    parser.add_argument("--client-procs", type=int, default=2, help="storm.mjs processes")
    parser.add_argument("--publish-rate", type=float, default=None,
                        help="broadcasts per second during the storm (default: "
                             f"{STORM_DELIVERIES_PER_S:,} deliveries/s over the clients, "
                             "at most 10)")
    parser.add_argument("--tail-s", type=float, default=1.0,
                        help="publishing goes on this long after the storm settled")
    parser.add_argument("--quiet-s", type=float, default=3.0,
                        help="a storm ends once nothing arrived for this long")
    parser.add_argument("--connect-timeout-ms", type=int, default=20_000,
                        help="socket.io-client's timeout (its own default)")
    parser.add_argument("--storm-timeout-s", type=float, default=120.0)
    parser.add_argument("--level", default="balanced", choices=sorted(LEVELS))
    parser.add_argument("--admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    if args.publish_rate is None:
        args.publish_rate = min(10.0, STORM_DELIVERIES_PER_S / args.clients)
    args.storages = [s for s in args.storage.split(",") if s]
    args.cohorts = [c for c in args.cohorts.split(",") if c]
    if not set(args.storages) <= set(STORAGES) or args.cohorts not in (["new"], list(COHORTS)):
        parser.error("--storage takes sqlite,postgres; --cohorts new or new,returning")
    if args.publish_rate <= 0 or args.client_procs < 1 or args.addresses < 0:
        parser.error("--publish-rate must be > 0, --client-procs >= 1, --addresses >= 0")
    nofile = raise_nofile()
    log(f"storm: open-files limit {nofile}; {args.clients:,} clients from "
        f"{args.addresses} addresses in {args.client_procs} Node processes")
    url = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
    args.influx = InfluxClient(InfluxSettings(url=url,
                                              database=f"bench_{uuid.uuid4().hex[:8]}"))
    if not args.influx.ping():
        raise SystemExit(f"InfluxDB does not answer at {url}: run scripts/influxdb.sh start")
    rounds: dict[str, list[dict]] = {f"{s}_{c}": [] for s in args.storages for c in args.cohorts}
    args.backlog = {}
    own_cpu = self_cpu_seconds()
    try:
        for r in range(args.rounds):
            for i, storage in enumerate(args.storages):
                log(f"storm: round {r + 1}/{args.rounds}, {storage}")
                order = ("ours", "peer") if (r + i) % 2 == 0 else ("peer", "ours")
                sides = {side: measure_side(side, storage, args) for side in order}
                for cohort in args.cohorts:
                    rounds[f"{storage}_{cohort}"].append(
                        {side: sides[side][cohort] for side in ("ours", "peer")})
    finally:
        args.influx.query(f'DROP DATABASE "{args.influx.settings.database}"', method="POST",
                          db=None)
    return summarize(args, rounds, nofile, self_cpu_seconds() - own_cpu)


def summarize(args: argparse.Namespace, rounds: dict[str, list[dict]], nofile: int,
              own_cpu: float) -> dict:
    result: dict = {"clients": args.clients, "rounds": args.rounds, "nofile": nofile}
    for key, rs in rounds.items():
        result.update(summarize_config(key, rs))
    every = [run for rs in rounds.values() for r in rs for run in r.values()]
    result["harness_cpu_s"] = round(own_cpu + sum(m["clients_cpu_s"] for m in every), 1)
    result["problems"] = {key: found for key, rs in rounds.items()
                          if (found := problems([r["ours"] for r in rs]))} or None
    result["node_peer_problems"] = {key: found for key, rs in rounds.items()
                                    if (found := problems([r["peer"] for r in rs]))} or None
    result["per_round"] = {key: per_round(rs) for key, rs in rounds.items()}
    # why a connect may take a second: a full accept queue drops the SYN
    result["listen_backlog"] = args.backlog
    result["listen_overflows"] = {key: {side: sum(r[side]["listen_overflows"] for r in rs)
                                        for side in ("ours", "peer")}
                                  for key, rs in rounds.items()}
    result["targets"] = targets(rounds)
    result["notes"] = (
        f"{args.clients:,} socket.io-client connections (WebSocket only, one user each) "
        f"opened at once from {args.client_procs} Node processes over {args.addresses} "
        f"loopback source addresses, socket.io-client's {args.connect_timeout_ms / 1000:g} s "
        f"connect timeout, no reconnection: a client that fails is refused, with the server's "
        f"error code or 'transport: ...'. ours: `serve` at {args.level} with its defaults "
        f"(throttles and per-address limits on, telemetry on to a scratch InfluxDB database, "
        f"default database pool), no settling after /healthz; SQLite in its var dir or a "
        f"scratch PostgreSQL database; peer: Node socket.io 4.8 (no auth, no log). Per "
        f"round and storage, ours and the peer in alternating order, each on a fresh server: "
        f"a storm of new users, then, once the node counts no connection, the same users "
        f"again (returning). connect_s: first open to the last client connected or refused; "
        f"connect_per_s: connected / connect_s; ratios: median of round-by-round ratios. "
        f"Publishing: {args.publish_rate:g} broadcasts/s from this process (one keep-alive "
        f"connection opened beforehand, more as answers overlap), from the first open "
        f"until {args.tail_s:g} s after the storm settled; publish p50/p99: answers to "
        f"publishes sent before it settled, all rounds pooled. owed: broadcasts sent after "
        f"a client's connect, per client; missing: owed and not received within "
        f"{args.quiet_s:g} s of quiet. connects_over_1s: clients whose connect took 1 s or "
        f"more (a dropped SYN is retried after 1 s); listen_overflows: the kernel's "
        f"ListenOverflows during each side's storms, added over rounds (machine-wide: "
        f"anything else running on the machine counts too); listen_backlog: "
        f"each server's accept queue (ss). {args.rounds} rounds; open-files limit {nofile}.")
    return result
