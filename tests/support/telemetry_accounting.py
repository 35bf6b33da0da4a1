"""A running node's own account of its telemetry pipeline (the admin metrics
route): where every record it emitted is now."""

from __future__ import annotations

from tests.support.server_process import RunningServer


def telemetry(server: RunningServer) -> dict:
    return server.request("GET", "/admin/api/performance/metrics",
                          token=server.env["ADMIN_TOKEN"]).json()["telemetry"]


def assert_accounted(t: dict) -> None:
    """Every record emitted is in exactly one place."""
    assert t["emitted"] == (t["queued"] + t["in_flight"] + t["written"] + t["backlog"]
                            + t["dropped"]), t


def drained(server: RunningServer) -> bool:
    t = telemetry(server)
    return t["backlog"] == 0 and t["queued"] == 0 and t["in_flight"] == 0 and t["influx_reachable"]
