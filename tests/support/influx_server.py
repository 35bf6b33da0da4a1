"""A private InfluxDB server for tests that stop and restart it.

The shared InfluxDB (scripts/influxdb.sh) serves every other test; a test
that takes InfluxDB down gets its own influxd, on free ports, with its data
in the test's temporary directory.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import urllib3

from tests.support.free_port import free_port


class PrivateInflux:
    def __init__(self, directory: Path, *, auth_enabled: bool = False) -> None:
        if shutil.which("influxd") is None:
            raise RuntimeError("influxd is not installed: run scripts/influxdb.sh start")
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "influxdb.conf"
        self.config.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{directory}/meta"\n'
            f'[data]\n  dir = "{directory}/data"\n  wal-dir = "{directory}/wal"\n'
            f"  query-log-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            f"  auth-enabled = {'true' if auth_enabled else 'false'}\n"
            f'[logging]\n  level = "error"\n'
        )

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.directory / "influxd.log", "ab")
        self.process = subprocess.Popen(["influxd", "-config", str(self.config)],
                                        stdout=log, stderr=subprocess.STDOUT)
        http = urllib3.PoolManager(retries=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if http.request("GET", f"{self.url}/ping", timeout=1).status == 204:
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"private influxd did not start; see {self.directory}/influxd.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
