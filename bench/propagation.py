"""Control propagation: from a config change sent to one node until it is
live on both of two ``serve`` processes sharing one scratch PostgreSQL
database (LISTEN/NOTIFY). Each change is a PUT /api/v1/config of
``batch_timeout_ms`` (three values in turn, so each changes it), to A and B in
turn, one at a time, ``--gap-ms`` apart. Live on a node: its GET
/api/v1/config shows a ``seq`` at least the PUT answer's. The node that took
the PUT applies it before answering, so its side ends at the answer; the
other node is seen live by (``--detect``):

- ``log`` (default): its own INFO line ``config changed by ... (#seq)`` on its
  stderr pipe, written right after it takes the seq, without yielding: no GET
  could see it earlier, and nothing loads the node. A GET then checks it.
- ``poll``: GET /api/v1/config every ``--poll-ms`` on a keep-alive
  connection from the moment the PUT leaves (the log line is timed too).

Prints p50_ms, p99_ms, max_ms over ``--changes`` (after ``--warmup``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import Any

import gevent
import gevent.event

from bench import storage
from bench.harness import (
    LOOPBACK_CLIENTS,
    ROOT,
    SECRETS,
    free_port,
    proc_cpu_seconds,
    stop_process,
)

PARAMETER = "batch_timeout_ms"
VALUES = (40.0, 60.0, 80.0)  # balanced's is 50; cycled, consecutive changes always differ
ANNOUNCE = re.compile(r"config changed by .+? \(#(\d+)\)")  # service_layer/live_config.py
START_TIMEOUT_S = 30.0
LIVE_TIMEOUT_S = 10.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank: p99 of 100 values is the 99th smallest."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered) - 1e-9))) - 1]


def announced_seq(line: str) -> int | None:
    """The seq of a node's ``config changed by ... (#seq)`` log line, else None."""
    match = ANNOUNCE.search(line)
    return int(match.group(1)) if match else None


def plan(count: int) -> list[tuple[int, float]]:
    """(index of the node that takes the PUT, the value it sets) per change:
    the nodes in turn, and values that differ from the previous change's."""
    return [(i % 2, VALUES[i % len(VALUES)]) for i in range(count)]


class Node:
    """``python -m service serve`` on the shared database, logging at INFO to
    a pipe that a greenlet reads line by line, timing each config line."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="notify-bench-")
        self.env = {**os.environ, **SECRETS, **LOOPBACK_CLIENTS, "HOST": "127.0.0.1",
                    "PORT": str(self.port),
                    "VAR_DIR": self.dir, "NODE_ID": f"bench-{name}-{self.port}",
                    "LOG_LEVEL": "INFO", "DEMO": "0", **env}
        self._conn: http.client.HTTPConnection | None = None  # keep-alive
        self.seen: dict[int, float] = {}  # seq -> perf_counter when its line arrived
        self.tail: deque[str] = deque(maxlen=30)
        self._new = gevent.event.Event()
        self.process: subprocess.Popen | None = None
        self._reader: gevent.Greenlet | None = None

    def __enter__(self) -> Node:
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"], cwd=ROOT, env=self.env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self._reader = gevent.spawn(self._read)
            self._wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        stop_process(self.process, timeout=20)
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader.kill(block=False)
        if self._conn is not None:
            self._conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _read(self) -> None:
        for line in self.process.stdout:
            now = time.perf_counter()
            seq = announced_seq(line)
            if seq is not None:
                self.seen.setdefault(seq, now)
                self._new.set()
            self.tail.append(line.rstrip())

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.process.returncode}:\n"
                                   + "\n".join(self.tail))
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            gevent.sleep(0.1)
        raise RuntimeError(f"node {self.name} did not start:\n" + "\n".join(self.tail))

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """One request on this node's keep-alive connection: (status, body)."""
        if self._conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        try:
            self._conn.request(method, path, body=body, headers={
                "Authorization": f"Bearer {SECRETS['ADMIN_TOKEN']}",
                "Content-Type": "application/json"})
            response = self._conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            self._conn = None
            raise

    def config(self, change: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET /api/v1/config, or PUT ``change``; the answer's config."""
        status, data = self.request("GET" if change is None else "PUT", "/api/v1/config",
                                    None if change is None else json.dumps(change).encode())
        if status != 200:
            raise RuntimeError(f"node {self.name}: {status} {data[:200]!r}")
        return json.loads(data)

    def wait_logged(self, seq: int, timeout: float) -> float:
        """When the line for ``seq`` arrived (perf_counter), waiting for it."""
        deadline = time.monotonic() + timeout
        while seq not in self.seen:
            self._new.clear()
            if not self._new.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"node {self.name} logged no 'config changed ... (#{seq})' "
                                   f"within {timeout:g} s (try --detect poll):\n"
                                   + "\n".join(self.tail))
        return self.seen[seq]

    def poll_live(self, seq: int, interval: float, timeout: float) -> tuple[float, int]:
        """When a GET first showed ``seq`` or later (its answer's arrival), and
        how many GETs that took."""
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            polls += 1
            if self.config()["seq"] >= seq:
                return time.perf_counter(), polls
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} not at seq {seq} within {timeout:g} s")
            gevent.sleep(interval)


def one_change(receiver: Node, other: Node, value: float, seq: int,
               args: argparse.Namespace) -> dict[str, float]:
    """PUT ``value`` to ``receiver`` (the log's next event is ``seq``) and
    time it until live on both; in ms from the moment the PUT left."""
    if args.detect == "poll":
        watch = gevent.spawn(other.poll_live, seq, args.poll_ms / 1000, LIVE_TIMEOUT_S)
    else:
        watch = gevent.spawn(other.wait_logged, seq, LIVE_TIMEOUT_S)
    started = time.perf_counter()
    try:
        answer = receiver.config({"parameters": {PARAMETER: value},
                                  "reason": "bench propagation"})
        answered = time.perf_counter()
        live = watch.get()
    finally:
        watch.kill(block=False)
    if answer["seq"] != seq or answer["parameters"][PARAMETER] != value:
        raise RuntimeError(f"node {receiver.name} answered seq {answer['seq']} and "
                           f"{answer['parameters'][PARAMETER]}, not {seq} and {value}: "
                           "does something else write to this database?")
    live_at, polls = live if isinstance(live, tuple) else (live, 0)
    check = other.config()  # the definition itself, after the fact
    if check["seq"] < seq or check["parameters"][PARAMETER] != value:
        raise RuntimeError(f"node {other.name} was seen live at seq {seq} but shows "
                           f"seq {check['seq']}, {PARAMETER}={check['parameters'][PARAMETER]}")
    logged = other.wait_logged(seq, LIVE_TIMEOUT_S)
    return {"ms": (max(answered, live_at) - started) * 1000,
            "put_ms": (answered - started) * 1000, "other_ms": (live_at - started) * 1000,
            "logged_ms": (max(answered, logged) - started) * 1000, "polls": polls}


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench propagation")
    parser.add_argument("--changes", type=int, default=100, help="measured changes")
    parser.add_argument("--warmup", type=int, default=5, help="changes before, not counted")
    parser.add_argument("--gap-ms", type=float, default=50.0,
                        help="pause after a change is live on both, before the next")
    parser.add_argument("--detect", choices=("log", "poll"), default="log",
                        help="how the other node is seen live (module docstring)")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="with --detect poll")
    parser.add_argument("--admin-url", default=storage.PG_ADMIN_URL)
    args = parser.parse_args(argv)
    if args.changes < 1 or args.warmup < 0:
        parser.error("--changes must be at least 1 and --warmup at least 0")
    samples: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    with storage.ScratchDatabase(args.admin_url, prefix="bench_propagation") as url:
        # nothing listens on a just-freed port: telemetry goes to each node's spool
        env = {"DATABASE_URL": url, "INFLUX_URL": f"http://127.0.0.1:{free_port()}"}
        with Node("a", env) as a, Node("b", env) as b:
            nodes = (a, b)
            seq = a.config()["seq"]
            if b.config()["seq"] != seq:
                raise RuntimeError("the two nodes start at different seqs")
            log(f"propagation: nodes a :{a.port} and b :{b.port} on {url.rsplit('/', 1)[1]}; "
                f"{args.warmup} + {args.changes} changes, detect={args.detect}")
            cpu = [proc_cpu_seconds(n.process.pid) for n in nodes]
            for i, (to, value) in enumerate(plan(args.warmup + args.changes)):
                seq += 1
                m = one_change(nodes[to], nodes[1 - to], value, seq, args)
                if i == args.warmup:
                    cpu = [proc_cpu_seconds(n.process.pid) for n in nodes]
                if i >= args.warmup:
                    samples[nodes[to].name].append(m)
                done = i + 1 - args.warmup
                if done > 0 and (done % 20 == 0 or done == args.changes):
                    recent = [s["ms"] for side in samples.values() for s in side]
                    log(f"  {done:>4}/{args.changes}: last {m['ms']:.1f} ms, "
                        f"p50 so far {percentile(recent, 0.5):.1f} ms, "
                        f"max {max(recent):.1f} ms")
                gevent.sleep(args.gap_ms / 1000)
            cpu = [proc_cpu_seconds(n.process.pid) - c for n, c in zip(nodes, cpu, strict=True)]
    return summarize(samples, cpu, args)


def summarize(samples: dict[str, list[dict[str, float]]], cpu: list[float],
              args: argparse.Namespace) -> dict:
    every = [s for side in samples.values() for s in side]

    def figures(rows: list[dict[str, float]], key: str = "ms") -> dict[str, float]:
        values = [r[key] for r in rows]
        return {"p50_ms": round(percentile(values, 0.5), 2),
                "p99_ms": round(percentile(values, 0.99), 2),
                "max_ms": round(max(values), 2)}

    result: dict[str, Any] = {
        **figures(every),
        "changes": len(every),
        "nodes": 2,
        "storage": "postgresql",
        "detect": args.detect,
        "by_receiver": {name: figures(rows) for name, rows in samples.items() if rows},
        "put_p50_ms": round(percentile([s["put_ms"] for s in every], 0.5), 2),
        "other_node_p50_ms": round(percentile([s["other_ms"] for s in every], 0.5), 2),
        "other_first_share": round(sum(s["other_ms"] < s["put_ms"] for s in every)
                                   / len(every), 2),
        "node_cpu_s": {"a": round(cpu[0], 2), "b": round(cpu[1], 2)},
        "targets": {"p99_ms": "<= 500"},
    }
    if args.detect == "poll":
        result["log_line"] = figures(every, "logged_ms")
        result["polls_per_change"] = round(statistics.mean(s["polls"] for s in every), 1)
        seen = (f"seen by GET /api/v1/config every {args.poll_ms:g} ms from the moment the "
                "PUT left (late by up to an interval plus a GET's round trip; log_line: the "
                "same changes timed by the node's log line)")
    else:
        seen = ("seen by its own 'config changed ... (#seq)' INFO line on its stderr pipe, "
                "written right after it takes the seq (late by the pipe's wake-up, under "
                "1 ms; no requests to it meanwhile; each checked afterwards by a GET)")
    result["notes"] = (
        f"two `python -m service serve` on one scratch PostgreSQL database (LISTEN/NOTIFY), "
        f"telemetry to a closed port (spooled); {len(every)} PUT /api/v1/config of "
        f"{PARAMETER} to a and b in turn, one at a time, {args.gap_ms:g} ms apart, after "
        f"{args.warmup} uncounted; from the PUT leaving until live on both: the receiving "
        f"node at its answer (it applies before answering), the other {seen}. p99 by "
        f"nearest rank. other_first_share: how often the other node was live before the "
        f"PUT's answer. One keep-alive connection per node.")
    return result
