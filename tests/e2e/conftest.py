"""A running node: ``python -m service serve`` as its own process, on real
PostgreSQL and a real InfluxDB, and the clients that talk to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3

from service.adapters.tokens import UserTokens
from tests.conftest import INFLUX_URL
from tests.support.node_process import NodeEvents

ROOT = Path(__file__).resolve().parents[2]
JS_CLIENT = ROOT / "clients" / "js" / "receive.mjs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    env: dict
    process: subprocess.Popen
    log_path: Path
    http: urllib3.PoolManager = field(
        default_factory=lambda: urllib3.PoolManager(retries=False, maxsize=8))

    def token(self, user_id: str) -> str:
        return UserTokens(self.env["USER_TOKEN_SECRET"], 3600).issue(user_id)

    def request(self, method: str, path: str, *, token: str | None = None, body=None,
                raw: bytes | None = None) -> urllib3.BaseHTTPResponse:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        return self.http.request(method, self.url + path, body=data, headers=headers,
                                 timeout=10.0)

    def publish(self, body: dict) -> dict:
        response = self.request("POST", "/api/v1/notifications",
                                token=self.env["PUBLISH_TOKEN"], body=body)
        assert response.status == 202, response.data
        return response.json()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """The serving process's resident memory, from the kernel."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def start_server(env_overrides: dict, tmp_path: Path) -> RunningServer:
    port = int(env_overrides.get("PORT") or free_port())
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "VAR_DIR": str(tmp_path / "var"),
        "INFLUX_URL": INFLUX_URL,
        "PUBLISH_TOKEN": "test-publish-token",
        "ADMIN_TOKEN": "test-admin-token",
        "USER_TOKEN_SECRET": "test-user-secret",
        "NODE_ID": f"e2e-{port}",
        **env_overrides,
    }
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "service", "serve"], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(url=f"http://127.0.0.1:{port}", env=env, process=process,
                           log_path=log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{server.log_text()}")
        try:
            if server.request("GET", "/healthz").status == 200:
                return server
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"serve did not become healthy:\n{server.log_text()}")


def stop_server(server: RunningServer) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@pytest.fixture
def server(pg_url, influx_database, tmp_path):
    running = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database}, tmp_path)
    yield running
    assert stop_server(running) == 0, running.log_text()


@pytest.fixture
def sqlite_server(influx_database, tmp_path):
    running = start_server({"INFLUX_DB": influx_database}, tmp_path)
    yield running
    assert stop_server(running) == 0, running.log_text()


class JsClient(NodeEvents):
    """The official socket.io-client in Node, one JSON event per stdout line."""

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


@pytest.fixture
def js_client():
    made: list[JsClient] = []

    def make(url: str, token: str, *args: str) -> JsClient:
        client = JsClient(url, token, *args)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


STORM_CLIENT = ROOT / "clients" / "js" / "storm.mjs"


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
