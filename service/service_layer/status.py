"""Live metrics and component health, computed from in-process state."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class RateMeter:
    """Per-second rates of cumulative counters over about the last minute,
    from samples the status route itself takes (at most one a second); with
    no sample a second old yet, since the process started."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, Mapping[str, int]]] = deque()

    def rates(self, now: float, counters: Mapping[str, int],
              started_at: float) -> dict[str, Any]:
        samples = self._samples
        while samples and now - samples[0][0] > self.window_s:
            samples.popleft()
        base_at, base = (samples[0] if samples and now - samples[0][0] >= 1.0
                         else (started_at, {}))
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, dict(counters)))
        span = max(now - base_at, 1e-3)
        return {"window_s": round(span, 1),
                **{f"{k}_per_s": round((v - base.get(k, 0)) / span, 2)
                   for k, v in counters.items()}}


@dataclass
class StatusSources:
    node_id: str
    storage_kind: str
    hub: DeliveryHub
    ring: TelemetryRing
    sink: TelemetrySinkStatus
    log: NotificationLog
    started_at: float
    process_stats: Callable[[], dict[str, Any]]  # rss_bytes, cpu_seconds, open_fds
    backpressure: Backpressure | None = None
    caches: Mapping[str, Any] = field(default_factory=dict)  # name -> TtlLruCache
    db_stats: Callable[[], dict[str, Any]] | None = None  # the last interval's statements
    rates: RateMeter = field(default_factory=RateMeter)


def live_metrics(src: StatusSources) -> dict[str, Any]:
    totals = src.ring.totals
    counters = {"published": totals.get("notify_publish", 0), "delivered": src.hub.sent_total,
                "acked": totals.get("notify_ack", 0)}
    now = time.time()
    return {
        "node": src.node_id,
        "uptime_s": round(now - src.started_at, 1),
        "connections": src.hub.connection_count,
        "users_online": src.hub.user_count,
        "totals": counters,
        "rates": src.rates.rates(now, counters, src.started_at),
        "latency_ms": delivery_latency(src.ring.last_interval.get("notify_delivery"), now),
        "cache": {name: _cache(cache) for name, cache in src.caches.items()},
        "storage": {"kind": src.storage_kind,
                    "statements": src.db_stats() if src.db_stats is not None else None},
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
        "process": src.process_stats(),
        "backpressure": _backpressure(src.backpressure),
        "leaks": src.hub.leaks.check(),
    }


def delivery_latency(last: tuple[float, Any] | None, now: float) -> dict[str, Any] | None:
    """Publish-to-send latency over the last telemetry interval (about a
    second) that delivered anything, ``age_s`` ago, across priorities and
    modes: p50 as the count-weighted mean of theirs, p99 and max the highest.
    None before the first delivery."""
    at, summaries = last or (now, ())
    parts = [f for _tags, f in summaries if f.get("count") and "latency_ms_p50" in f]
    if not parts:
        return None
    count = sum(f["count"] for f in parts)
    return {"count": count, "age_s": round(max(0.0, now - at), 1),
            "p50": round(sum(f["latency_ms_p50"] * f["count"] for f in parts) / count, 3),
            "p99": round(max(f["latency_ms_p99"] for f in parts), 3),
            "max": round(max(f.get("latency_ms_max", f["latency_ms_p99"]) for f in parts), 3)}


def _cache(cache: Any) -> dict[str, Any]:
    stats = cache.snapshot()
    looked_up = stats.hits + stats.misses
    return {"hit_rate": round(stats.hits / looked_up, 4) if looked_up else None,
            "hits": stats.hits, "misses": stats.misses, "entries": stats.entries,
            "bytes": stats.bytes}


def _backpressure(pressure: Backpressure | None) -> dict[str, Any] | None:
    if pressure is None:
        return None
    return {"engaged": pressure.engaged, "over_memory_budget": pressure.over_budget,
            "queued_bytes": pressure.last_queued_bytes,
            "memory_budget_bytes": pressure.policy.memory_budget_bytes,
            "high_water_bytes": pressure.policy.high_water_bytes,
            "refused": pressure.refused, "deferred": pressure.deferred}


def component_health(src: StatusSources) -> dict[str, Any]:
    components = {
        "delivery": _delivery_health(src),
        "storage": _storage_health(src.log),
        "telemetry": _telemetry_health(src),
    }
    worst = max((c["status"] for c in components.values()), key=_RANK.__getitem__)
    return {"status": worst, "node": src.node_id, "components": components}


def _delivery_health(src: StatusSources) -> dict[str, str]:
    pressure = src.backpressure
    if pressure is not None and pressure.over_budget:
        return _component(CRITICAL, "over the memory budget: refusing connections, "
                                    "and low-priority publishes")
    if pressure is not None and pressure.engaged:
        return _component(WARNING, f"backpressure engaged: {pressure.last_queued_bytes} bytes "
                                   "queued for clients")
    return _component(HEALTHY, f"{src.hub.connection_count} connection(s)")


def _component(status: str, reason: str) -> dict[str, str]:
    return {"status": status, "reason": reason}


def _storage_health(log: NotificationLog) -> dict[str, str]:
    try:
        with gevent.Timeout(3, StorageUnavailable("no answer within 3 s")):
            log.ping()
    except StorageUnavailable as exc:
        return _component(CRITICAL, str(exc))
    return _component(HEALTHY, "the notification log answers")


def _telemetry_health(src: StatusSources) -> dict[str, str]:
    if src.sink.last_error is not None:
        return _component(
            # the writer logged InfluxDB's own words; an answer never carries them
            WARNING, "InfluxDB unreachable, telemetry is not being written: it waits in "
                     "the disk spool (the node's log says why)"
        )
    if src.sink.total_dropped:
        return _component(WARNING, f"{src.sink.total_dropped} record(s) dropped since start")
    return _component(HEALTHY, f"{src.sink.written} record(s) written")
