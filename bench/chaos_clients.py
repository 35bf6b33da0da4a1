"""The chaos run's clients: clients/js/chaos.mjs as a child process (its
stdout events read by a greenlet, its commands on stdin), and the list of
clients and users it is given."""

from __future__ import annotations

import contextlib
import json
import math
import random
import subprocess
from pathlib import Path

import gevent
import gevent.event

from bench.chaos_services import ROOT, die_with_parent, wait_until
from service.adapters.tokens import UserTokens

CHAOS_JS = ROOT / "clients" / "js" / "chaos.mjs"


def make_clients(count: int, secret: str, seed: int) -> list[dict]:
    """``count`` clients over about count / 1.5 users: every user has one,
    and the rest go to random users as their second."""
    rng = random.Random(f"clients-{seed}")
    users = [f"u{k}" for k in range(max(1, math.ceil(count / 1.5)))][:count]
    owners = users + rng.sample(users, count - len(users))
    tokens = UserTokens(secret, 7 * 86_400)
    issued = {user: tokens.issue(user) for user in users}
    return [{"client": f"c{j}", "user": user, "token": issued[user]}
            for j, user in enumerate(owners)]


class ChaosClients:
    def __init__(self, clients: list[dict], urls: list[str], out: Path, work: Path,
                 seed: int, churn_per_min: float) -> None:
        spec = work / "clients.json"
        spec.write_text(json.dumps(clients))
        self.status: dict = {}
        self.events: dict[str, gevent.event.Event] = {
            name: gevent.event.Event() for name in ("ready", "settled", "done")}
        self.settled: dict = {}
        self.stderr_path = out.parent / "chaos-mjs.log"
        with open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                ["node", str(CHAOS_JS), "--clients", str(spec), "--nodes", ",".join(urls),
                 "--out", str(out), "--seed", str(seed), "--churn-per-min", str(churn_per_min),
                 "--status-ms", "1000"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                preexec_fn=die_with_parent)
        self.exited = gevent.event.Event()
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    name = event.get("event")
                    if name in ("status", "done"):
                        self.status = event
                    if name == "settled":
                        self.settled = event
                    if name in self.events:
                        self.events[name].set()
        finally:
            self.exited.set()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self.exited.is_set()

    def wait(self, name: str, timeout: float) -> bool:
        """Until chaos.mjs said ``name``; False if it did not (or exited)."""
        return wait_until(lambda: self.events[name].is_set() or not self.alive, timeout,
                          step=0.2) and self.events[name].is_set()

    def send(self, command: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()

    def received(self) -> int:
        return int(self.status.get("received", 0))

    def connected(self) -> int:
        return int(self.status.get("connected", 0))

    def wait_quiet(self, quiet_s: float, limit_s: float) -> float:
        """Until ``received`` has not grown for ``quiet_s`` (at most ``limit_s``)."""
        started = last_change = gevent.get_hub().loop.now()
        last = self.received()
        while gevent.get_hub().loop.now() - started < limit_s and self.alive:
            gevent.sleep(0.5)
            now, seen = gevent.get_hub().loop.now(), self.received()
            if seen != last:
                last, last_change = seen, now
            elif now - last_change >= quiet_s:
                break
        return gevent.get_hub().loop.now() - started

    def close(self, timeout: float = 30.0) -> bool:
        """``close``: final records written, then it exits. True if it said done."""
        self.send("close")
        done = self.wait("done", timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.stop()
        return done

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.kill(block=False)

    def stderr_tail(self, lines: int = 10) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
