"""clients/js/storm.mjs driven from Python: one Node process of official
socket.io-client connections, its status lines read as they come.

``bench storm`` runs several with ``--wait-go`` and ``--publish external``
(they open together on "go"; this process publishes and then hands them its
publish log to check deliveries against); ``bench fanout``'s harness-shaped
run runs one with ``--publish after``, publishing from inside Node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import gevent
import gevent.event

from bench.harness import SECRETS
from bench.loadgen import JS, Answer
from service.adapters.tokens import UserTokens

STORM_JS = JS / "storm.mjs"


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listener's accept
    queue was full (machine-wide): each costs its client a SYN retransmit,
    1 s on Linux, which shows as a second-long connect."""
    head, values = Path("/proc/net/netstat").read_text().splitlines()[:2]
    return int(dict(zip(head.split(), values.split(), strict=True))["ListenOverflows"])


def listen_backlog(port: int) -> int | None:
    """A listening socket's accept-queue length (``ss``'s Send-Q), if ss is here."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                         text=True, check=False).stdout.split()
    return int(out[2]) if len(out) > 2 else None


def issue_tokens(users: list[str]) -> list[str]:
    issuer = UserTokens(SECRETS["USER_TOKEN_SECRET"], 3600)
    return [issuer.issue(u) for u in users]


class StormClients:
    """One storm.mjs process; ``last`` is its latest progress line."""

    def __init__(self, url: str, tokens: list[str], *, publish: str,
                 extra: tuple[str, ...] = (), addresses: int = 0,
                 address_start: int = 0, timeout_s: float = 180.0) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as handle:
            handle.write("\n".join(tokens))
        self._files = [handle.name]
        command = ["node", str(STORM_JS), url, handle.name,
                   "--publish-token", SECRETS["PUBLISH_TOKEN"], "--publish", publish,
                   "--addresses", str(addresses), "--address-start", str(address_start),
                   "--timeout-ms", str(int(timeout_s * 1000)), *extra]
        # stdin is always a pipe: "go" and "finish" come that way, and a Node
        # child must not read the terminal of whoever runs the benchmark
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.last: dict = {}
        self.loaded = gevent.event.Event()
        self.settled = gevent.event.Event()
        self.done = gevent.event.AsyncResult()
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        for line in self.process.stdout:
            event = json.loads(line)
            if event["event"] == "loaded":
                self.loaded.set()
            elif event["event"] == "done":
                self.done.set(event)
                break
            else:
                self.last = event
                if event.get("at") == "settled":
                    self.settled.set()
        # exited (or done): wake every waiter; they check what they got
        self.loaded.set()
        self.settled.set()
        if not self.done.ready():
            self.done.set_exception(RuntimeError(
                f"storm.mjs exited without a result (exit {self.process.wait()})"))

    def _send(self, line: str) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()

    def go(self) -> None:
        self._send("go")

    @property
    def settled_at_ms(self) -> float | None:
        return self.last.get("settled_at_ms")

    def finish(self, answers: list[Answer]) -> None:
        """Hand over the publish log; the result comes with ``result()``."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump([[a.offset, a.sent_ms] for a in answers if a.offset is not None], handle)
        self._files.append(handle.name)
        self._send(f"finish {handle.name}")

    def result(self, timeout: float) -> dict:
        event = self.done.get(timeout=timeout)
        self.process.wait(timeout=30)
        return event

    def close(self) -> None:
        """Kill it if it still runs, and remove its files."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.kill(block=False)
        for name in self._files:
            if os.path.exists(name):
                os.unlink(name)
