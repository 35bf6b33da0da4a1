"""What a long chaos run must not grow: each node's memory, descriptors and
greenlets, the node's queues and caches, and the log's tables.

Every ``SAMPLE_S`` each live node's ``/admin/api/performance/metrics`` is
appended to ``nodes.jsonl`` (one line per node). Nodes are killed and
started again during a run, so growth is per process: from its sample
``WARM_S`` after it started (pools, caches and buffers at working size) to
its last one, for processes that lived ``MIN_LIFE_S`` at least."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg2
import urllib3

SAMPLE_S = 30.0
WARM_S = 120.0
MIN_LIFE_S = 300.0
TABLES = ("log_entries", "log_recipients", "log_streams", "publish_keys", "control_events")
HTTP = urllib3.PoolManager(maxsize=8, retries=False)


def sample(nodes: list, admin_token: str, out: Path) -> None:
    """One line per live node; a node that does not answer is skipped."""
    with open(out, "a") as f:
        for node in nodes:
            if not node.alive:
                continue
            try:
                answer = HTTP.request("GET", f"{node.url}/admin/api/performance/metrics",
                                      headers={"Authorization": f"Bearer {admin_token}"},
                                      timeout=3.0)
                metrics = answer.json() if answer.status == 200 else None
            except (urllib3.exceptions.HTTPError, ValueError):
                metrics = None
            if metrics is None:
                continue
            process, telemetry = metrics["process"], metrics["telemetry"]
            f.write(json.dumps({
                "t": time.time(), "node": node.index, "pid": node.process.pid,
                "uptime_s": metrics["uptime_s"], "rss_mb": process["rss_bytes"] / 2**20,
                "open_fds": process["open_fds"],
                "handler_greenlets": process.get("handler_greenlets"),
                "connections": metrics["connections"],
                "telemetry_queued": telemetry["queued"], "telemetry_backlog": telemetry["backlog"],
                "spool_bytes": telemetry["spool_bytes"],
                "cache_entries": sum(c.get("entries", 0) for c in metrics["cache"].values()),
                "leaks": metrics["leaks"]}) + "\n")


def summary(path: Path) -> dict:
    """Per process that lived long enough: growth from warm to last."""
    by_pid: dict[int, list[dict]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            by_pid.setdefault(row["pid"], []).append(row)
    processes = []
    for pid, rows in by_pid.items():
        warm = next((r for r in rows if r["uptime_s"] >= WARM_S), None)
        last = rows[-1]
        if warm is None or last["uptime_s"] < MIN_LIFE_S:
            continue
        processes.append({
            "node": last["node"], "pid": pid, "lived_s": round(last["uptime_s"]),
            "rss_mb": [round(warm["rss_mb"], 1), round(last["rss_mb"], 1)],
            "rss_growth_pct": round(100.0 * (last["rss_mb"] / warm["rss_mb"] - 1.0), 1),
            "open_fds": [warm["open_fds"], last["open_fds"]],
            "handler_greenlets_max": max(r["handler_greenlets"] or 0 for r in rows),
            "connections_max": max(r["connections"] for r in rows),
            "telemetry_queued_max": max(r["telemetry_queued"] for r in rows),
            "cache_entries": [warm["cache_entries"], last["cache_entries"]],
            "leaks_last": last["leaks"]})
    return {"samples": sum(len(r) for r in by_pid.values()), "processes": processes,
            "rss_growth_pct_max": max((p["rss_growth_pct"] for p in processes), default=None)}


def table_rows(port: int) -> dict[str, int]:
    """Rows of the log's tables in the run's PostgreSQL, at the end."""
    rows = {}
    with psycopg2.connect(host="127.0.0.1", port=port, user="postgres",
                          dbname="chaos", connect_timeout=5) as conn, conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")  # names from TABLES above
            rows[table] = cur.fetchone()[0]
    return rows
