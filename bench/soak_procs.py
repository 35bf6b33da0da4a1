"""The soak benchmark's processes: the Node clients (clients/js/soak.mjs)
and the two ``serve`` nodes, and what is read off them (health, logs,
connections, RSS)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent
import gevent.event
import urllib3

from bench.harness import ROOT, SECRETS, ServeProcess, stop_process
from bench.soak_stats import Tally
from service.adapters.tokens import UserTokens

SOAK_JS = ROOT / "clients" / "js" / "soak.mjs"


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process dies, even by SIGKILL."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Clients:
    """One clients/js/soak.mjs process: some users, all on one node."""

    def __init__(self, url: str, node: int, users: list[int], tally: Tally,
                 args: argparse.Namespace) -> None:
        issuer = UserTokens(SECRETS["USER_TOKEN_SECRET"], 24 * 3600)
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as handle:
            handle.write("\n".join(issuer.issue(f"soak{u}") for u in users))
        self.tokens_file, self.node, self.users, self.tally = handle.name, node, users, tally
        self.last: dict = {}
        self.failed_users: list[int] = []
        self.was_ready = False
        self.ready, self.done = gevent.event.Event(), gevent.event.Event()
        self.process = subprocess.Popen(
            ["node", str(SOAK_JS), url, handle.name, "--node", str(node),
             "--window", str(args.window), "--give-up-ms", str(int(args.give_up_s * 1000))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        for line in self.process.stdout:
            event = json.loads(line)
            self.tally.add(event.pop("hist_t"), event.pop("hist_b"))
            self.last = event
            if event["event"] == "ready":
                self.failed_users = [self.users[i] for i in event["failed_users"]]
                self.was_ready = True
                self.ready.set()
        self.ready.set()  # exited: wake whoever waits, who checks `last`
        self.done.set()

    def close(self, timeout: float = 30) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.write("close\n")
            self.process.stdin.flush()
        self.done.wait(timeout)
        stop_process(self.process, timeout=5)
        self._reader.kill(block=False)
        with contextlib.suppress(OSError):
            os.unlink(self.tokens_file)


def start_node(name: str, env: dict[str, str]) -> ServeProcess:
    """``python -m service serve``, healthy; or stopped, and an error raised."""
    node = ServeProcess({**env, "NODE_ID": f"soak-{name}"})
    try:
        with open(node.dir / "serve.log", "wb") as out:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"], cwd=ROOT, env=node.env,
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 60
        while not healthy(node):
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {name} did not start:\n{log_tail(node)}")
            gevent.sleep(0.2)
    except BaseException:
        node.__exit__()
        raise
    return node


def healthy(node: ServeProcess) -> bool:
    try:
        return node.http.request("GET", f"{node.url}/healthz", timeout=2).status == 200
    except urllib3.exceptions.HTTPError:
        return False


def log_lines(node: ServeProcess) -> list[str]:
    path = node.dir / "serve.log"
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def log_tail(node: ServeProcess, lines: int = 30) -> str:
    return "\n".join(log_lines(node)[-lines:])


def node_connections(node: ServeProcess) -> int | None:
    """How many connections the node itself counts (its metrics route)."""
    try:
        return node.metrics().get("connections")
    except (urllib3.exceptions.HTTPError, ValueError):
        return None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
