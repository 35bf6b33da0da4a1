"""`make run`'s script: serve, jobs and the demo start together, a published
notification reaches the JavaScript client, InfluxDB holds the matching
counts, and SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import urllib3

from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.tokens import UserTokens
from tests.support.backing_services import INFLUX_URL
from tests.support.free_port import free_port
from tests.support.influx_counts import wait_for_sum
from tests.support.repository import ROOT


def start_run_script(tmp_path, influx_database: str, demo: str):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "VAR_DIR": str(tmp_path / "var"),
           "INFLUX_URL": INFLUX_URL, "INFLUX_DB": influx_database, "DEMO": demo,
           "NODE_ID": f"run-{port}"}
    for name in ("PUBLISH_TOKEN", "ADMIN_TOKEN", "USER_TOKEN_SECRET", "DATABASE_URL"):
        env.pop(name, None)  # the embedded defaults, as a newcomer has them
    with open(tmp_path / "run.log", "wb") as log:
        process = subprocess.Popen(["scripts/run.sh"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    http = urllib3.PoolManager(retries=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http.request("GET", f"{url}/healthz", timeout=2).status == 200:
                break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail((tmp_path / "run.log").read_text())
    secrets = json.loads((tmp_path / "var" / "dev-secrets.json").read_text())
    return process, url, secrets, http


def stop_run_script(process, tmp_path) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, "a requested stop is a clean exit"
    time.sleep(0.5)
    group = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True)
    assert group.stdout.strip() == "", f"processes left running: {group.stdout}"
    return (tmp_path / "run.log").read_text()


def test_make_run_serves_the_js_client_and_records_it(tmp_path, influx_database, js_client):
    process, url, secrets, http = start_run_script(tmp_path, influx_database, demo="0")
    try:
        token = UserTokens(secrets["USER_TOKEN_SECRET"], 3600).issue("zed")
        client = js_client(url, token, "--expect", "3")
        client.wait_for("connect")
        for i in range(3):
            response = http.request(
                "POST", f"{url}/api/v1/notifications",
                body=json.dumps({"user_id": "zed", "category": "demo", "payload": {"i": i}}),
                headers={"Authorization": f"Bearer {secrets['PUBLISH_TOKEN']}"})
            assert response.status == 202
        client.finish()
        assert [n["payload"]["i"] for n in client.notifications()] == [0, 1, 2]
        influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=influx_database))
        for measurement in ("notify_publish", "notify_delivery", "notify_ack"):
            assert wait_for_sum(influx, measurement, 3) == 3, measurement
    finally:
        output = stop_run_script(process, tmp_path)
    assert "PUBLISH_TOKEN=" in output and "/api/v1/notifications" in output
    assert "jobs scheduler running" in output


def test_make_run_demo_publishes_and_its_users_receive(tmp_path, influx_database):
    process, _url, _secrets, _http = start_run_script(tmp_path, influx_database, demo="1")
    try:
        influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=influx_database))
        deadline = time.monotonic() + 20
        sums = {}
        while time.monotonic() < deadline:
            for m in ("notify_publish", "notify_delivery", "notify_ack"):
                series = influx.query(f'SELECT sum("count") FROM "{m}"')[0].get("series")
                sums[m] = series[0]["values"][0][1] if series else 0
            if all(v > 0 for v in sums.values()):
                break
            time.sleep(0.5)
        assert all(v > 0 for v in sums.values()), sums
    finally:
        output = stop_run_script(process, tmp_path)
    assert "demo: stopped after" in output
