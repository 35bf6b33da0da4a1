"""Live metrics and component health, computed from in-process state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import gevent

from service.domain.errors import StorageUnavailable
from service.service_layer.backpressure import Backpressure
from service.service_layer.delivery import DeliveryHub
from service.service_layer.ports import NotificationLog
from service.service_layer.telemetry import TelemetryRing

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
_RANK = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}


class TelemetrySinkStatus(Protocol):
    written: int
    spooled: int
    last_error: str | None
    dropped_by_reason: dict[str, int]
    in_flight: int

    @property
    def total_dropped(self) -> int: ...

    @property
    def backlog(self) -> int: ...

    @property
    def spool_bytes(self) -> int: ...


@dataclass
class StatusSources:
    node_id: str
    storage_kind: str
    hub: DeliveryHub
    ring: TelemetryRing
    sink: TelemetrySinkStatus
    log: NotificationLog
    started_at: float
    process_stats: Callable[[], dict]  # rss_bytes, cpu_seconds, open_fds
    backpressure: Backpressure | None = None


def live_metrics(src: StatusSources) -> dict:
    totals = src.ring.totals
    return {
        "node": src.node_id,
        "uptime_s": round(time.time() - src.started_at, 1),
        "connections": src.hub.connection_count,
        "users_online": src.hub.user_count,
        "totals": {
            "published": totals.get("notify_publish", 0),
            "delivered": src.hub.sent_total,
            "acked": totals.get("notify_ack", 0),
        },
        "telemetry": {
            "emitted": src.ring.emitted,
            "written": src.sink.written,
            "spooled": src.sink.spooled,
            "dropped": src.sink.total_dropped,
            "dropped_by_reason": {**src.sink.dropped_by_reason,
                                  **({"ring_full": src.ring.dropped_full}
                                     if src.ring.dropped_full else {})},
            "queued": len(src.ring),
            "in_flight": src.sink.in_flight,
            "backlog": src.sink.backlog,
            "spool_bytes": src.sink.spool_bytes,
            "influx_reachable": src.sink.last_error is None,
        },
        "storage": {"kind": src.storage_kind},
        "process": src.process_stats(),
        "backpressure": _backpressure(src.backpressure),
        "leaks": src.hub.leaks.check(),
    }


def _backpressure(pressure: Backpressure | None) -> dict | None:
    if pressure is None:
        return None
    return {"engaged": pressure.engaged, "over_memory_budget": pressure.over_budget,
            "queued_bytes": pressure.last_queued_bytes,
            "memory_budget_bytes": pressure.policy.memory_budget_bytes,
            "high_water_bytes": pressure.policy.high_water_bytes,
            "refused": pressure.refused, "deferred": pressure.deferred}


def component_health(src: StatusSources) -> dict:
    components = {
        "delivery": _delivery_health(src),
        "storage": _storage_health(src.log),
        "telemetry": _telemetry_health(src),
    }
    worst = max((c["status"] for c in components.values()), key=_RANK.__getitem__)
    return {"status": worst, "node": src.node_id, "components": components}


def _delivery_health(src: StatusSources) -> dict:
    pressure = src.backpressure
    if pressure is not None and pressure.over_budget:
        return _component(CRITICAL, "over the memory budget: refusing connections, "
                                    "and low-priority publishes")
    if pressure is not None and pressure.engaged:
        return _component(WARNING, f"backpressure engaged: {pressure.last_queued_bytes} bytes "
                                   "queued for clients")
    return _component(HEALTHY, f"{src.hub.connection_count} connection(s)")


def _component(status: str, reason: str) -> dict:
    return {"status": status, "reason": reason}


def _storage_health(log: NotificationLog) -> dict:
    try:
        with gevent.Timeout(3, StorageUnavailable("no answer within 3 s")):
            log.ping()
    except StorageUnavailable as exc:
        return _component(CRITICAL, str(exc))
    return _component(HEALTHY, "the notification log answers")


def _telemetry_health(src: StatusSources) -> dict:
    if src.sink.last_error is not None:
        return _component(
            WARNING, f"InfluxDB unreachable, telemetry is not being written: {src.sink.last_error}"
        )
    if src.sink.total_dropped:
        return _component(WARNING, f"{src.sink.total_dropped} record(s) dropped since start")
    return _component(HEALTHY, f"{src.sink.written} record(s) written")
