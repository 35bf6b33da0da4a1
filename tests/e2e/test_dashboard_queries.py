"""Every dashboard query against real data, as Grafana would send it.

One real node (``serve`` on real PostgreSQL and InfluxDB) and one ``jobs``
process are fed for about half a minute: publishes of every priority and
target, live clients that ack, a client that stalls until backpressure
engages and it is closed as a slow consumer, a user away long enough to be
trimmed, told to reload and replayed to, throttled and refused requests.
Once their telemetry has landed the rollups are run once, with a clock an
hour ahead so that the current minute and hour count as complete. Then
every panel target, annotation and variable query of dashboards/ runs with
Grafana's macros filled in (``$timeFilter`` the last hour, ``$__interval``
the panel's minimum interval or 10 s, tag variables "All", ``$rp`` each of
its options): none may error, and each must return data unless
``NO_DATA`` below says why it cannot in a run this short.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import socketio
from sqlalchemy import create_engine, text

from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.influx_rollups import InfluxRollupStore
from service.service_layer.rollups import run_rollups
from tests.conftest import INFLUX_URL, PG_ADMIN_URL, unique
from tests.e2e.conftest import ROOT, JsClient, RunningServer, start_server, stop_server
from tests.e2e.test_connections import raw_socketio_client
from tests.support.py_client import PyClient, publish_n
from tests.unit.test_dashboards import (
    RAW_POLICY,
    RP_FROM,
    annotation_queries,
    rp_options,
    targets_of,
)
from tests.unit.test_deploy_files import dashboard_files, load_dashboard, query_variables

BUDGET_S = 60.0  # the whole module: feeding, waiting, rolling up and every query
AUTO_INTERVAL_S = 10  # what Grafana's auto interval is raised to at least, here
TIME_FILTER = "time > now() - 1h"
# An hour bucket is stamped with its start: a run that crossed the hour has
# its data in two, the first of which may start more than an hour ago.
TIME_FILTER_1H = "time > now() - 2h"
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::(\w+))?\]\]")

# Targets that may legitimately return nothing after a short run, and why.
# Keys: (dashboard uid, panel title or "annotation <name>", target refId,
# resolution: the $rp option's text), "*" for any.
_REGRESSIONS = "the change-point job needs hours of buckets to find a lasting shift"
_TRENDS = "the trends job needs 5 one-minute rollup buckets of a metric"
_RATE_OF_COUNTER = ("the rate of a cumulative counter needs two buckets; a short run may "
                    "fill a single one")
_ONE_NODE = "one node, no REDIS_URL: only the nodes of a cluster write the cluster measurement"
NO_DATA: dict[tuple[str, str, str, str], str] = {
    ("notify-overview", "annotation Regressions", "*", "*"): _REGRESSIONS,
    ("notify-optimization", "annotation Regressions", "*", "*"): _REGRESSIONS,
    ("notify-optimization", "Regressions", "*", "*"): _REGRESSIONS,
    ("notify-optimization", "Trends now", "*", "*"): _TRENDS,
    ("notify-optimization", "Time to limit (forecast)", "*", "*"): _TRENDS,
    ("notify-optimization", "Trend direction", "*", "*"): _TRENDS,
    ("notify-optimization", "Failed job runs", "*", "*"): "no analysis job fails in a healthy run",
    ("notify-optimization", "Recommendations, decisions, impact and rollbacks", "*", "*"):
        "a short run changes no config and may issue no recommendation",
    ("notify-optimization", "annotation Recommendations and impact", "*", "*"):
        "a short run changes no config and may issue no recommendation",
    ("notify-telemetry", "Dropped by reason", "*", "*"): "no telemetry is dropped in a healthy run",
    ("notify-resources", "Ping/pong health", "B", "*"):
        "no client misses a pong: clients answer pings, and a pong is late only after "
        "PING_INTERVAL + PING_TIMEOUT (33 s)",
    **{("notify-resources", title, "*", "*"): _ONE_NODE
       for title in ("Cluster now", "Connections and users per node", "Redis up per node",
                     "Relay: entries sent and received per second",
                     "Relay: entries left to the log follower")},
    **{(uid, title, "*", resolution): _RATE_OF_COUNTER
       for uid, title in (("notify-overview", "Telemetry pipeline"),
                          ("notify-telemetry", "Records per second"),
                          ("notify-resources", "CPU"),
                          ("notify-resources", "GC collections per second"))
       for resolution in ("1m", "1h")},
}


# --------------------------------------------------------------------------
# Grafana's macros


def interval_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhdw])", text)
    assert match, f"not an interval: {text!r}"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[
        match.group(2)]


def fill_macros(query: str, dashboard: dict, rp: tuple[str, str], min_interval: str) -> str:
    """``query`` as Grafana sends it: ``rp`` is the ($rp value, its text),
    ``min_interval`` the panel's (``${rp:text}`` allowed)."""
    rp_value, rp_text = rp
    minimum = (min_interval or "").replace("${rp:text}", rp_text)
    seconds = max(AUTO_INTERVAL_S, interval_seconds(minimum) if minimum else 0)
    values = {"timeFilter": TIME_FILTER_1H if rp_text == "1h" else TIME_FILTER,
              "__interval": f"{seconds}s", "__interval_ms": str(seconds * 1000),
              "rp": rp_value}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if name == "rp":
            continue
        if variable.get("includeAll"):
            values[name] = variable["allValue"]  # "All": a regex matching every value
        else:
            values[name] = variable["current"]["value"]

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        form = match.group(2) or match.group(5)
        if name == "rp" and form == "text":
            return rp_text
        assert name in values, f"${name} is not a variable or macro of this dashboard"
        return values[name]

    return _VARIABLE.sub(substitute, query)


@dataclass(frozen=True)
class Case:
    uid: str
    title: str  # the panel's, or "annotation <name>", or "variable <name>"
    ref: str
    query: str  # with the macros filled in
    resolution: str  # the $rp option's text

    @property
    def id(self) -> str:
        return f"{self.uid}:{self.title}:{self.ref}@{self.resolution}"

    def no_data_reason(self) -> str | None:
        for ref in (self.ref, "*"):
            for resolution in (self.resolution, "*"):
                reason = NO_DATA.get((self.uid, self.title, ref, resolution))
                if reason:
                    return reason
        return None


def cases() -> list[Case]:
    found: dict[tuple[str, str, str, str], Case] = {}

    def add(dashboard, title, ref, query, min_interval=""):
        options = list(rp_options(dashboard).items())
        raw = (RAW_POLICY, rp_options(dashboard).get(RAW_POLICY, "10s"))
        for rp in options if RP_FROM.search(query) else [raw]:
            case = Case(dashboard["uid"], title, ref,
                        fill_macros(query, dashboard, rp, min_interval), rp[1])
            found.setdefault((case.uid, case.title, case.ref, case.query), case)

    for path in dashboard_files():
        dashboard = load_dashboard(path)
        for panel, target in targets_of(dashboard):
            add(dashboard, panel["title"], target["refId"], target["query"],
                panel.get("interval", ""))
        for annotation in annotation_queries(dashboard):
            add(dashboard, f"annotation {annotation['name']}", "-", annotation["query"])
        for variable in query_variables(dashboard):
            add(dashboard, f"variable {variable['name']}", "-", variable["query"])
    return list(found.values())


CASES = cases()


# --------------------------------------------------------------------------
# A fed node


@dataclass
class Fed:
    influx: InfluxClient
    server: RunningServer
    started: float


def start_jobs(env: dict, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    log_path = tmp_path / "jobs.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "service", "jobs"], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jobs exited with {process.returncode}:\n{log_path.read_text()}")
        if "jobs scheduler running" in log_path.read_text(errors="replace"):
            return process, log_path
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"jobs did not start:\n{log_path.read_text()}")


def stop_jobs(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def until(check, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


def metrics(server: RunningServer) -> dict:
    return server.request("GET", "/admin/api/performance/metrics",
                          token=server.env["ADMIN_TOKEN"]).json()


def publish(server: RunningServer, body: dict) -> int:
    return server.request("POST", "/api/v1/notifications", token=server.env["PUBLISH_TOKEN"],
                          body=body).status


def stall_until_closed(server: RunningServer) -> None:
    """A client that reads nothing: its queue passes the high-water mark
    (backpressure engages: normal entries deferred, low refused), then
    critical entries, delivered regardless, pass its send-queue bound and it
    is closed as a slow consumer, which releases the pressure."""
    stalled = raw_socketio_client(server, "ivy",
                                  sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    big = {"user_id": "ivy", "category": "bulk", "payload": {"b": "x" * 60_000}}
    try:
        for _ in range(150):
            if metrics(server)["backpressure"]["engaged"]:
                break
            publish(server, {**big, "priority": "normal"})
            time.sleep(0.02)  # the node samples its queues twice a second
        until(lambda: metrics(server)["backpressure"]["engaged"], 3)
        publish(server, {**big, "priority": "normal"})  # deferred
        publish(server, {"user_id": "ivy", "category": "bulk", "priority": "low",
                         "payload": {}})  # 429: backpressure
        for _ in range(150):
            if metrics(server)["connections"] == 0:
                break
            publish(server, {**big, "priority": "critical"})
        until(lambda: not metrics(server)["backpressure"]["engaged"], 5)
    finally:
        stalled.close()


def exercise(server: RunningServer) -> None:
    stall_until_closed(server)
    alice = PyClient(server.url, server.token("alice"))
    bob = PyClient(server.url, server.token("bob"))
    try:
        for i in range(5):  # dora is away: trimmed to 3, told to reload, replayed
            server.publish({"user_id": "dora", "category": "mail", "priority": "high",
                            "payload": {"seq": i}})
        publish_n(server, "alice", 10)
        server.publish({"user_ids": ["alice", "bob"], "category": "chat", "priority": "high",
                        "payload": {}})
        server.publish({"broadcast": True, "category": "news", "priority": "critical",
                        "payload": {"hello": "all"}})
        statuses = [publish(server, {"user_id": "bob", "category": "digest", "priority": "low",
                                     "payload": {}}) for _ in range(3)]
        assert 202 in statuses and 429 in statuses, statuses  # THROTTLE low=1:1
        alice.wait_for(12)
        bob.wait_for(3)
        carol = JsClient(server.url, server.token("carol"), "--compression", "--expect", "1",
                         "--timeout-ms", "10000")
        try:  # a batch past COMPRESSION_MIN_BYTES goes compressed: wire_bytes < bytes
            carol.wait_for("connect")
            server.publish({"user_id": "carol", "category": "report", "priority": "normal",
                            "payload": {"rows": ["a fairly repetitive row"] * 400}})
            carol.finish()
        finally:
            carol.close()
        refused = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            refused.connect(server.url, auth={"token": "forged.token"},
                            transports=["websocket"], wait_timeout=5)
        time.sleep(1.5)  # a trimmer round or more
        dora = JsClient(server.url, server.token("dora"), "--expect", "3",
                        "--timeout-ms", "10000")
        try:
            dora.wait_for("reload")
            dora.finish()
        finally:
            dora.close()
    finally:
        alice.close()
        bob.close()


def count(influx: InfluxClient, query: str) -> int:
    series = influx.query(query)[0].get("series") or []
    return sum(row[1] or 0 for s in series for row in s["values"])


def telemetry_landed(influx: InfluxClient) -> bool:
    """Two samples of every 10 s sampler from both processes, the health
    job's first run, and every summary of the exercise."""
    samples = [
        ('SELECT count("rss_bytes") FROM "process" WHERE "role" = \'serve\'', 2),
        ('SELECT count("rss_bytes") FROM "process" WHERE "role" = \'jobs\'', 2),
        ('SELECT count("written") FROM "telemetry_self" WHERE "role" = \'jobs\'', 2),
        ('SELECT count("written") FROM "telemetry_self" WHERE "role" = \'serve\'', 2),
        ('SELECT count("connections") FROM "notify_ping"', 2),
        ('SELECT count("size") FROM "db_pool"', 2),
        ('SELECT count("hits") FROM "cache"', 2),
        ('SELECT count("alive") FROM "runtime_leaks"', 2),
        ('SELECT count("level") FROM "analysis_health"', 1),
        ('SELECT count("items") FROM "job_run"', 1),
        ('SELECT count("count") FROM "notify_reload"', 1),
        ('SELECT count("count") FROM "notify_drop"', 1),
        ('SELECT count("refused") FROM "notify_backpressure"', 1),
    ]
    return all(count(influx, q) >= n for q, n in samples)


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    started = time.monotonic()
    tmp_path = tmp_path_factory.mktemp("dashboards")
    pg_name, influx_name = unique("notify_test"), unique("notify_test")
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
    influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=influx_name))
    if not influx.ping():
        pytest.fail(f"InfluxDB does not answer at {INFLUX_URL}: run scripts/influxdb.sh start")
    influx.ensure_database()
    server = jobs = None
    exits = {}
    try:
        server = start_server({
            "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{pg_name}",
            "INFLUX_DB": influx_name,
            "THROTTLE": "low=1:1",  # the second low publish to a user within a second: 429
            "DB_SLOW_MS": "0.001",  # every statement is slow: db_slow_query has shapes
            "OFFLINE_QUEUE_MAX": "3", "OFFLINE_TRIM_INTERVAL": "0.5",
            # a stalled client engages backpressure well before it passes its own bound
            "BACKPRESSURE_HIGH_WATER_BYTES": "150000", "SEND_QUEUE_MAX_BYTES": "2000000",
        }, tmp_path)
        jobs, jobs_log = start_jobs(server.env, tmp_path)
        exercise(server)
        until(lambda: telemetry_landed(influx), 35, step=0.5)
        # an hour ahead: the current minute and hour count as complete
        run_rollups(InfluxRollupStore(influx), datetime.now(UTC) + timedelta(hours=1, minutes=3))
        yield Fed(influx, server, started)
    finally:
        if jobs is not None:
            exits["jobs"] = (stop_jobs(jobs), jobs_log.read_text())
        if server is not None:
            exits["serve"] = (stop_server(server), server.log_text())
        influx.query(f'DROP DATABASE "{influx_name}"', method="POST", db=None)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        admin.dispose()
    for name, (code, log) in exits.items():
        assert code == 0, f"{name} exited with {code}:\n{log}"


# --------------------------------------------------------------------------
# The queries


def has_data(results: list[dict]) -> bool:
    return any(value is not None
               for result in results for series in result.get("series") or []
               for row in series.get("values") or [] for value in row[1:])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_query_runs_and_returns_data(fed, case):
    results = fed.influx.query(case.query)  # raises on an InfluxQL error
    reason = case.no_data_reason()
    if reason is None:
        assert has_data(results), f"no data for {case.query}"


def test_no_data_exceptions_name_existing_queries():
    unknown = [key for key in NO_DATA
               if not any((c.uid, c.title) == key[:2] and key[2] in (c.ref, "*")
                          and key[3] in (c.resolution, "*") for c in CASES)]
    assert not unknown


def test_macros_are_filled_as_grafana_fills_them():
    dashboard = {"templating": {"list": [
        {"name": "node", "includeAll": True, "allValue": ".*"},
        {"name": "window", "current": {"value": "24h"}}, {"name": "rp"}]}}
    query = ('SELECT sum("count") * 1000 / $__interval_ms FROM $rp."notify_drop" WHERE '
             '"node" =~ /^$node$/ AND "window" =~ /^${window}$/ AND $timeFilter '
             "GROUP BY time($__interval)")
    assert fill_macros(query, dashboard, ('"rollup_1m"', "1m"), "${rp:text}") == (
        'SELECT sum("count") * 1000 / 60000 FROM "rollup_1m"."notify_drop" WHERE '
        '"node" =~ /^.*$/ AND "window" =~ /^24h$/ AND time > now() - 1h '
        "GROUP BY time(60s)")
    raw = fill_macros(query, dashboard, ('""', "10s"), "${rp:text}")
    assert 'FROM ""."notify_drop"' in raw and "time(10s)" in raw
    assert "now() - 2h" in fill_macros(query, dashboard, ('"rollup_1h"', "1h"), "${rp:text}")
    with pytest.raises(AssertionError):
        fill_macros("SELECT 1 FROM x WHERE $nope", dashboard, ('""', "10s"), "")


def test_the_whole_run_stays_within_budget(fed):
    assert time.monotonic() - fed.started < BUDGET_S
