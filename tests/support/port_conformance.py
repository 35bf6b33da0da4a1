"""Each port (a ``typing.Protocol``) and everything that stands in for it:
the real adapters, the service layer's wrappers, and the in-memory fakes.

Nothing calls these functions. They exist for mypy (``make test`` runs it):
each returns its arguments as the port, so an implementation whose methods
drift from the port (a parameter renamed, added without a default, a
return type changed) fails the type check, naming the member that differs.
Protocols are structural: without this, nothing would notice until a test
happened to exercise the drifted call, or never, for a fake.

A new implementation of a port, or a new port, gets a line here.
"""

from __future__ import annotations

import gevent

from service.adapters.control_log import SqlControlLog
from service.adapters.influx_points import InfluxPointWriter
from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.influx_rollups import InfluxRollupStore
from service.adapters.influx_series import InfluxMetricSeries
from service.adapters.influx_writer import InfluxWriter
from service.adapters.job_lock import FileJobLock, InMemoryJobLock, PgAdvisoryJobLock
from service.adapters.notification_log import SqlNotificationLog
from service.adapters.redis_cluster import ClusterManager
from service.adapters.redis_presence import RedisPresence
from service.adapters.socketio_server import SocketIOSender
from service.adapters.stream_trim import SqlStreamTrimmer
from service.domain.changepoints import detect
from service.service_layer import telemetry
from service.service_layer.analysis import Detector, HealthInputs, SeriesSource
from service.service_layer.backpressure import Backpressure
from service.service_layer.books import BookedLog
from service.service_layer.cached_log import CachedNotificationLog, InvalidatingTrimmer
from service.service_layer.cluster import AckRelayingLog, Hub, PresenceStore, Relay
from service.service_layer.delivery import DeliveryHub
from service.service_layer.ports import (
    AnalysisReader,
    ControlLog,
    JobLock,
    MetricSeries,
    NotificationLog,
    PointWriter,
    PressureGate,
    RollupStore,
    Sender,
    Spawner,
    StreamTrimmer,
    Summary,
    Telemetry,
)
from service.service_layer.status import TelemetrySinkStatus
from service.service_layer.user_history import AckWriter, HistoryLog
from tests.support.analysis_figures import Figures
from tests.support.fake_metrics import InMemoryMetricSeries, RecordingPointWriter
from tests.support.fake_stream_trimmer import InMemoryStreamTrimmer
from tests.support.fakes import (
    InMemoryControlLog,
    InMemoryNotificationLog,
    ManualSpawner,
    RecordingSender,
    RecordingSummary,
    RecordingTelemetry,
)

# -- service.service_layer.ports ------------------------------------------------


def notification_logs(sql: SqlNotificationLog, cached: CachedNotificationLog,
                      booked: BookedLog, fake: InMemoryNotificationLog,
                      ) -> list[NotificationLog]:
    return [sql, cached, booked, fake]


def stream_trimmers(sql: SqlStreamTrimmer, invalidating: InvalidatingTrimmer,
                    fake: InMemoryStreamTrimmer) -> list[StreamTrimmer]:
    return [sql, invalidating, fake]


def summaries(ring: telemetry.Summary, fake: RecordingSummary) -> list[Summary]:
    return [ring, fake]


def telemetries(ring: telemetry.TelemetryRing, fake: RecordingTelemetry) -> list[Telemetry]:
    return [ring, fake]


def pressure_gates(backpressure: Backpressure) -> list[PressureGate]:
    return [backpressure]


def senders(socketio: SocketIOSender, fake: RecordingSender) -> list[Sender]:
    return [socketio, fake]


def spawners(fake: ManualSpawner) -> list[Spawner]:
    return [gevent.spawn, fake]


def control_logs(sql: SqlControlLog, fake: InMemoryControlLog) -> list[ControlLog]:
    return [sql, fake]


def analysis_readers(influx: InfluxAnalysisReader) -> list[AnalysisReader]:
    return [influx]


def job_locks(pg: PgAdvisoryJobLock, file: FileJobLock, memory: InMemoryJobLock,
              ) -> list[JobLock]:
    return [pg, file, memory]


def point_writers(influx: InfluxPointWriter, rollups: InfluxRollupStore,
                  fake: RecordingPointWriter) -> list[PointWriter]:
    return [influx, rollups, fake]


def rollup_stores(influx: InfluxRollupStore) -> list[RollupStore]:
    return [influx]


def metric_series(influx: InfluxMetricSeries, fake: InMemoryMetricSeries,
                  ) -> list[MetricSeries]:
    return [influx, fake]


# -- the ports declared beside the service-layer code that uses them ------------


def hubs(delivery: DeliveryHub) -> list[Hub]:
    return [delivery]


def presence_stores(redis: RedisPresence) -> list[PresenceStore]:
    return [redis]


def relays(redis: ClusterManager) -> list[Relay]:
    return [redis]


def history_logs(cached: CachedNotificationLog, sql: SqlNotificationLog,
                 fake: InMemoryNotificationLog) -> list[HistoryLog]:
    return [cached, sql, fake]


def ack_writers(relaying: AckRelayingLog, log: NotificationLog) -> list[AckWriter]:
    return [relaying, log]


def telemetry_sinks(influx: InfluxWriter) -> list[TelemetrySinkStatus]:
    return [influx]


def health_inputs(influx: InfluxAnalysisReader, fake: Figures) -> list[HealthInputs]:
    return [influx, fake]


def series_sources(influx: InfluxMetricSeries, fake: InMemoryMetricSeries,
                   ) -> list[SeriesSource]:
    return [influx, fake]


def detectors() -> list[Detector]:
    return [detect]
