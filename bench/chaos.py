"""``python -m bench chaos --seed N --minutes M``: a Jepsen-style run.

2-3 ``serve`` nodes on the run's own PostgreSQL, Redis and InfluxDB; 200-2,000
clients (clients/js/chaos.mjs) that come and go at random; publishers at a
steady rate, each publish retried with its Idempotency-Key; and a fault
schedule drawn from the seed (bench/chaos_faults.py): nodes killed and
stopped, PostgreSQL restarted and paused, Redis restarted, InfluxDB stopped,
partitions, and one node's link to PostgreSQL or Redis blackholed, reset,
delayed or throttled. At the end every fault is healed, the clients settle,
and bench/chaos_check.py checks the whole history (files under the history
directory, kept, never held in memory) against the delivery promise.

The last line is ``{"violations": 0, "faults_injected": ..., ...}``; a
failing seed replays with the same ``--seed``, ``--minutes`` and ``--nodes``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import gevent
import gevent.event
import gevent.resolver.blocking

from bench import chaos_soak as soak
from bench.chaos_check import check, read_history
from bench.chaos_clients import ChaosClients, make_clients
from bench.chaos_faults import schedule
from bench.chaos_net import namespaces_available, remove_stale
from bench.chaos_publisher import Publisher
from bench.chaos_services import Influx, Node, Postgres, Redis
from bench.chaos_topology import FaultRunner, Topology
from bench.harness import raise_nofile

SECRETS = {"PUBLISH_TOKEN": "chaos-publish-token", "ADMIN_TOKEN": "chaos-admin-token",
           "USER_TOKEN_SECRET": "chaos-user-secret"}


def log(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench chaos")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn, and printed")
    parser.add_argument("--minutes", type=float, default=5.0, help="of faults and publishing")
    parser.add_argument("--nodes", type=int, default=3, choices=(2, 3))
    parser.add_argument("--clients", type=int, default=300, help="200-2000")
    parser.add_argument("--publish-rate", type=float, default=30.0, help="publishes a second")
    parser.add_argument("--churn-per-min", type=float, default=6.0,
                        help="disconnects a minute, per client")
    parser.add_argument("--workers", type=int, default=1, help="WORKERS of each node")
    parser.add_argument("--out", type=Path, default=None,
                        help="the history directory (default /tmp/chaos-SEED-TIME)")
    parser.add_argument("--offline-queue-max", type=int, default=0,
                        help="OFFLINE_QUEUE_MAX of the nodes, trimmed every 5 s: small, so "
                             "that clients away for a while are told to reload (default: "
                             "the service's own)")
    parser.add_argument("--no-netns", action="store_true",
                        help="loopback and proxies only, even where namespaces work")
    parser.add_argument("--keep", action="store_true",
                        help="keep the services' data directories too")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    if not 1 <= args.clients <= 5000 or args.minutes <= 0 or args.publish_rate <= 0:
        parser.error("--clients 1-5000, and --minutes and --publish-rate > 0")
    return args


class Run:
    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args, self.stack = args, stack
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = args.out or Path(f"/tmp/chaos-{args.seed}-{stamp}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.work = self.dir / "work"  # the services' data: removed unless --keep
        self.work.mkdir(exist_ok=True)
        for path in (self.dir, self.work):
            path.chmod(0o755)  # PostgreSQL runs as its own user, under work/
        self.run_id = uuid.uuid4().hex[:6]
        self.nodes: list[Node] = []
        self.unexpected_exits: list[dict] = []
        self.rss: dict[str, dict] = {}

    def quietly(self, action, *args) -> None:
        self.stack.callback(_quietly, action, *args)

    def start_services(self) -> None:
        if not self.args.keep:
            self.stack.callback(shutil.rmtree, self.work, ignore_errors=True)
        self.pg, self.redis, self.influx = (Postgres(self.work), Redis(self.work),
                                            Influx(self.work))
        self.quietly(self.pg.stop, "immediate")
        self.pg.start()
        self.quietly(self.redis.stop)
        self.redis.start()
        self.quietly(self.influx.stop)
        self.influx.start()
        log(f"services: PostgreSQL :{self.pg.port}, Redis :{self.redis.port}, "
            f"InfluxDB :{self.influx.port} (data under {self.work})")

    def start_nodes(self) -> None:
        args = self.args
        netns, reason = (False, "--no-netns") if args.no_netns else namespaces_available()
        if netns:
            removed = remove_stale("chaos-")  # what killed runs left; live runs' stay
            if removed:
                log(f"removed {len(removed)} namespaces that killed runs left")
        self.network = "netns" if netns else f"proxy-only: {reason}"
        log(f"network: {self.network}")
        self.topology = Topology(self.run_id, args.nodes, netns)
        self.quietly(self.topology.destroy)
        self.topology.build(self.pg, self.redis, self.influx)
        (self.dir / "logs").mkdir(exist_ok=True)
        for i in range(args.nodes):
            env = {**os.environ, **SECRETS, **self.topology.node_env(i, self.influx),
                   "VAR_DIR": str(self.work / f"node{i}"), "INFLUX_DB": "chaos",
                   "NODE_ID": f"chaos-{i}", "DEMO": "0", "WORKERS": str(args.workers),
                   "CONNECT_RATE_PER_IP": "off", "EVENT_RATE_PER_IP": "off",
                   **({"OFFLINE_QUEUE_MAX": str(args.offline_queue_max),
                       "OFFLINE_TRIM_INTERVAL": "5"} if args.offline_queue_max else {})}
            node = Node(i, env, self.topology.prefix(i), self.topology.node_url(i),
                        self.dir / "logs" / f"node{i}.log")
            self.nodes.append(node)
            self.quietly(node.stop)
            node.start()
        for node in self.nodes:
            if not node.wait_healthy(90):
                raise RuntimeError(f"node {node.index} did not become healthy:\n"
                                   + node.log_tail())
            self.rss[f"node{node.index}"] = {"start_mb": node.rss_mb()}
        log("nodes: " + ", ".join(self.topology.client_url(i) for i in range(args.nodes)))

    def start_clients(self) -> None:
        args = self.args
        specs = make_clients(args.clients, SECRETS["USER_TOKEN_SECRET"], args.seed)
        self.users = sorted({c["user"] for c in specs})
        urls = [self.topology.client_url(i) for i in range(args.nodes)]
        self.clients = ChaosClients(specs, urls, self.dir / "clients.jsonl", self.work,
                                    args.seed, args.churn_per_min)
        self.quietly(self.clients.stop)
        limit = 60 + args.clients / 10
        if not self.clients.wait("ready", limit):
            raise RuntimeError(f"the clients were not all connected after {limit:g} s "
                               f"({self.clients.status}):\n{self.clients.stderr_tail()}")
        log(f"clients: {args.clients} over {len(self.users)} users connected")
        with open(self.dir / "run.jsonl", "a") as out:
            out.write(json.dumps({"type": "run", "broadcast_after": 0, "seed": args.seed,
                                  "minutes": args.minutes, "nodes": args.nodes,
                                  "clients": args.clients, "t": time.time()}) + "\n")

    def watch(self, stop: gevent.event.Event, t0: float) -> None:
        """Every second: a node that exited with no fault of ours is restarted
        (and counted); every 10 s: a progress line."""
        last = sampled = 0.0
        while not stop.wait(1.0):
            for node in self.nodes:
                if node.process.poll() is not None and node.index not in self.runner.down:
                    code = node.process.returncode
                    self.unexpected_exits.append({"node": node.index, "code": code,
                                                  "elapsed": round(time.monotonic() - t0, 1)})
                    log(f"node {node.index} exited by itself ({code}); restarting it")
                    node.start()
            if not self.clients.alive:
                raise RuntimeError("chaos.mjs exited:\n" + self.clients.stderr_tail())
            if time.monotonic() - last >= 10.0:
                last = time.monotonic()
                self.progress(t0)
            if time.monotonic() - sampled >= soak.SAMPLE_S:
                sampled = time.monotonic()
                soak.sample(self.nodes, SECRETS["ADMIN_TOKEN"], self.dir / "nodes.jsonl")

    def progress(self, t0: float) -> None:
        p = self.publisher
        up = sum(1 for n in self.nodes if n.alive)
        log(f"[{time.monotonic() - t0:6.1f} s] faults {sum(self.runner.injected.values())}, "
            f"publishes {p.seq} ({p.outcomes['acknowledged']} acked, {p.in_flight} in "
            f"flight), deliveries {self.clients.received():,}, connected "
            f"{self.clients.connected()}/{self.args.clients}, nodes up {up}/{len(self.nodes)}")

    def chaos(self) -> None:
        args = self.args
        faults = schedule(args.seed, args.minutes, args.nodes)
        self.runner = FaultRunner(faults, self.nodes, self.pg, self.redis, self.influx,
                                  self.topology, self.dir / "faults.jsonl")
        self.stack.callback(self.runner.stop)
        urls = [self.topology.client_url(i) for i in range(args.nodes)]
        self.publisher = Publisher(urls, self.users, SECRETS["PUBLISH_TOKEN"],
                                   self.run_id, args.publish_rate,
                                   self.dir / "publishes.jsonl", args.seed)
        self.quietly(self.publisher.close)
        log(f"{args.minutes:g} min: {len(faults)} faults, {args.publish_rate:g} publishes/s")
        stop, t0 = gevent.event.Event(), time.monotonic()
        publishing = gevent.spawn(self.publisher.run, stop)
        faulting = gevent.spawn(self.runner.run, t0)
        watcher = gevent.spawn(self.watch, stop, t0)
        self.stack.callback(gevent.killall, [publishing, faulting, watcher])
        watcher.join(timeout=args.minutes * 60)  # early only if it failed
        stop.set()
        watcher.get()  # raises what it raised
        publishing.join()
        faulting.join(timeout=60)  # the last fault heals itself
        self.heal(t0)
        self.given_up = self.publisher.finish(timeout=60)
        log(f"publishing stopped: {self.publisher.seq} publishes ({self.given_up} given up "
            "unfinished)")

    def heal(self, t0: float) -> None:
        self.runner.stop()
        self.topology.heal_all()
        self.pg.resume()
        for service in (self.redis, self.influx):
            if service.process is None or service.process.poll() is not None:
                service.start()
        for node in self.nodes:
            if not node.alive:
                node.start()
        for node in self.nodes:
            if not node.wait_healthy(120):
                raise RuntimeError(f"node {node.index} is not healthy after the faults:\n"
                                   + node.log_tail())
        log(f"[{time.monotonic() - t0:6.1f} s] healed: every node healthy")

    def settle(self) -> dict:
        self.clients.send("settle")
        settled = self.clients.wait("settled", 60)
        waited = self.clients.wait_quiet(3.0, 60.0)
        log(f"settled: {settled} ({self.clients.connected()} connected); deliveries quiet "
            f"after {waited:.1f} s")
        for node in self.nodes:
            self.rss[f"node{node.index}"]["end_mb"] = node.rss_mb()
        (self.dir / "proxies.json").write_text(json.dumps(self.topology.counters(), indent=1))
        done = self.clients.close(30)
        self.table_rows = {}
        with contextlib.suppress(Exception):  # reported if it can be read; the run stands
            self.table_rows = soak.table_rows(self.pg.port)
        return {"settled": settled, "clients_done": done}

    def result(self, ended: dict, started: float) -> dict:
        paths = [self.dir / f for f in ("run.jsonl", "publishes.jsonl", "clients.jsonl")]
        report = check(read_history([p for p in paths if p.exists()]))
        (self.dir / "check.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        args, runner, pub = self.args, self.runner, self.publisher.summary()
        # a 409 for a retry of the same body: the key was stored with another one
        conflicts = pub["outcomes"].get("conflict", 0)
        counts = {**report.counts, **({"idempotency_conflict": conflicts} if conflicts else {})}
        total = sum(counts.values())
        return {
            "violations": total, "faults_injected": sum(runner.injected.values()),
            "deliveries_checked": report.deliveries_checked, "publishes": report.publishes,
            "acknowledged": report.acknowledged, "refused": report.refused,
            "unconfirmed": report.unconfirmed, "reloads": report.reloads,
            "given_up": getattr(self, "given_up", None),
            "counts": counts, "faults": dict(runner.injected),
            "faults_failed": runner.failed, "seed": args.seed, "minutes": args.minutes,
            "nodes": args.nodes, "clients": args.clients, "network": self.network,
            "connections": report.connections, "reconnects": report.reconnects,
            "owed_checked": report.owed_checked, "publish_attempts": pub["attempts"],
            "publish_statuses": pub["statuses"], "publish_outcomes": pub["outcomes"],
            "conflicts": pub["conflicts"], "unexpected_exits": self.unexpected_exits,
            "rss_mb": self.rss, **ended, "history_dir": str(self.dir),
            "books": {"owed": report.owed_total, "delivered": report.owed_delivered,
                      "trimmed_before_delivery": report.excused_by_reload,
                      "lost": report.counts.get("lost", 0)},
            "soak": soak.summary(self.dir / "nodes.jsonl"), "table_rows": self.table_rows,
            "first_violations": [v.__dict__ for v in report.violations[:10]],
            "wall_s": round(time.monotonic() - started, 1)}


def run(argv: list[str]) -> dict:
    args = parse(argv)
    started = time.monotonic()
    log(f"seed {args.seed} (replay: python -m bench chaos --seed {args.seed} "
        f"--minutes {args.minutes:g} --nodes {args.nodes} --clients {args.clients})")
    raise_nofile()
    # every address here is numeric: resolving one in gevent's thread pool
    # (its default resolver) cost the publishers half their CPU under faults
    hub = gevent.get_hub()
    hub.resolver = gevent.resolver.blocking.Resolver(hub=hub)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            chaos = Run(args, stack)
            log(f"history: {chaos.dir}")
            chaos.start_services()
            chaos.start_nodes()
            chaos.start_clients()
            chaos.chaos()
            ended = chaos.settle()
        result = chaos.result(ended, started)
        log(f"{result['violations']} violations; history in {chaos.dir}")
        return result
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quietly(action, *args) -> None:
    try:
        action(*args)
    except Exception as exc:
        log(f"cleanup step {getattr(action, '__qualname__', action)} failed: {exc!r}")


def _interrupt(signum: int, _frame: object) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)
