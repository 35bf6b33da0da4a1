"""Soak: two ``serve`` nodes (one scratch PostgreSQL database, a Redis channel
of their own) hold ``--connections`` WebSockets, half on each, through
``--duration`` seconds of steady publishing: ``--rate`` publishes a second
through both nodes' publish API in turn, each to a random connected user and
every ``--broadcast-every``-th to everyone. The clients (clients/js/soak.mjs,
socket.io-client in ``--procs`` Node processes) ack every batch, reconnect
with their last offset if dropped, and report counts and a latency histogram
once a second.

Prints: connections (open at the end), delivered_ratio (what the clients
received / what the accepted publishes owe them, a broadcast once per user),
p99_ms (publisher's send to the client's receipt), rss_growth_mb_per_h (the
least-squares slope of each node's RSS after ``--warmup``; the worse node),
errors by kind and errors_total, and the context behind them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter

import gevent
import gevent.event
import gevent.pool
import urllib3

from bench import storage
from bench.harness import SECRETS, ServeProcess, proc_cpu_seconds
from bench.loadgen import self_cpu_seconds
from bench.soak_procs import (
    Clients,
    log_lines,
    log_tail,
    node_connections,
    rss_mb,
    start_node,
)
from bench.soak_setup import (
    NODES,
    REDIS_URL,
    drop_influx,
    drop_redis_keys,
    log,
    quietly,
    raise_fd_limit,
)
from bench.soak_stats import Tally, clock, delivered_ratio, render_progress, summarize
from service.adapters.influx import InfluxClient, InfluxSettings


class Publisher:
    """Paced publishes through the nodes in turn; counts what they owe whom."""

    def __init__(self, nodes: list[ServeProcess], placement: dict[int, int],
                 args: argparse.Namespace) -> None:
        self.nodes, self.placement, self.args = nodes, placement, args
        self.targets = sorted(placement)
        self.on_node = Counter(placement.values())
        self.http = urllib3.PoolManager(maxsize=args.concurrency, retries=False)
        self.headers = {"Authorization": f"Bearer {SECRETS['PUBLISH_TOKEN']}",
                        "Content-Type": "application/json"}
        self.expected: Counter[str] = Counter()  # local / cross: recipient on the other node
        self.published: Counter[str] = Counter()  # targeted / broadcast
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.answer_ms: list[float] = []  # each publish's round trip
        self.attempts, self.lag_max_s = 0, 0.0
        self.rng = random.Random(1)

    def publish(self, i: int) -> None:
        node = i % len(self.nodes)
        broadcast = self.args.broadcast_every > 0 and i % self.args.broadcast_every == 0
        user = None if broadcast else self.rng.choice(self.targets)
        target = {"broadcast": True} if broadcast else {"user_id": f"soak{user}"}
        body = {**target, "category": "soak", "priority": "normal",
                "payload": {"t": time.time() * 1000.0, "n": node, "b": broadcast}}
        try:
            response = self.http.request("POST", f"{self.nodes[node].url}/api/v1/notifications",
                                         body=json.dumps(body), headers=self.headers, timeout=30)
        except urllib3.exceptions.HTTPError as exc:
            return self._error("publish_exception", repr(exc))
        self.answer_ms.append(time.time() * 1000.0 - body["payload"]["t"])
        if response.status != 202:
            return self._error("publish_http", f"{response.status} {response.data[:160]!r}")
        if broadcast:
            self.published["broadcast"] += 1
            self.expected["local"] += self.on_node[node]
            self.expected["cross"] += len(self.targets) - self.on_node[node]
        else:
            self.published["targeted"] += 1
            self.expected["local" if self.placement[user] == node else "cross"] += 1

    def _error(self, kind: str, sample: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 5:
            self.samples.append(sample[:200])

    def run(self, seconds: float, stop: gevent.event.Event) -> float:
        """Publish at ``args.rate`` for ``seconds`` (or until ``stop``), at most
        ``args.concurrency`` at once; returns the seconds it took, answers included."""
        pool, started = gevent.pool.Pool(self.args.concurrency), time.monotonic()
        while not stop.is_set() and time.monotonic() - started < seconds:
            delay = started + self.attempts / self.args.rate - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            else:  # behind: all ``concurrency`` publishes were waiting for answers
                self.lag_max_s = max(self.lag_max_s, -delay)
            pool.spawn(self.publish, self.attempts)
            self.attempts += 1
        pool.join(timeout=60)
        return time.monotonic() - started


# -- the run ------------------------------------------------------------------
class Monitor:
    """Once a second: checks that the nodes live and shows progress; every
    ``sample_s`` while publishing: each node's RSS and the connections open."""

    def __init__(self, nodes: list[ServeProcess], clients: list[Clients], tally: Tally,
                 args: argparse.Namespace) -> None:
        self.nodes, self.clients, self.tally, self.args = nodes, clients, tally, args
        self.publisher: Publisher | None = None
        self.rss: dict[str, list[tuple[float, float]]] = {n: [] for n in NODES}
        self.open_min: int | None = None
        self.phase, self.t0, self.failure = "connecting", time.monotonic(), None
        self.tty = sys.stderr.isatty()

    def totals(self, key: str) -> int:
        return sum(c.last.get(key, 0) for c in self.clients)

    def loop(self) -> None:
        last_sample = last_line = 0.0
        while True:
            gevent.sleep(1.0)
            self.tally.recent.append({})
            now = time.monotonic()
            for name, node in zip(NODES, self.nodes, strict=True):
                if node.process.poll() is not None:
                    self.failure = (f"node {name} exited ({node.process.returncode}):\n"
                                    + log_tail(node))
            if any(c.done.is_set() for c in self.clients):
                self.failure = self.failure or "a Node client process exited"
            if self.failure:
                return
            if self.publisher and now - last_sample >= self.args.sample_s:
                last_sample = now
                for name, node in zip(NODES, self.nodes, strict=True):
                    self.rss[name].append((now - self.t0, rss_mb(node.process.pid)))
                held = self.totals("connected")
                self.open_min = held if self.open_min is None else min(self.open_min, held)
            if self.phase != "settling" and (self.tty or now - last_line >= 10):
                last_line = now
                self.show()

    def show(self, end: str | None = None) -> None:
        n, elapsed, p = self.args.connections, time.monotonic() - self.t0, self.publisher
        fields = [f"open {self.totals('connected'):,}/{n:,}"]
        if p is None:
            done, total = self.totals("opened") + self.totals("failed"), n
            fields.append(f"connect errors {self.totals('connect_errors')}")
        else:
            done, total = min(elapsed, self.args.duration), self.args.duration
            ratio = delivered_ratio(self.totals("received"), sum(p.expected.values()))
            p99 = self.tally.recent_p99()
            errors = sum(p.errors.values()) + self.totals("connect_errors") \
                + self.totals("disconnects")
            fields = [f"{clock(elapsed)}/{clock(self.args.duration)}", *fields,
                      f"published {sum(p.published.values()):,}",
                      "delivered " + (f"{ratio:.2%}" if ratio is not None else "-"),
                      "p99 " + (f"{p99:,.0f} ms" if p99 is not None else "-"),
                      "RSS " + " ".join(f"{k} {v[-1][1]:.0f}" for k, v in self.rss.items() if v)
                      + " MB", f"errors {errors}"]
        line = render_progress(f"soak {self.phase}", done, total, fields, bar=self.tty)
        end = end if end is not None else ("" if self.tty else "\n")
        print(("\r\x1b[K" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)

    def check(self) -> None:
        if self.failure:
            raise RuntimeError(self.failure)


def open_clients(nodes: list[ServeProcess], tally: Tally,
                 args: argparse.Namespace) -> list[Clients]:
    """User u on node u % 2; each node's users split over its share of processes."""
    per_node = max(1, args.procs // len(nodes))
    return [Clients(nodes[k % len(nodes)].url, k % len(nodes),
                    list(range(k % len(nodes), args.connections, len(nodes)))[
                        k // len(nodes)::per_node], tally, args)
            for k in range(per_node * len(nodes))]


def connect(monitor: Monitor, args: argparse.Namespace) -> dict[int, int]:
    """Wait until every user connected or was given up on: user -> node."""
    deadline = time.monotonic() + args.connect_timeout
    for c in monitor.clients:
        if not c.ready.wait(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"connecting took over {args.connect_timeout:g} s")
        monitor.check()
        if not c.was_ready:
            raise RuntimeError(f"a Node client process exited ({c.process.poll()}) before "
                               "it was ready")
    return {u: c.node for c in monitor.clients for u in c.users if u not in c.failed_users}


def drain(monitor: Monitor, publisher: Publisher, limit_s: float) -> float:
    """Wait for deliveries still on their way: until all arrived, nothing came
    for 3 s, or ``limit_s``. Returns the seconds waited."""
    started = still_since = time.monotonic()
    last = -1
    while time.monotonic() - started < limit_s:
        monitor.check()
        received = monitor.totals("received")
        if received >= sum(publisher.expected.values()):
            break
        if received != last:
            last, still_since = received, time.monotonic()
        elif time.monotonic() - still_since >= 3.0:
            break
        gevent.sleep(0.5)
    return time.monotonic() - started


def soak(args: argparse.Namespace, env: dict[str, str], stack: contextlib.ExitStack) -> dict:
    nodes = []
    for name in NODES:
        nodes.append(start_node(name, env))
        stack.callback(quietly, nodes[-1].__exit__)
    tally = Tally()
    clients = open_clients(nodes, tally, args)
    for c in clients:
        stack.callback(quietly, c.close)
    monitor = Monitor(nodes, clients, tally, args)
    watcher = gevent.spawn(monitor.loop)
    stack.callback(watcher.kill, block=False)
    log(f"soak: nodes {', '.join(n.url for n in nodes)}; opening {args.connections:,} "
        f"connections from {len(clients)} Node processes")
    placement = connect(monitor, args)
    connect_s = time.monotonic() - monitor.t0
    monitor.show(end="\n")
    monitor.phase = "settling"
    log(f"soak: {len(placement):,} users connected in {connect_s:.1f} s; publishing "
        f"{args.rate:g}/s for {args.duration:g} s (RSS fitted after {args.warmup:g} s)")
    gevent.sleep(2.0)  # the nodes finish the connects' own work
    publisher = Publisher(nodes, placement, args)

    def cpu() -> list[float]:
        return [proc_cpu_seconds(n.process.pid) for n in nodes] + [
            sum(proc_cpu_seconds(c.process.pid) for c in clients) + self_cpu_seconds()]

    cpu0 = cpu()
    tally.t0 = monitor.t0 = time.monotonic()
    monitor.publisher, monitor.phase = publisher, "publishing"
    stop = gevent.event.Event()
    watcher.link(lambda _g: stop.set())
    publish_s = publisher.run(args.duration, stop)
    monitor.check()
    monitor.phase = "draining"
    drain_s = drain(monitor, publisher, args.drain_s)
    cores = [round((b - a) / publish_s, 2) for a, b in zip(cpu0, cpu(), strict=True)]
    seen = [node_connections(n) for n in nodes]
    monitor.show(end="\n")
    final = {key: monitor.totals(key) for key in (
        "connected", "received", "received_cross", "duplicates", "out_of_order",
        "connect_errors", "disconnects", "rss_mb")}
    reasons: Counter[str] = Counter()
    for c in clients:
        reasons.update(c.last.get("reasons", {}))
    logged = {name: [line for line in log_lines(n) if "ERROR" in line or "Traceback" in line]
              for name, n in zip(NODES, nodes, strict=True)}
    return summarize(args, monitor, publisher, final, {
        "publish_s": publish_s, "drain_s": drain_s, "connect_s": connect_s, "seen": seen,
        "cores": dict(zip([f"node_{n}" for n in NODES] + ["loadgen"], cores, strict=True)),
        "reasons": dict(reasons), "logged": logged, "procs": len(clients)})


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench soak")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of publishing")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0,
                        help="publishes per second (docs/benchmarks.md#soak: why 50)")
    parser.add_argument("--broadcast-every", type=int, default=1000,
                        help="every Nth publish is a broadcast (0: none); at the default "
                             "rate one each 20 s, 10,000 deliveries each")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of publishing before RSS samples count (default: 60, "
                             "or a quarter of a shorter run)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sample interval")
    parser.add_argument("--procs", type=int, default=4, help="Node client processes (even)")
    parser.add_argument("--window", type=int, default=2,
                        help="connections being opened at once, per Node process")
    parser.add_argument("--give-up-s", type=float, default=60.0,
                        help="a user not connected after this long is left out")
    parser.add_argument("--concurrency", type=int, default=64, help="publishes in flight")
    parser.add_argument("--drain-s", type=float, default=20.0)
    parser.add_argument("--connect-timeout", type=float, default=600.0)
    parser.add_argument("--level", default="balanced")
    parser.add_argument("--admin-url", default=storage.PG_ADMIN_URL)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0 or args.connections < 2 or args.procs < 2:
        parser.error("--duration and --rate must be positive, --connections and --procs >= 2")
    if args.warmup is None:
        args.warmup = min(60.0, args.duration / 4)
    args.fd_limit = raise_fd_limit(args)
    args.channel = f"soak-{uuid.uuid4().hex[:10]}"
    url = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
    influx = InfluxClient(InfluxSettings(url=url, database=f"bench_{uuid.uuid4().hex[:8]}"))
    if not influx.ping():
        raise SystemExit(f"InfluxDB does not answer at {url}: run scripts/influxdb.sh start")
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(quietly, lambda: drop_influx(influx))
            stack.callback(quietly, lambda: drop_redis_keys(args.channel))
            database_url = stack.enter_context(
                storage.ScratchDatabase(args.admin_url, prefix="bench_soak"))
            log(f"soak: scratch database {database_url.rsplit('/', 1)[1]}, InfluxDB database "
                f"{influx.settings.database}, Redis channel {args.channel}")
            env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL,
                   "REDIS_CHANNEL": args.channel, "INFLUX_URL": url,
                   "INFLUX_DB": influx.settings.database, "OPTIMIZATION_LEVEL": args.level,
                   "DEMO": "0", "IDLE_TIMEOUT": "3600",  # connecting 10,000 takes minutes
                   "WORKERS": "1"}  # two nodes of one process each, as measured before
            return soak(args, env, stack)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, _frame: object) -> None:
    """Raised in the main greenlet (gevent runs the handler in its own and
    passes these on), so the cleanup runs: clients, nodes, databases."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


