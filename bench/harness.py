"""Shared pieces for end-to-end benchmarks: a `serve` process of its own,
receivers in Node (the official socket.io-client), and HTTP publishers."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent
import gevent.pool
import urllib3

from service.adapters.tokens import UserTokens
from service.client import Publisher, PublishError

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"PUBLISH_TOKEN": "bench-publish", "ADMIN_TOKEN": "bench-admin",
           "USER_TOKEN_SECRET": "bench-user-secret"}


def raise_nofile() -> int:
    """Lift the soft open-file limit to the hard one, and return it: children
    inherit it, and a server holding thousands of sockets (plus its database
    and log) needs more than the usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a live process and of its live descendants: ``serve`` may
    run as a supervisor with worker processes (WORKERS), which do the work."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += proc_cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile: its time is no longer anyone's to count
    return total


def stop_process(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every benchmark client connects from 127.0.0.1: the per-address rate
# limits would count thousands of clients as one (the per-user ones stay on).
LOOPBACK_CLIENTS = {"CONNECT_RATE_PER_IP": "0", "EVENT_RATE_PER_IP": "0"}


class ServeProcess:
    """``python -m service serve`` with its own var dir, stopped on exit."""

    def __init__(self, env: dict[str, str], lift_ip_limits: bool = True) -> None:
        """``lift_ip_limits=False`` keeps the per-address limits at their
        defaults, for clients spread over many source addresses (or a run
        shaped like a harness that does not lift them)."""
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="notify-bench-"))
        self.url = f"http://127.0.0.1:{self.port}"
        lifted = LOOPBACK_CLIENTS if lift_ip_limits else {}
        self.env = {**os.environ, **SECRETS, **lifted, "PORT": str(self.port),
                    "HOST": "127.0.0.1",
                    "VAR_DIR": str(self.dir), "NODE_ID": f"bench-{self.port}",
                    "LOG_LEVEL": "WARNING", **env}
        self.http = urllib3.PoolManager(maxsize=16, retries=False)
        self.publisher = Publisher(self.url, SECRETS["PUBLISH_TOKEN"], timeout=30.0,
                                   pool_maxsize=16)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServeProcess:
        with open(self.dir / "serve.log", "wb") as log:  # the child keeps its own copy
            self.process = subprocess.Popen([sys.executable, "-m", "service", "serve"],
                                            cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.request("GET", f"{self.url}/healthz", timeout=1).status == 200:
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            gevent.sleep(0.1)
        raise RuntimeError(f"serve did not start: {(self.dir / 'serve.log').read_text()}")

    def __exit__(self, *_exc: object) -> None:
        self.publisher.close()
        stop_process(self.process, timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far (its workers' too)."""
        return tree_cpu_seconds(self.process.pid)

    def metrics(self) -> dict:
        response = self.http.request(
            "GET", f"{self.url}/admin/api/performance/metrics",
            headers={"Authorization": f"Bearer {SECRETS['ADMIN_TOKEN']}"}, timeout=10)
        return json.loads(response.data)

    def wait_settled(self, telemetry_on: bool, timeout: float = 10.0) -> None:
        """Start measuring in a steady state: with telemetry on, after the
        writer's first write (which also creates the database and its
        retention policies); then a second more, whatever the mode."""
        deadline = time.monotonic() + timeout
        while telemetry_on and time.monotonic() < deadline:
            if self.metrics()["telemetry"]["written"] > 0:
                break
            gevent.sleep(0.2)
        gevent.sleep(1.0)

    def publish(self, body: dict) -> None:
        """One publish through service.client: a 429 or 503 is retried after
        the wait the server asks, with the same Idempotency-Key, so a blip
        neither ends the run nor delivers a broadcast twice."""
        try:
            self.publisher.publish_body(body)
        except PublishError as exc:
            raise RuntimeError(str(exc)) from exc

    def publish_many(self, bodies: list[dict], concurrency: int = 4) -> None:
        pool = gevent.pool.Pool(concurrency)
        for body in bodies:
            pool.spawn(self.publish, body)
        pool.join(raise_error=True)


class NodeReceivers:
    """K users connected from one Node process (clients/js/load.mjs)."""

    def __init__(self, url: str, users: list[str], expect_total: int,
                 timeout_ms: int = 120_000) -> None:
        tokens = UserTokens(SECRETS["USER_TOKEN_SECRET"], 3600)
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as handle:
            handle.write("\n".join(tokens.issue(u) for u in users))
        self._tokens_file = handle.name
        self.process = subprocess.Popen(
            ["node", str(ROOT / "clients" / "js" / "load.mjs"), url, handle.name,
             "--expect-total", str(expect_total), "--timeout-ms", str(timeout_ms)],
            stdout=subprocess.PIPE, text=True)

    def _next_event(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the Node receivers exited early")
        return json.loads(line)

    def wait_ready(self) -> None:
        event = self._next_event()
        if event.get("event") != "ready":
            raise RuntimeError(f"receivers did not connect: {event}")

    def wait_done(self) -> dict:
        event = self._next_event()
        self.process.wait(timeout=30)
        os.unlink(self._tokens_file)
        return event


def paired_cpu(env_a: dict[str, str], env_b: dict[str, str], clients: int,
               broadcasts: int) -> tuple[float, float]:
    """Two servers at once, each with its own receivers and the same broadcast
    load, so that whatever slows this shared machine slows both alike.
    Returns each server's CPU seconds for the same deliveries."""
    expect = clients * broadcasts
    with ServeProcess(env_a) as a, ServeProcess(env_b) as b:
        servers = {"a": a, "b": b}
        receivers = {name: NodeReceivers(s.url, [f"{name}{u}" for u in range(clients)],
                                         expect_total=expect)
                     for name, s in servers.items()}
        for r in receivers.values():
            r.wait_ready()
        for s in servers.values():
            s.wait_settled(s.env.get("TELEMETRY_ENABLED", "1") != "0")
        cpu = {name: s.cpu_seconds() for name, s in servers.items()}
        bodies = [{"broadcast": True, "category": "bench", "payload": {"i": i}}
                  for i in range(broadcasts)]
        gevent.joinall([gevent.spawn(s.publish_many, bodies) for s in servers.values()],
                       raise_error=True)
        done = {name: r.wait_done() for name, r in receivers.items()}
        cpu = {name: s.cpu_seconds() - cpu[name] for name, s in servers.items()}
    for name, result in done.items():
        if result["received"] != expect:
            raise RuntimeError(f"server {name}: received {result['received']} of {expect}")
    return cpu["a"], cpu["b"]
