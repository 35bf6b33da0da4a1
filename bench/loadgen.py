"""Load generation for the fan-out benchmark: a Node socket.io peer server,
groups of Node receiver processes (clients/js/load.mjs), and HTTP publishers.
One design for every server measured, so a ratio compares servers, not
load generators."""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import gevent
import gevent.pool
import urllib3

from bench.harness import ROOT, SECRETS, free_port, proc_cpu_seconds, stop_process
from service.adapters.tokens import UserTokens

JS = ROOT / "clients" / "js"


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class NodePeer:
    """clients/js/peer-server.mjs on a free port, stopped on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> NodePeer:
        self.process = subprocess.Popen(
            ["node", str(JS / "peer-server.mjs"), str(self.port), SECRETS["PUBLISH_TOKEN"]],
            stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if '"listening"' not in line:
            raise RuntimeError(f"the peer server did not start: {line!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        stop_process(self.process, timeout=10)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.process.pid)


class ReceiverGroup:
    """Users spread over several load.mjs processes: one Node event loop
    holds a few hundred sockets cheaply, and two or more use both cores the
    way the server's clients would."""

    def __init__(self, url: str, users: list[str], per_user: int, procs: int,
                 latency_from: str = "none", timeout_s: float = 180.0,
                 idle_s: float = 10.0) -> None:
        tokens = UserTokens(SECRETS["USER_TOKEN_SECRET"], 3600)
        self.expected = len(users) * per_user
        self._files: list[str] = []
        self.processes: list[subprocess.Popen] = []
        for k in range(procs):
            share = users[k::procs]
            with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as handle:
                handle.write("\n".join(tokens.issue(u) for u in share))
            self._files.append(handle.name)
            args = ["node", str(JS / "load.mjs"), url, handle.name,
                    "--expect-total", str(len(share) * per_user),
                    "--timeout-ms", str(int(timeout_s * 1000)),
                    "--idle-ms", str(int(idle_s * 1000)), "--latency-from", latency_from]
            if latency_from != "none":
                args.append("--hist")
            self.processes.append(subprocess.Popen(args, stdout=subprocess.PIPE, text=True))
        self._ready_cpu_ms = 0.0

    def _next_event(self, process: subprocess.Popen) -> dict:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("a Node receiver process exited early")
        return json.loads(line)

    def wait_ready(self) -> None:
        for process in self.processes:
            event = self._next_event(process)
            if event.get("event") != "ready":
                raise RuntimeError(f"receivers did not connect: {event}")
            self._ready_cpu_ms += event["cpu_ms"]

    def wait_done(self) -> dict:
        """Merged: received, batches, last_receipt_ms (the latest of all), cpu_s from
        ready to done (what receiving cost, not connecting), the latency
        histogram and the first errors."""
        events = [self._next_event(p) for p in self.processes]
        for process in self.processes:
            process.wait(timeout=30)
        for name in self._files:
            os.unlink(name)
        hist: dict[float, int] = {}
        for event in events:
            for key, count in event.get("latency_hist", {}).items():
                hist[int(key) / 4] = hist.get(int(key) / 4, 0) + count
        return {
            "received": sum(e["received"] for e in events),
            "batches": sum(e["batches"] for e in events),
            "last_receipt_ms": max(e["last_receipt_ms"] for e in events),
            "cpu_s": (sum(e["cpu_ms"] for e in events) - self._ready_cpu_ms) / 1000,
            "hist": hist,
            "errors": [err for e in events for err in e["errors"]][:10],
        }

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def percentile(hist: dict[float, int], q: float) -> float | None:
    """The q-quantile of a {value: count} histogram (nearest rank)."""
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = max(1, int(q * total + 0.999999)), 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value
    return max(hist)


class Answer(NamedTuple):
    """One publish as its publisher saw it."""

    sent_ms: float  # epoch ms when the request left: receivers compare their connect time
    ms: float  # until the whole answer was read
    status: str  # the HTTP status, or "error: ..." when no answer came
    offset: int | None  # the entry's offset, from a 202
    text: str  # the body of any other answer (for leak checks), else ""


def answer_figures(answers: list[Answer]) -> dict:
    """p50, p99 (nearest rank, to 0.1 ms) and max of the answer times, their
    count, and the statuses seen."""
    hist = Counter(round(a.ms, 1) for a in answers)
    return {"n": len(answers), "p50_ms": percentile(hist, 0.50),
            "p99_ms": percentile(hist, 0.99), "max_ms": percentile(hist, 1.0),
            "status": dict(Counter(a.status for a in answers))}


class Publisher:
    """Broadcasts over the publish API, the same for every server: the body
    is encoded when it is sent, so ``payload.t`` (epoch ms) is the moment the
    publish left, and receivers can measure the whole publish-to-client path."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = f"{url}/api/v1/notifications"
        self.concurrency = concurrency
        # room for paced publishes that overlap when an answer is slow
        self.http = urllib3.PoolManager(maxsize=max(concurrency, 16), retries=False)
        self.headers = {"Authorization": f"Bearer {SECRETS['PUBLISH_TOKEN']}",
                        "Content-Type": "application/json"}
        self.late = 0  # paced publishes that left more than 10 ms after their slot
        self.failed: list[str] = []  # kept, not raised: the shortfall is reported
        self.answers: list[Answer] = []  # every publish, answered or not, in answer order

    def publish(self, i: int) -> None:
        sent_ms = time.time() * 1000.0
        body = {"broadcast": True, "category": "bench", "payload": {"i": i, "t": sent_ms}}
        started = time.perf_counter()
        try:
            response = self.http.request("POST", self.url, body=json.dumps(body),
                                         headers=self.headers, timeout=60)
        except urllib3.exceptions.HTTPError as exc:
            self.answers.append(Answer(sent_ms, (time.perf_counter() - started) * 1000,
                                       f"error: {type(exc).__name__}", None, ""))
            raise
        ms = (time.perf_counter() - started) * 1000
        text = response.data.decode("utf-8", "replace")
        offset = json.loads(text).get("offset") if response.status == 202 else None
        # the body is kept only when something went wrong: it is what a caller shows
        self.answers.append(Answer(sent_ms, ms, str(response.status), offset,
                                   "" if response.status == 202 else text[:300]))
        if response.status != 202:
            # a 429 would mean the level's broadcast throttle cut in: the
            # figure would then measure the throttle, not delivery
            raise RuntimeError(f"publish answered {response.status}: {response.data[:200]!r}")

    def _collect(self, greenlets: list[gevent.Greenlet]) -> None:
        # join(raise_error=True) only sees failures during the join itself
        self.failed += [repr(g.exception)[:200] for g in greenlets if g.exception]

    def burst(self, n: int) -> None:
        """n publishes, as fast as ``concurrency`` connections allow."""
        pool = gevent.pool.Pool(self.concurrency)
        greenlets = [pool.spawn(self.publish, i) for i in range(n)]
        pool.join()
        self._collect(greenlets)

    def paced(self, n: int | None, per_second: float,
              until: Callable[[], bool] = lambda: False) -> None:
        """n publishes (None: no limit) at a steady rate, stopping early once
        ``until()``; each is spawned on its slot, so one slow answer does not
        delay the ones after it."""
        started = time.monotonic()
        group, greenlets = gevent.pool.Group(), []
        for i in itertools.count() if n is None else range(n):
            slot = started + i / per_second
            if slot - time.monotonic() < -0.01:
                self.late += 1
            # waited in steps, asking ``until`` between: at a slow pace the
            # end may come long before the next slot
            while not until() and (delay := slot - time.monotonic()) > 0:
                gevent.sleep(min(delay, 0.05))
            if until():
                break
            greenlets.append(group.spawn(self.publish, i))
        group.join()
        self._collect(greenlets)
