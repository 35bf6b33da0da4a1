"""``bench tuning``'s rig: one real node (``python -m service serve``, SQLite
default) and its jobs process (``python -m service jobs``) on a database of
their own in the project's InfluxDB, with the analysis intervals and windows
shortened by configuration (JOB_INTERVALS, *_WINDOW_S); the control API
calls an admin makes; the figures the rules read, per slice of a window."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import gevent
import urllib3

from bench.harness import ROOT, SECRETS, ServeProcess, stop_process
from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.influx_reader import InfluxAnalysisReader

INFLUX_URL = "http://127.0.0.1:8086"
ADVICE_WINDOW_S = 40
IMPACT_WINDOW_S = 60
# the jobs that decide run every few seconds; the others keep their pace
JOB_ENV = {"JOB_INTERVALS": "health=5,recommendations=5,impact=5",
           "HEALTH_WINDOW_S": "30", "ADVICE_WINDOW_S": str(ADVICE_WINDOW_S),
           "IMPACT_WINDOW_S": str(IMPACT_WINDOW_S), "INFLUX_URL": INFLUX_URL}
ADMIN = {"Authorization": f"Bearer {SECRETS['ADMIN_TOKEN']}",
         "Content-Type": "application/json"}


def parse_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Rig:
    """A node and its jobs process on InfluxDB database ``tuning_<name>_<time>``,
    both stopped (and the database dropped) on exit."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.database = f"tuning_{name.replace('-', '_')}_{int(time.time())}"
        self.serve = ServeProcess({**JOB_ENV, "INFLUX_DB": self.database, **env})
        self.jobs: subprocess.Popen | None = None
        self.http = urllib3.PoolManager(maxsize=8, retries=False)
        self.influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=self.database))
        self.reader = InfluxAnalysisReader(self.influx)

    def __enter__(self) -> Rig:
        self.serve.__enter__()
        return self

    def start_jobs(self) -> None:
        """The jobs process, on the node's settings and database, with a pool
        of its own default size: the pool under test is the node's (with
        pool-wait's DB_POOL_SIZE=1 in the jobs too, 9 job runs failed in 40 s
        and its recommendation never came, though the figures met the rule)."""
        log = open(self.serve.dir / "jobs.log", "wb")  # the child keeps its own copy
        env = {k: v for k, v in self.serve.env.items()
               if k not in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW")}
        self.jobs = subprocess.Popen([sys.executable, "-m", "service", "jobs"], cwd=ROOT,
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while b"jobs scheduler running" not in (self.serve.dir / "jobs.log").read_bytes():
            if self.jobs.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("jobs did not start: "
                                   + (self.serve.dir / "jobs.log").read_text()[-2000:])
            gevent.sleep(0.2)

    def __exit__(self, *_exc: object) -> None:
        stop_process(self.jobs, timeout=10)
        self.serve.__exit__()
        try:
            self.influx.query(f'DROP DATABASE "{self.database}"', method="POST", db=None)
        except Exception:  # a database left behind is no failure
            pass

    @property
    def url(self) -> str:
        return self.serve.url

    # -- the control API, as an admin calls it -------------------------------
    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, self.url + path, headers=ADMIN, timeout=30,
                                     body=None if body is None else json.dumps(body))
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} answered {response.status}: "
                               f"{response.data[:300]!r}")
        return json.loads(response.data)

    def recommendations(self) -> list[dict]:
        return self.call("GET", "/api/v1/recommendations")["recommendations"]

    def history(self) -> list[dict]:
        return self.call("GET", "/api/v1/config/history?limit=1000")["events"]

    def wait_issued(self, rule: str, timeout: float) -> dict | None:
        """The first open recommendation of ``rule`` to appear, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.recommendations():
                if rec.get("rule") == rule and rec["status"] == "issued":
                    return rec
            gevent.sleep(1.0)
        return None

    def apply(self, rec_id: str) -> dict:
        """POST …/apply; the ``recommendation_applied`` event it appended."""
        self.call("POST", f"/api/v1/recommendations/{quote(rec_id, safe='')}/apply",
                  {"reason": "bench tuning"})
        return next(e for e in reversed(self.history())
                    if e["type"] == "recommendation_applied" and e["payload"].get("id") == rec_id)

    def change(self, body: dict, reason: str) -> dict:
        """PUT /api/v1/config; the event it appended."""
        seq = self.call("PUT", "/api/v1/config", {**body, "reason": reason})["seq"]
        return next(e for e in self.history() if e["seq"] == seq)

    def wait_impact(self, seq: int, timeout: float) -> tuple[dict | None, dict | None]:
        """The impact job's ``impact_measured`` of change ``seq``, and the
        rollback it appended with it if any."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.history()
            for index, event in enumerate(events):
                if event["type"] == "impact_measured" and event["payload"].get("seq") == seq:
                    rollback = next((e for e in events[index + 1:] if e["type"] == "rollback"
                                     and e["payload"].get("to_seq") == seq - 1), None)
                    return event, rollback
            gevent.sleep(1.0)
        return None, None

    # -- figures ---------------------------------------------------------------
    def figures(self, start: datetime, end: datetime, figure: Callable[[dict], float | None],
                slices: int) -> dict[str, Any]:
        """``figure`` of the rules' inputs over each of ``slices`` equal parts of
        [start, end): their mean and standard deviation (the spread)."""
        step = (end - start) / slices
        values = [figure(self.reader.health_inputs(start + i * step, start + (i + 1) * step))
                  for i in range(slices)]
        values = [v for v in values if v is not None]
        if not values:
            return {"mean": None, "sd": None, "n": 0}
        return {"mean": round(statistics.fmean(values), 4),
                "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                "n": len(values)}


def now() -> datetime:
    return datetime.now(UTC)


def wait_until(moment: datetime) -> None:
    left = (moment - now()).total_seconds()
    if left > 0:
        gevent.sleep(left)


def seconds(delta: timedelta) -> float:
    return round(delta.total_seconds(), 1)
