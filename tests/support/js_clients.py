"""The official socket.io-client in Node (clients/js/), driven from a test:
one client that reports each event, and a storm of many at once."""

from __future__ import annotations

import json
import queue
import subprocess
import time
from pathlib import Path

from tests.support.node_process import NodeEvents
from tests.support.repository import ROOT
from tests.support.server_process import RunningServer

JS_CLIENT = ROOT / "clients" / "js" / "receive.mjs"
STORM_CLIENT = ROOT / "clients" / "js" / "storm.mjs"


class JsClient(NodeEvents):
    """clients/js/receive.mjs, one JSON event per stdout line."""

    def __init__(self, url: str, token: str, *args: str) -> None:
        super().__init__([str(JS_CLIENT), url, token, *args])

    def wait_for(self, name: str, timeout: float = 10.0) -> dict:
        return self.expect(name, timeout, stderr_chars=10**6)

    def finish(self, timeout: float = 15.0) -> list[dict]:
        done = self.wait_for("done", timeout)
        self.process.wait(timeout=5)
        return self.seen if done else []

    def notifications(self) -> list[dict]:
        return [n for e in self.seen if e["event"] == "notifications" for n in e["batch"]]


def drain(client: JsClient) -> None:
    """Move what the client printed so far into ``client.seen``."""
    while True:
        try:
            client.seen.append(client.events.get_nowait())
        except queue.Empty:
            return


def received_offsets(client: JsClient) -> list[int]:
    drain(client)
    return [n["offset"] for n in client.notifications()]


def run_storm(server: RunningServer, users: list[str], tmp_path: Path, *args: str,
              timeout: float = 180.0) -> dict:
    """clients/js/storm.mjs: one official socket.io-client per user, all
    opened at once, checking order and completeness per client; its last
    output line (``done``) as a dict."""
    tokens = tmp_path / f"storm-{time.monotonic_ns()}.tokens"
    tokens.write_text("\n".join(server.token(u) for u in users))
    done = subprocess.run(
        ["node", str(STORM_CLIENT), server.url, str(tokens),
         "--publish-token", server.env["PUBLISH_TOKEN"], *args],
        capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, done.stderr[-2000:]
    result = json.loads(lines[-1])
    assert result["event"] == "done", lines[-3:]
    return result
