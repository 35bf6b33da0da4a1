"""The tuning loop end to end, on the quickest rule (``cache-grow``): a real
node and its jobs process on a real InfluxDB, with the analysis intervals and
windows shortened by configuration; unread reads over a working set larger
than the query cache; the recommendation issued into the control log,
applied through the control API, and judged by the impact job, whose
measured effect shows the hit rate the rule promised."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import urllib3

from service.domain.impact import VERDICTS
from tests.support.repository import ROOT
from tests.support.server_process import start_server, stop_server
from tests.support.waiting import wait_for

IMPACT_WINDOW_S = 20
JOB_ENV = {"JOB_INTERVALS": "health=2,recommendations=2,impact=2",
           "ADVICE_WINDOW_S": "15", "IMPACT_WINDOW_S": str(IMPACT_WINDOW_S),
           "CACHE_ENTRIES": "200"}
KEYS = 500  # users whose unread counts are read: 200 entries hit about half


def start_jobs(env: dict, tmp_path: Path) -> subprocess.Popen:
    log_path = tmp_path / "jobs.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "service", "jobs"], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while "jobs scheduler running" not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"jobs did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return process


def read_unread(server, stop: threading.Event) -> None:
    http = urllib3.PoolManager(retries=False)
    headers = {"Authorization": f"Bearer {server.env['PUBLISH_TOKEN']}"}
    while not stop.is_set():
        user = f"reader{random.randrange(KEYS)}"
        http.request("GET", f"{server.url}/api/v1/users/{user}/unread", headers=headers,
                     timeout=10)
        time.sleep(0.005)


def admin(server, method: str, path: str, body=None) -> dict:
    response = server.request(method, path, token=server.env["ADMIN_TOKEN"], body=body)
    assert response.status < 300, (path, response.status, response.data[:300])
    return response.json()


def test_a_recommendation_is_issued_applied_and_judged_on_a_live_node(influx_database,
                                                                       tmp_path):
    server = start_server({"INFLUX_DB": influx_database, **JOB_ENV}, tmp_path)
    jobs = start_jobs(server.env, tmp_path)
    stop = threading.Event()
    reader = threading.Thread(target=read_unread, args=(server, stop), daemon=True)
    started = time.monotonic()
    reader.start()
    try:
        def issued():
            recs = admin(server, "GET", "/api/v1/recommendations?status=issued")
            return next((r for r in recs["recommendations"] if r["rule"] == "cache-grow"),
                        None)

        rec = wait_for(issued, 45)
        assert rec is not None, jobs_log(tmp_path)
        assert rec["id"] == "cache-grow:cache_entries=400"
        assert rec["evidence"]["cache_hit_rate"] < 0.7
        # a whole impact window of load before the change, so "before" is measured
        time.sleep(max(0.0, started + IMPACT_WINDOW_S + 1 - time.monotonic()))
        applied = admin(server, "POST", f"/api/v1/recommendations/{quote(rec['id'], safe='')}"
                        "/apply", {"reason": "e2e"})
        assert applied["recommendation"]["status"] == "applied"
        assert applied["config"]["parameters"]["cache_entries"] == 400
        seq = next(e["seq"] for e in reversed(admin(server, "GET", "/api/v1/config/history")
                                              ["events"])
                   if e["type"] == "recommendation_applied")

        def measured():
            events = admin(server, "GET", "/api/v1/config/history")["events"]
            return next((e for e in events if e["type"] == "impact_measured"
                         and e["payload"]["seq"] == seq), None)

        impact = wait_for(measured, IMPACT_WINDOW_S + 25)
        assert impact is not None, jobs_log(tmp_path)
        payload = impact["payload"]
        assert impact["actor"] == "jobs" and payload["verdict"] in VERDICTS
        assert payload["expected"] == rec["expected_effect"]
        assert payload["rolled_back"] is False
        hit = payload["effect"]["cache_hit_rate"]
        # what the rule promised: twice the entries hold the whole working set
        assert hit["before"] < 0.7 and hit["after"] > hit["before"] + 0.2, hit
    finally:
        stop.set()
        reader.join(timeout=10)
        jobs.send_signal(signal.SIGTERM)
        try:
            jobs.wait(timeout=15)
        except subprocess.TimeoutExpired:
            jobs.kill()
        assert stop_server(server) == 0, server.log_text()


def jobs_log(tmp_path: Path) -> str:
    return (tmp_path / "jobs.log").read_text(errors="replace")[-3000:]
