"""Telemetry of either process: the ring that measurements go into, the
writer that drains it to InfluxDB through a disk spool, and the sampler of
the process itself."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from service.adapters.db_metrics import QueryStats
from service.adapters.influx import InfluxClient
from service.adapters.influx_writer import Backoff, InfluxWriter
from service.adapters.runtime_metrics import RuntimeSampler
from service.adapters.telemetry_spool import DiskSpool
from service.config import Settings
from service.domain.cache import TtlLruCache
from service.service_layer.cache_stats import CacheReporter
from service.service_layer.delivery import DeliveryHub
from service.service_layer.leaks import report_leaks
from service.service_layer.ports import Telemetry
from service.service_layer.telemetry import TelemetryRing


@dataclass(frozen=True)
class TelemetryPipeline:
    ring: TelemetryRing
    writer: InfluxWriter
    influx: InfluxClient
    enabled: bool  # TELEMETRY_ENABLED

    @property
    def recorder(self) -> TelemetryRing | None:
        """What components record into: nothing at all with
        TELEMETRY_ENABLED=0, the baseline the benchmarks compare against."""
        return self.ring if self.enabled else None


def make_telemetry(settings: Settings, role: str) -> TelemetryPipeline:
    """The ring, and the writer that drains it to InfluxDB through a disk
    spool of this process's own (``role``: serve, jobs)."""
    ring = TelemetryRing()
    influx = InfluxClient(settings.influx_settings())
    retention = settings.retention()
    writer = InfluxWriter(
        ring,
        influx,
        {"node": settings.node_id, "role": role},
        spool=DiskSpool(settings.spool_dir(role), settings.telemetry_spool_max_bytes),
        prepare=lambda: influx.ensure_database(retention),
        backoff=Backoff(base=0.5, cap=settings.telemetry_retry_max_s),
    )
    return TelemetryPipeline(ring, writer, influx, settings.telemetry_enabled)


def build_query_stats(settings: Settings, engine: Engine,
                      telemetry: TelemetryPipeline) -> QueryStats | None:
    """Statement timing costs on every statement: installed only when
    something will record it."""
    if telemetry.recorder is None:
        return None
    return QueryStats(engine, slow_ms=settings.db_slow_ms)


def db_stats_view(query_stats: QueryStats | None) -> Callable[[], dict] | None:
    """The status route's view of the last interval's statements."""
    if query_stats is None:
        return None
    stats = query_stats
    return lambda: stats.last_interval


def build_sampler(settings: Settings, telemetry: TelemetryPipeline, *, handler_pool: Sized,
                  eio_sockets: dict, query_stats: QueryStats | None,
                  caches: dict[str, TtlLruCache], hub: DeliveryHub) -> RuntimeSampler | None:
    """The ``serve`` process's sampler (GC callbacks cost on every
    collection: none with telemetry off)."""
    if telemetry.recorder is None or query_stats is None:
        return None
    extra: list[Callable[[Telemetry], Any]] = [
        query_stats.emit,
        CacheReporter({("global", "log"): caches["global"],
                       ("user", "streams"): caches["user"]}).emit,
        functools.partial(report_leaks, hub.leaks),
        hub.books.emit]
    return RuntimeSampler(telemetry.ring, handlers=handler_pool, eio_sockets=eio_sockets,
                          ping_timeout=settings.ping_timeout, extra=extra)
