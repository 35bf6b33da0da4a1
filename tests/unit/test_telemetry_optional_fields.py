"""``Measurement.optional_fields`` is derived from the emitters, not assumed:
points are written through the real emitters, down each code path that
leaves a field out, into a real ``TelemetryRing``. Every point must carry
every field that is not optional (a query may select it unguarded, and
Grafana drops a row with a null column), and each optional field must be
missing from some real point (or it is not optional).

Exercised here: the hub and outbox (``notify_dispatch``, ``notify_delivery``),
publishing, the group commit, backpressure, the runtime sampler with the
node's extra emitters (cache, leaks, books), the telemetry writer's own
report, the control log (``config_change``, ``control_event``), the offline
trim, presence, and the analysis jobs (health, targets, recommendations,
impact, trends, ``job_run``).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import gevent
import pytest

from service.adapters.influx_writer import InfluxWriter
from service.adapters.redis_cluster import RelayStats
from service.adapters.runtime_metrics import RuntimeSampler
from service.domain.backpressure_policy import BackpressurePolicy
from service.domain.batching import BatchPolicy
from service.domain.errors import PresenceUnavailable
from service.domain.measurements import CATALOGUE
from service.domain.presence import NodePresence, Presence
from service.service_layer import analysis
from service.service_layer.backpressure import Backpressure
from service.service_layer.books import BookedLog
from service.service_layer.cache_stats import CacheReporter, make_caches
from service.service_layer.cluster import run_presence
from service.service_layer.delivery import DeliveryHub
from service.service_layer.job_runs import JobSpec, run_job
from service.service_layer.leaks import report_leaks
from service.service_layer.live_config import LiveConfig
from service.service_layer.offline import trim_offline_queues
from service.service_layer.ports import TrimResult
from service.service_layer.publishing import publish
from service.service_layer.telemetry import TelemetryRing
from service.service_layer.trend_job import run_trends
from service.service_layer.write_batching import WriteBatcher
from tests.support.analysis_figures import Figures
from tests.support.fake_metrics import InMemoryMetricSeries, RecordingPointWriter
from tests.support.fakes import (
    InMemoryControlLog,
    InMemoryNotificationLog,
    ManualSpawner,
    RecordingSender,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MB = 1 << 20


def test_every_optional_field_is_a_field_of_its_measurement():
    for m in CATALOGUE.values():
        assert len(set(m.optional_fields)) == len(m.optional_fields), m.name
        assert set(m.optional_fields) <= set(m.fields), m.name
        assert set(m.fields) - set(m.optional_fields), f"{m.name}: some field is always there"


class Stop(Exception):
    """Ends a background loop after the point the test wanted."""


class Store:
    node_id = "n1"

    def __init__(self, up: bool) -> None:
        self.up = up

    def report(self, connections, user_ids) -> None:
        if not self.up:
            raise PresenceUnavailable("redis is down")

    def read(self) -> Presence:
        return Presence((NodePresence("n1", 1, 1, 0.0),), 1, "redis")

    def nodes_of(self, user_id):
        return []


class OneShot:
    """Telemetry that stops the loop that emits to it, after recording."""

    def __init__(self, ring: TelemetryRing) -> None:
        self.ring = ring

    def emit(self, measurement, tags, fields) -> None:
        self.ring.emit(measurement, tags, fields)
        raise Stop


@contextlib.contextmanager
def free(name):
    yield True


def delivery_paths(ring: TelemetryRing) -> None:
    """Live batches (they waited in a batch queue) and a replay (it did not);
    publishes through the group commit and the books."""
    log, spawn = InMemoryNotificationLog(), ManualSpawner()
    hub = DeliveryHub(log, RecordingSender(), ring, spawn, batching=BatchPolicy(max_size=1))
    hub.connect("s-ann", "ann", last_offset=None)
    spawn.run_all()
    batcher = WriteBatcher(BookedLog(log, hub.books), hub.deliver, ring)
    for user in ("ann", "bob", "ann"):
        publish({"user_id": user, "category": "c"}, append=batcher.append, telemetry=ring)
    assert batcher.wait_delivered(timeout=2)
    hub.connect("s-bob", "bob", last_offset=0)
    spawn.run_all()  # bob's replay
    pressure = Backpressure(BackpressurePolicy.for_budget(100 * MB),
                            queued_bytes=lambda: (30 * MB, 2), rss_bytes=lambda: 10 * MB,
                            telemetry=ring)
    pressure.sample()  # engaged: notify_backpressure and notify_queues
    caches = make_caches({"cache_entries": 10, "cache_ttl_s": 60.0, "cache_max_bytes": MB,
                          "cache_compress_min_bytes": 0})
    sampler = RuntimeSampler(ring, handlers=[1], eio_sockets={},
                             extra=[CacheReporter({("global", "log"): caches["global"]}).emit,
                                    lambda t: report_leaks(hub.leaks, t), hub.books.emit])
    sampler.sample()
    sampler.stop()
    InfluxWriter(ring, client=None, common_tags={}, prepare=lambda: None).report_self()


def control_and_job_paths(ring: TelemetryRing) -> None:
    log = InMemoryControlLog()
    config = LiveConfig("balanced", {}, lambda values: None, ring, log=log)
    config.change({"parameters": {"batch_size": 5}}, actor="alice")
    config.change({"parameters": {"batch_size": 7}}, actor="alice")  # too soon: not measured
    at = log.events[-1].at
    quiet = {"delivered_per_s": 10.0, "delivery_p99_ms": 30.0, "drops_per_s": 0.0,
             "cache_hit_rate": 0.5, "rss_node_max": 1e6, "cache_lookups": 500.0}
    analysis.run_health(Figures(quiet), ring, config, 1 << 30, now=at)
    analysis.run_recommendations(Figures(quiet), config, ring, "http://x", now=at)
    analysis.run_impact(Figures(quiet), config, auto_rollback=True, telemetry=ring,
                        now=at + timedelta(minutes=20))
    run_job(JobSpec("health", 60, lambda: 1), type("Free", (), {"hold": staticmethod(free)}),
            ring)
    run_job(JobSpec("health", 60, lambda: 1 / 0), type("Free", (), {"hold": staticmethod(free)}),
            ring)
    trim_offline_queues(type("T", (), {"trim": lambda self, keep, age: TrimResult(1, 2)})(),
                        keep=10, max_age_s=None, telemetry=ring)
    for up in (True, False):
        with pytest.raises(Stop):
            run_presence(Store(up), type("Hub", (), {"connection_count": 1, "head": 0,
                                                     "online_users": lambda self: ["a"]})(),
                         interval=0, telemetry=OneShot(ring),
                         relay_stats=RelayStats())  # as bootstrap wires it


def trend_points() -> list[tuple[str, dict]]:
    hour = [(NOW - timedelta(minutes=i), 100.0 + i) for i in range(60)]
    series = InMemoryMetricSeries({("connections", "1m"): hour, ("publish_rate", "1m"): hour})
    writer = RecordingPointWriter()
    run_trends(series, writer, {"connections": 1000.0}, now=NOW,
               metrics=("connections", "publish_rate"))
    return [(p.measurement, dict(p.fields)) for p, _rp in writer.written]


def test_real_points_lack_only_optional_fields_and_each_optional_field_is_lacked():
    ring = TelemetryRing()
    gevent.spawn(delivery_paths, ring).get(timeout=5)
    control_and_job_paths(ring)
    ring.flush_tallies()
    points = [(m, dict(f)) for m, _tags, f, _ts in ring.drain(10**6)] + trend_points()
    seen: dict[str, list[set[str]]] = defaultdict(list)
    for measurement, fields in points:
        seen[measurement].append(set(fields))
    for name, field_sets in seen.items():
        m = CATALOGUE[name]
        required = set(m.fields) - set(m.optional_fields)
        for fields in field_sets:
            assert required <= fields, f"{name} lacks {sorted(required - fields)}"
            assert fields <= set(m.fields), name
        lacked = {f for fields in field_sets for f in set(m.fields) - fields}
        assert lacked == set(m.optional_fields), f"{name}: optional in the catalogue " \
            f"{sorted(m.optional_fields)}, lacked by real points {sorted(lacked)}"
    # every measurement that declares optional fields was seen lacking them here
    declaring = {m.name for m in CATALOGUE.values() if m.optional_fields}
    assert declaring <= set(seen), sorted(declaring - set(seen))
    assert {"notify_books", "analysis_targets", "analysis_recommendation",
            "config_change", "process", "cache", "telemetry_self"} <= set(seen)
