"""Every dashboard query and every alert rule's query against real data, as
Grafana would send them.

One real node (``serve`` on real PostgreSQL and InfluxDB) is fed: publishes
of every priority and target, live clients that ack, a client that stalls
until backpressure engages and it is closed as a slow consumer, a user away
long enough to be trimmed, told to reload and replayed to, throttled and
refused requests, unread counts of users never seen (cache misses). Then
the ``jobs`` process starts: its health run writes the live level's targets,
its recommendations run finds the low cache hit rate and issues a
recommendation (analysis_recommendation); the test applies it through the
control API and rolls it back at once, so the impact job's next run measures
the applied change, the next change having come too soon to judge it
(analysis_impact, inconclusive). The feed
lasts until the node has reported in two clock minutes (a difference of
1-minute buckets needs two), about a minute. Then the rollups are
run once, with a clock an hour ahead so that the current minute and hour
count as complete. Then every panel target, annotation and variable query
of dashboards/ runs with Grafana's macros filled in (``$timeFilter`` the
panel's relative time or the last hour, ``$__interval`` the panel's minimum
interval or 10 s, tag variables "All", ``$rp`` each of its options), and
every InfluxQL query of provisioning/alerting/rules.yml over its relative
time range: none may error, and each must return data unless ``NO_DATA``
below says why it cannot in a run this short.
"""

from __future__ import annotations

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
from tests.support.backing_services import INFLUX_URL, PG_ADMIN_URL, unique
from tests.support.grafana import (
    RAW_POLICY,
    RP_FROM,
    annotation_queries,
    dashboard_files,
    fill_macros,
    load_dashboard,
    query_variables,
    rp_options,
    rule_queries,
    targets_of,
)
from tests.support.js_clients import JsClient
from tests.support.py_client import PyClient, publish_n
from tests.support.raw_socketio import raw_socketio_client
from tests.support.repository import ROOT
from tests.support.server_process import RunningServer, start_server, stop_server

BUDGET_S = 150.0  # the whole module: feeding (a minute or so), rolling up, every query
RULES = "rules"  # the "uid" of the alert rules' cases

# Targets that may legitimately return nothing after a short run, and why.
# Keys: (dashboard uid or RULES, panel title, "annotation <name>" or rule
# title, target refId, resolution: the $rp option's text), "*" for any.
_REGRESSIONS = "the change-point job needs hours of buckets to find a lasting shift"
_TRENDS = "the trends job needs 5 one-minute rollup buckets of a metric"
_RATE_OF_COUNTER = ("the rate of a cumulative counter needs two buckets; a short run may "
                    "fill a single one")
_ONE_NODE = "one node, no REDIS_URL: only the nodes of a cluster write the cluster measurement"
_NO_FAILURES = "no analysis job fails in a healthy run"
NO_DATA: dict[tuple[str, str, str, str], str] = {
    ("notify-overview", "annotation Regressions", "*", "*"): _REGRESSIONS,
    ("notify-optimization", "annotation Regressions", "*", "*"): _REGRESSIONS,
    ("notify-optimization", "Regressions", "*", "*"): _REGRESSIONS,
    ("notify-optimization", "Trends now", "*", "*"): _TRENDS,
    ("notify-optimization", "Time to limit (forecast)", "*", "*"): _TRENDS,
    ("notify-optimization", "Trend direction", "*", "*"): _TRENDS,
    ("notify-optimization", "Failed job runs", "*", "*"): _NO_FAILURES,
    ("notify-overview", "Job failures (last hour)", "*", "*"): _NO_FAILURES,
    ("notify-telemetry", "Dropped by reason", "*", "*"): "no telemetry is dropped in a healthy run",
    ("notify-resources", "Ping/pong health", "B", "*"):
        "no client misses a pong: clients answer pings, and a pong is late only after "
        "PING_INTERVAL + PING_TIMEOUT (33 s)",
    **{("notify-resources", title, "A", "*"): _ONE_NODE
       for title in ("Cluster now", "Connections and users per node", "Redis up per node",
                     "Relay: entries sent and received per second",
                     "Relay: entries left to the log follower")},
    **{(uid, title, ref, resolution): _RATE_OF_COUNTER
       for uid, title, ref in (("notify-overview", "Telemetry pipeline", "A"),
                               ("notify-overview", "Books over time", "A"),
                               ("notify-telemetry", "Records per second", "A"),
                               ("notify-resources", "CPU", "A"),
                               ("notify-resources", "GC collections per second", "A"))
       for resolution in ("1m", "1h")},
    (RULES, "NotifyMemoryCritical", "B", "*"): _TRENDS,
    (RULES, "NotifyRegressionDetected", "A", "*"): _REGRESSIONS,
    (RULES, "NotifyRedisDown", "*", "*"): _ONE_NODE,
}


@dataclass(frozen=True)
class Case:
    uid: str
    title: str  # the panel's, or "annotation <name>", or "variable <name>", or the rule's
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

    def add(dashboard, title, ref, query, panel=None):
        options = list(rp_options(dashboard).items())
        raw = (RAW_POLICY, rp_options(dashboard).get(RAW_POLICY, "10s"))
        for rp in options if RP_FROM.search(query) else [raw]:
            filled = fill_macros(query, dashboard, rp, (panel or {}).get("interval", ""),
                                 (panel or {}).get("timeFrom", ""))
            case = Case(dashboard["uid"], title, ref, filled, rp[1])
            found.setdefault((case.uid, case.title, case.ref, case.query), case)

    for path in dashboard_files():
        dashboard = load_dashboard(path)
        for panel, target in targets_of(dashboard):
            add(dashboard, panel["title"], target["refId"], target["query"], panel)
        for annotation in annotation_queries(dashboard):
            add(dashboard, f"annotation {annotation['name']}", "-", annotation["query"])
        for variable in query_variables(dashboard):
            add(dashboard, f"variable {variable['name']}", "-", variable["query"])
    for title, ref, query, span in rule_queries():
        # Grafana: "time >= <now - from>ms and time <= <now - to>ms"
        window = f"time >= now() - {span['from']}s AND time <= now() - {span['to']}s"
        case = Case(RULES, title, ref, query.replace("$timeFilter", window), "10s")
        found.setdefault((case.uid, case.title, case.ref, case.query), case)
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
        for i in range(120):  # unread counts of users never seen: cache misses, so the
            # recommendations job finds a low hit rate on enough lookups (cache-grow)
            response = server.request("GET", f"/api/v1/users/reader{i}/unread",
                                      token=server.env["PUBLISH_TOKEN"])
            assert response.status == 200, response.data
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


def landed(influx: InfluxClient, samples: list[tuple[str, int]]) -> bool:
    return all(count(influx, q) >= n for q, n in samples)


# Two samples of every 10 s sampler of the node, and every summary of the exercise.
SERVE_LANDED = [
    ('SELECT count("rss_bytes") FROM "process" WHERE "role" = \'serve\'', 2),
    ('SELECT count("written") FROM "telemetry_self" WHERE "role" = \'serve\'', 2),
    ('SELECT count("connections") FROM "notify_ping"', 2),
    ('SELECT count("size") FROM "db_pool"', 2),
    ('SELECT count("hits") FROM "cache"', 2),
    ('SELECT count("alive") FROM "runtime_leaks"', 2),
    ('SELECT count("published") FROM "notify_books"', 2),
    ('SELECT count("count") FROM "notify_reload"', 1),
    ('SELECT count("count") FROM "notify_drop"', 1),
    ('SELECT count("count") FROM "notify_throttle"', 1),
    ('SELECT count("refused") FROM "notify_backpressure"', 1),
]
# Two samples of the jobs process, and every analysis the dashboards read.
JOBS_LANDED = [
    ('SELECT count("rss_bytes") FROM "process" WHERE "role" = \'jobs\'', 2),
    ('SELECT count("written") FROM "telemetry_self" WHERE "role" = \'jobs\'', 2),
    ('SELECT count("level") FROM "analysis_health"', 1),
    ('SELECT count("delivery_p99_ms") FROM "analysis_targets"', 1),
    ('SELECT count("items") FROM "job_run"', 1),
    ('SELECT count("rolled_back") FROM "analysis_impact"', 1),
    ('SELECT count("seq") FROM "control_event"', 3),
]
IMPACT_WAIT_S = 90  # the impact job runs 13 s after the jobs start, then every minute


def spans_two_minutes(influx: InfluxClient) -> bool:
    """The node reported in two clock minutes: what a difference between
    1-minute buckets (NotifyTelemetryDropping) needs."""
    series = influx.query('SELECT count("written") FROM "telemetry_self" WHERE '
                          '"role" = \'serve\' AND time > now() - 10m GROUP BY time(1m) '
                          "fill(none)")[0].get("series") or []
    return sum(1 for s in series for row in s["values"] if row[1]) >= 2


def open_recommendation(influx: InfluxClient) -> str | None:
    series = influx.query('SELECT "id" FROM "analysis_recommendation" ORDER BY time DESC '
                          "LIMIT 1")[0].get("series") or []
    return series[0]["values"][0][1] if series else None


def apply_and_roll_back(server: RunningServer, recommendation_id: str) -> None:
    """Apply it, then roll it back at once: the applied change's after-window
    ends at the rollback, too soon to judge, so the impact job's next run
    measures it (inconclusive) and writes analysis_impact."""
    token = server.env["ADMIN_TOKEN"]
    applied = server.request("POST", f"/api/v1/recommendations/{recommendation_id}/apply",
                             token=token, body={"reason": "e2e: dashboards"})
    assert applied.status == 200, applied.data
    seq = applied.json()["config"]["seq"]
    undone = server.request("POST", "/api/v1/config/rollback", token=token,
                            body={"to_seq": seq - 1, "reason": "e2e: dashboards"})
    assert undone.status == 200, undone.data


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
        exercise(server)
        assert until(lambda: landed(influx, SERVE_LANDED), 35, step=0.5), "serve telemetry"
        # started after the exercise: its first recommendations run finds its figures
        jobs, jobs_log = start_jobs(server.env, tmp_path)
        assert until(lambda: open_recommendation(influx), 40, step=0.5), (
            f"no recommendation issued:\n{jobs_log.read_text()}")
        apply_and_roll_back(server, open_recommendation(influx))
        assert until(lambda: landed(influx, JOBS_LANDED), IMPACT_WAIT_S, step=1), (
            f"jobs telemetry:\n{jobs_log.read_text()}")
        assert until(lambda: spans_two_minutes(influx), 65, step=1), "two minutes of telemetry"
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
        '"node" =~ /^.*$/ AND "window" =~ /^24h$/ AND time > now() - 3600s '
        "GROUP BY time(60s)")
    raw = fill_macros(query, dashboard, ('"raw"', "10s"), "${rp:text}")
    assert 'FROM "raw"."notify_drop"' in raw and "time(10s)" in raw
    assert "now() - 7200s" in fill_macros(query, dashboard, ('"rollup_1h"', "1h"), "${rp:text}")
    assert "now() - 300s" in fill_macros(query, dashboard, ('"raw"', "10s"), "", "5m")
    with pytest.raises(AssertionError):
        fill_macros("SELECT 1 FROM x WHERE $nope", dashboard, ('"raw"', "10s"), "")


def test_alert_rule_queries_are_among_the_cases():
    assert {(c.title, c.ref) for c in CASES if c.uid == RULES} == {
        (title, ref) for title, ref, _, _ in rule_queries()}


def test_the_whole_run_stays_within_budget(fed):
    assert time.monotonic() - fed.started < BUDGET_S
