"""A running node: ``python -m service serve`` as its own process, on the
test's PostgreSQL (or SQLite) and InfluxDB, and the HTTP calls a test makes
to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3

from service.adapters.tokens import UserTokens
from tests.support.backing_services import INFLUX_URL
from tests.support.free_port import free_port
from tests.support.repository import ROOT


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
