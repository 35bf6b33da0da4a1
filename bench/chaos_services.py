"""The chaos run's own PostgreSQL, Redis and InfluxDB, and its ``serve`` nodes.

Each service is a private process on free loopback ports with its data under
the run's directory, so restarting, pausing or stopping one never touches the
machine's shared PostgreSQL and Redis that other tests use. Every method
here is safe to call in any state (a cleanup calls ``stop`` whatever
happened before)."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gevent
import urllib3

ROOT = Path(__file__).resolve().parents[1]
HTTP = urllib3.PoolManager(maxsize=16, retries=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process dies, even by SIGKILL."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until(check, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        gevent.sleep(step)
    return False


def tree(pid: int) -> list[int]:
    """A process and its live descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (a node's workers)."""
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def _kill(process: subprocess.Popen | None, sig: int = signal.SIGKILL, wait: float = 10) -> None:
    if process is not None and process.poll() is None:
        with contextlib.suppress(OSError):
            process.send_signal(sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pg_bin(name: str) -> str:
    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    found = shutil.which(name) or (installed[-1] if installed else "")
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


class Postgres:
    """initdb, pg_ctl start / restart / stop, and SIGSTOP / SIGCONT of the server."""

    def __init__(self, run_dir: Path) -> None:
        self.dir, self.log, self.port = run_dir / "pg", run_dir / "postgres.log", free_port()
        self.paused: list[int] = []

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _ctl(self, *args: str, check: bool = True, timeout: float = 90) -> None:
        """pg_ctl, its output to a file: a pipe would be inherited by the server."""
        with open(self.log.with_suffix(".ctl.log"), "ab") as out:
            subprocess.run(self._as_owner([pg_bin("pg_ctl"), "-D", str(self.dir), *args]),
                           check=check, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout)

    def start(self) -> None:
        if not (self.dir / "PG_VERSION").exists():
            self.dir.mkdir(mode=0o700)
            self.log.touch()
            if os.geteuid() == 0:
                for path in (self.dir, self.log):
                    shutil.chown(path, "postgres", "postgres")
            subprocess.run(self._as_owner([pg_bin("initdb"), "-D", str(self.dir), "-U",
                                           "postgres", "--auth=trust", "-E", "UTF8", "-N"]),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=120)
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                   "-c max_connections=200 -c fsync=off")
        self._ctl("-o", options, "-l", str(self.log), "start", "-w", "-t", "60")
        import psycopg2  # the service's driver

        with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=self.port,
                                                 user="postgres", dbname="postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = 'chaos'")
                if cur.fetchone() is None:
                    cur.execute("CREATE DATABASE chaos")

    def restart(self) -> None:
        self._ctl("-l", str(self.log), "restart", "-m", "fast", "-w", "-t", "60")

    def postmaster(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.dir / "postmaster.pid").read_text().split()[0])
        return None

    def pause(self, seconds: float) -> None:
        """SIGSTOP the postmaster and every child, sleep, SIGCONT them."""
        pid = self.postmaster()
        if pid is None:
            raise RuntimeError("PostgreSQL is not running")
        try:
            self.paused = tree(pid)
            for member in self.paused:
                with contextlib.suppress(OSError):
                    os.kill(member, signal.SIGSTOP)
            gevent.sleep(seconds)
        finally:
            self.resume()

    def resume(self) -> None:
        for member in self.paused:
            with contextlib.suppress(OSError):
                os.kill(member, signal.SIGCONT)
        self.paused = []

    def stop(self, mode: str = "fast") -> None:
        self.resume()
        if self.postmaster() is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                self._ctl("stop", "-m", mode, "-w", "-t", "30", check=False)


class Redis:
    """A redis-server child without persistence; a restart is kill -9 and start."""

    def __init__(self, run_dir: Path) -> None:
        self.dir, self.port = run_dir, free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        if not wait_until(self.ping, 15):
            raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def restart(self) -> None:
        _kill(self.process)
        self.start()

    def stop(self) -> None:
        _kill(self.process, signal.SIGTERM)


class Influx:
    """A private influxd (as tests/support/influx_server.py's), on the same ports each start."""

    def __init__(self, run_dir: Path) -> None:
        if shutil.which("influxd") is None:
            raise RuntimeError("influxd is not installed: run scripts/influxdb.sh start")
        self.dir, self.port = run_dir / "influx", free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "influxdb.conf"
        self.config.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n'
            f"  query-log-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            f'  max-body-size = 0\n[logging]\n  level = "error"\n')

    def start(self) -> None:
        with open(self.dir / "influxd.log", "ab") as log:
            self.process = subprocess.Popen(["influxd", "-config", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=die_with_parent)
        if not wait_until(lambda: HTTP.request("GET", f"{self.url}/ping",
                                               timeout=1).status == 204, 30):
            raise RuntimeError(f"private influxd did not start; see {self.dir}/influxd.log")

    def stop(self) -> None:
        _kill(self.process, signal.SIGTERM, wait=15)


class Node:
    """One ``python -m service serve``, in its own session (so kill -9 takes
    its workers too), started with ``prefix`` (``ip netns exec NAME``) if any."""

    def __init__(self, index: int, env: dict[str, str], prefix: list[str], url: str,
                 log: Path) -> None:
        self.index, self.env, self.prefix, self.url, self.log = index, env, prefix, url, log
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            out.write(f"---- chaos: start {self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "service", "serve"], cwd=ROOT,
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent)
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            return HTTP.request("GET", f"{self.url}/healthz", timeout=timeout).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def wait_healthy(self, timeout: float) -> bool:
        """Until it answers /healthz with 200; started again each time it exits
        meanwhile (a node refuses to start while PostgreSQL is unreachable)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                self.start()
            if wait_until(lambda: not self.alive or self.healthy(),
                          deadline - time.monotonic(), step=0.2) and self.alive:
                return True
            gevent.sleep(0.5)
        return False

    def kill9(self) -> None:
        if self.alive:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def sigterm(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, and wait until it exited (kill -9 after ``timeout``)."""
        if not self.alive:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def stop(self) -> None:
        self.sigterm(timeout=15.0)

    def rss_mb(self) -> float | None:
        return rss_mb(self.process.pid) if self.alive else None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""
