"""Connections: how many idle WebSockets one ``serve`` node holds at once, with
Engine.IO health checks (ping/pong) running, and what each one costs in RSS.

Clients are the official socket.io-client in Node (clients/js/hold.mjs),
``--per-process`` connections per Node process, each connection a distinct
user. The hold lasts until every open connection has answered ``--ping-rounds``
pings; a client that missed one would be dropped by the server's ping timeout
and show up in ``disconnects_during_hold``. Needs the InfluxDB at INFLUX_URL
(telemetry stays on, as in production); writes to a scratch database it drops.

Prints: connections, rss_base_mb, rss_loaded_mb, rss_per_conn_kb,
connect_per_s, disconnects_during_hold, harness_cpu_s, server_cpu_hold_s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import gevent
import gevent.event

from bench.harness import ROOT, SECRETS, ServeProcess, proc_cpu_seconds, raise_nofile
from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.tokens import UserTokens

TARGETS = {"connections": ">= 10000", "rss_per_conn_kb": "<= 50",
           "disconnects_during_hold": "== 0"}
HOLD_JS = ROOT / "clients" / "js" / "hold.mjs"
PORTS_PER_SOURCE = 25_000  # of the ~28k ephemeral ports loopback gives one (source, dest) pair
DEFAULT_MAX = 20_000  # the default run: this many, or what the open-files limit allows
FD_MARGIN = 500  # the server's own files: database, InfluxDB, listening socket, logs


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def proc_nofile(pid: int) -> int:
    """The soft open-files limit another process actually runs with."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise RuntimeError(f"no open-files limit in /proc/{pid}/limits")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


class HoldClients:
    """One Node process holding its share of the connections; its latest
    status line is kept in ``last``."""

    def __init__(self, url: str, tokens: list[str], window: int,
                 local_address: str | None) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as handle:
            handle.write("\n".join(tokens))
        self._tokens_file = handle.name
        command = ["node", str(HOLD_JS), url, handle.name, "--window", str(window)]
        if local_address:
            command += ["--local-address", local_address]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.last: dict = {}
        self.ready = gevent.event.Event()
        self.done = gevent.event.AsyncResult()
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        for line in self.process.stdout:
            event = json.loads(line)
            self.last = event
            if event["event"] == "ready":
                self.ready.set()
            elif event["event"] == "done":
                self.done.set(event)
                return
        self.ready.set()  # exited early: wake the waiter, which checks `last`
        self.done.set(self.last)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.process.pid)

    def close(self) -> dict:
        if self.process.poll() is None:
            self.process.stdin.write("close\n")
            self.process.stdin.flush()
        result = self.done.get(timeout=60)
        self.process.wait(timeout=30)
        os.unlink(self._tokens_file)
        return result


def totals(clients: list[HoldClients]) -> dict:
    lasts = [c.last for c in clients]
    mins = [s.get("pings_min") for s in lasts if s.get("pings_min") is not None]
    return {key: sum(s.get(key, 0) for s in lasts)
            for key in ("connected", "opened", "failed", "disconnects", "pings_total")} | {
        "pings_min": min(mins) if mins else 0,
        "errors": [e for s in lasts for e in s.get("errors", [])][:5]}


def open_all(server: ServeProcess, n: int, per_process: int, window: int) -> list[HoldClients]:
    issuer = UserTokens(SECRETS["USER_TOKEN_SECRET"], 3600)
    tokens = [issuer.issue(f"hold{i}") for i in range(n)]
    sources = -(-n // PORTS_PER_SOURCE)  # loopback: any 127.x address is local
    clients = []
    for k, start in enumerate(range(0, n, per_process)):
        address = f"127.0.0.{2 + k % sources}" if sources > 1 else None
        clients.append(HoldClients(server.url, tokens[start:start + per_process], window,
                                   address))
    return clients


def wait_ready(clients: list[HoldClients], n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(c.ready.is_set() for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError(f"connecting took over {timeout:.0f} s: {totals(clients)}")
        gevent.sleep(1.0)
        t = totals(clients)
        log(f"  opened {t['opened']}/{n}, failed {t['failed']}")
    t = totals(clients)
    if t["opened"] != n:
        raise RuntimeError(f"only {t['opened']} of {n} connections opened: {t}")


def hold(server: ServeProcess, clients: list[HoldClients], rounds: int,
         timeout: float) -> tuple[int, int]:
    """Until every open connection has seen ``rounds`` pings. Returns the
    fewest connections open at once during the hold, and the peak RSS."""
    deadline = time.monotonic() + timeout
    fewest, peak = totals(clients)["connected"], 0
    while True:
        gevent.sleep(1.0)
        t = totals(clients)
        fewest = min(fewest, t["connected"])
        peak = max(peak, rss_kb(server.process.pid))
        log(f"  holding {t['connected']}, pings per connection >= {t['pings_min']}, "
            f"disconnects {t['disconnects']}, server RSS {peak / 1024:.0f} MB")
        if t["pings_min"] >= rounds or t["connected"] == 0:
            return fewest, peak
        if time.monotonic() > deadline:
            raise RuntimeError(f"pings did not come within {timeout:.0f} s: {t}")


def settled_rss_kb(pid: int, samples: int = 5) -> int:
    """The median of a few readings a quarter-second apart."""
    readings = []
    for _ in range(samples):
        readings.append(rss_kb(pid))
        gevent.sleep(0.25)
    return sorted(readings)[len(readings) // 2]


def measure(args: argparse.Namespace, env: dict[str, str]) -> dict:
    n = args.connections
    with ServeProcess(env) as server:
        limit = proc_nofile(server.process.pid)
        if n + FD_MARGIN > limit:
            raise RuntimeError(f"the server may open {limit} files: too few for {n} "
                               "connections (raise the hard RLIMIT_NOFILE)")
        server.wait_settled(telemetry_on=True)
        base = settled_rss_kb(server.process.pid)
        log(f"connections: server up, RSS {base / 1024:.1f} MB, open-files limit {limit}; "
            f"opening {n}")
        started = time.monotonic()
        clients = open_all(server, n, args.per_process, args.window)
        try:
            wait_ready(clients, n, timeout=args.connect_timeout)
            connect_s = time.monotonic() - started
            log(f"connections: {n} open in {connect_s:.1f} s; holding for "
                f"{args.ping_rounds} ping rounds")
            cpu_before = server.cpu_seconds()
            fewest, peak = hold(server, clients, args.ping_rounds,
                                timeout=args.ping_interval * (args.ping_rounds + 3) + 60)
            server_cpu = server.cpu_seconds() - cpu_before
            loaded = settled_rss_kb(server.process.pid)
            seen = server.metrics()
            final = totals(clients)
            node_cpu = sum(c.cpu_seconds() for c in clients)
        finally:
            for c in clients:
                c.close()
    self_cpu = resource.getrusage(resource.RUSAGE_SELF)
    held = min(fewest, seen["connections"])
    return {
        "connections": held,
        "rss_base_mb": round(base / 1024, 1),
        "rss_loaded_mb": round(loaded / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
        "rss_per_conn_kb": round((loaded - base) / n, 1),
        "connect_per_s": round(n / connect_s),
        "disconnects_during_hold": final["disconnects"],
        "pings_min": final["pings_min"],
        "server_cpu_hold_s": round(server_cpu, 2),
        "server_open_fds": seen["process"]["open_fds"],
        "server_nofile_limit": limit,
        "harness_cpu_s": round(self_cpu.ru_utime + self_cpu.ru_stime + node_cpu, 1),
        "targets": TARGETS,
        "notes": (f"{n} socket.io-client connections (WebSocket only, one user each) from "
                  f"{len(clients)} Node processes; held until each answered "
                  f"{args.ping_rounds} pings (PING_INTERVAL={args.ping_interval:g} s); level "
                  f"{args.level} with MAX_CONNECTIONS and MEMORY_BUDGET_MB lifted, telemetry on, "
                  "IDLE_TIMEOUT raised above the hold; disconnects counted from the first "
                  f"open; open-files limit {limit}; RSS from "
                  "/proc (base: started, no connection yet; loaded: after the hold); "
                  "harness_cpu_s: this process and the Node clients"),
    }


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench connections")
    parser.add_argument("--connections", type=int, default=None,
                        help=f"default: {DEFAULT_MAX:,}, or fewer if the open-files limit "
                             "(hard RLIMIT_NOFILE) is lower")
    parser.add_argument("--per-process", type=int, default=2_500,
                        help="connections per Node client process")
    parser.add_argument("--window", type=int, default=32,
                        help="connections being opened at once, per Node process")
    parser.add_argument("--ping-interval", type=float, default=5.0)
    parser.add_argument("--ping-rounds", type=int, default=3,
                        help="pings every connection must answer during the hold")
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument("--level", default="balanced")
    args = parser.parse_args(argv)

    hard = raise_nofile()
    log(f"connections: open-files limit raised to {hard}")
    if args.connections is None:
        args.connections = min(DEFAULT_MAX, hard - FD_MARGIN)
    url = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
    client = InfluxClient(InfluxSettings(url=url, database=f"bench_{uuid.uuid4().hex[:8]}"))
    env = {"OPTIMIZATION_LEVEL": args.level, "INFLUX_DB": client.settings.database,
           "PING_INTERVAL": f"{args.ping_interval:g}",
           # what one node holds is measured here, not the level's provisional limits:
           # MAX_CONNECTIONS, and the memory budget past which new connections are refused
           "MAX_CONNECTIONS": "50000", "MEMORY_BUDGET_MB": "8192",
           # no client event comes during the hold: the idle sweeper must not close them
           "IDLE_TIMEOUT": "3600"}
    try:
        return measure(args, env)
    finally:
        client.query(f'DROP DATABASE "{client.settings.database}"', method="POST", db=None)
