"""The composition root: the one place that wires adapters, handlers and
entrypoints together, for both processes.

``create_app`` builds a ``serve`` process and ``create_jobs`` a ``jobs``
process, each from the factories in ``service.wiring`` (storage, telemetry,
delivery, tuning, HTTP, jobs). Every part gets what it needs through its
constructor. Building runs no DDL: the schema is an explicit step,
``migrate_schema`` (``python -m service migrate``), which ``serve`` and
``jobs`` run first. The one read of the database while building is the
control log's history, so that the parts start with the config in force;
everything else connects on first use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import socketio
from flask import Flask
from gevent.pool import Pool
from sqlalchemy import Engine

from service.adapters.control_log import SqlControlLog
from service.adapters.influx import InfluxClient
from service.adapters.influx_writer import InfluxWriter
from service.adapters.job_lock import job_lock_for
from service.adapters.migrate import migrate
from service.adapters.patches import PatchesInForce
from service.adapters.redis_cluster import ClusterManager
from service.adapters.redis_presence import RedisPresence
from service.adapters.runtime_metrics import RuntimeSampler, process_snapshot
from service.config import Settings
from service.domain.errors import PresenceUnavailable
from service.entrypoints.admission import AdaptiveRate
from service.service_layer.backpressure import Backpressure
from service.service_layer.cached_log import InvalidatingTrimmer
from service.service_layer.cluster import run_log_follower, run_presence
from service.service_layer.delivery import DeliveryHub
from service.service_layer.live_config import LiveConfig
from service.service_layer.offline import run_offline_trimmer
from service.service_layer.status import StatusSources
from service.service_layer.telemetry import TelemetryRing
from service.wiring.delivery_factory import build_delivery
from service.wiring.http_factory import (
    build_flask,
    build_publishing,
    build_user_tokens,
    register_control_routes,
    register_notification_routes,
    register_sockets,
    wsgi_app,
)
from service.wiring.jobs_factory import JobsProcess, build_jobs, build_scheduler
from service.wiring.storage_factory import build_engine, build_storage, build_trimmer
from service.wiring.telemetry_factory import (
    build_query_stats,
    build_sampler,
    db_stats_view,
    make_telemetry,
)
from service.wiring.tuning_factory import build_live_config, retuner

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    flask: Flask
    sio: socketio.Server
    wsgi: Callable  # WSGI: Socket.IO and the Flask app (behind ProxyFix with PROXY_HOPS)
    hub: DeliveryHub
    ring: TelemetryRing
    writer: InfluxWriter
    sampler: RuntimeSampler | None  # None with TELEMETRY_ENABLED=0
    influx: InfluxClient
    engine: Engine
    patches: PatchesInForce  # the library patches in force (ALLOW_UNPATCHED)
    handler_pool: Pool  # the WSGI server spawns every request's and WebSocket's greenlet here
    trimmer: InvalidatingTrimmer  # the SQL trimmer, dropping what it changed from the cache
    backpressure: Backpressure
    live_config: LiveConfig
    control_log: SqlControlLog
    handshakes: AdaptiveRate  # Socket.IO handshakes admitted, at a rate the loop takes
    cluster: ClusterManager | None = None  # REDIS_URL set
    presence: RedisPresence | None = None  # a cluster node that delivers
    log_head: Callable[[], int] | None = None  # the log's head, uncached

    def start_background(self) -> None:
        # changes appended by other nodes (LISTEN/NOTIFY, or a poll on SQLite)
        self.control_log.start(self.sio.start_background_task)
        self.sio.start_background_task(self.hub.acks.run)
        self.sio.start_background_task(self.hub.run_idle_sweeper)
        self.sio.start_background_task(self.hub.run_batch_timers)
        self.sio.start_background_task(self.backpressure.run)
        self.sio.start_background_task(self.handshakes.run)
        self._start_cluster()
        self.sio.start_background_task(
            run_offline_trimmer, self.trimmer, interval=self.settings.offline_trim_interval,
            keep=lambda: self.live_config.values["offline_queue_max"],
            max_age_s=self.settings.offline_queue_max_age,
            telemetry=self.ring if self.settings.telemetry_enabled else None)
        if not self.settings.telemetry_enabled:
            return
        # actor "node": every config_change point carries one (annotations select it);
        # the level is the live one, the control log's history folded in
        self.ring.emit("config_change", (("kind", "startup"),), {
            "level": self.live_config.level,
            "text": f"node {self.settings.node_id} started at level {self.live_config.level}",
            "actor": "node",
        })
        self.sio.start_background_task(self.writer.run)
        if self.sampler is not None:
            self.sio.start_background_task(self.sampler.run)

    def _start_cluster(self) -> None:
        """Relay this node's writes; unless it only publishes, follow the log
        for what the relay lost, and report presence."""
        if self.cluster is None:
            return
        if not self.sio.manager_initialized:
            # python-socketio starts the manager (its Redis listener) at the
            # first client; a node must hear the others' writes before that,
            # or what its cache holds of them goes stale
            self.sio.manager_initialized = True
            self.sio.manager.initialize()
        self.sio.start_background_task(self.cluster.run_announcer)
        if self.settings.write_only:
            return
        self.sio.start_background_task(run_log_follower, self.log_head, self.hub,
                                       interval=self.settings.log_follow_interval)
        if self.presence is not None:
            self.sio.start_background_task(
                run_presence, self.presence, self.hub,
                interval=self.settings.presence_interval,
                telemetry=self.ring if self.settings.telemetry_enabled else None,
                relay_stats=self.cluster.stats)

    def close(self) -> None:
        """Stop background work; write pending acks, and write (or spool) the
        telemetry still in memory."""
        self.hub.acks.stop()
        if self.presence is not None:
            try:
                self.presence.withdraw()  # leave the totals now, not at the keys' expiry
            except PresenceUnavailable:
                pass
        self.control_log.stop()
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler.sample()
        if self.settings.telemetry_enabled:
            self.writer.close()
        self.engine.dispose()


def migrate_schema(settings: Settings, patches: PatchesInForce) -> str:
    """Bring the database's schema to the newest revision (adopting one made
    before migrations); return that revision. StorageUnavailable if the
    database cannot be reached, SchemaMismatch if it is not this service's."""
    engine = build_engine(settings, patches)
    try:
        return migrate(engine)
    finally:
        engine.dispose()


def create_app(settings: Settings, patches: PatchesInForce, *, role: str = "serve") -> App:
    """A ``serve`` process, built and not started (``App.start_background``),
    with the library patches ``patches`` (service.entrypoints.runtime's
    check at start-up)."""
    storage = build_storage(settings, patches)
    telemetry = make_telemetry(settings, role)
    recorder = telemetry.recorder
    delivery = build_delivery(settings, storage, recorder, patches)
    tokens = build_user_tokens(settings)
    register_sockets(settings, delivery.sio, delivery.hub, tokens, recorder)
    publishing = build_publishing(settings, storage, delivery, recorder)
    flask_app = build_flask()
    register_notification_routes(flask_app, settings, storage, delivery, publishing, tokens,
                                 recorder)
    live_config = build_live_config(settings, storage.control_log, retuner(
        settings, patches.connection_bytes, hub=delivery.hub, sender=delivery.sender,
        backpressure=delivery.backpressure, writes=publishing.writes,
        throttle=publishing.throttle, caches=storage.caches),
        recorder)
    handler_pool = Pool()
    query_stats = build_query_stats(settings, storage.engine, telemetry)
    sources = StatusSources(
        node_id=settings.node_id, storage_kind=settings.storage_kind, hub=delivery.hub,
        ring=telemetry.ring, sink=telemetry.writer, log=storage.log, started_at=time.time(),
        process_stats=lambda: process_snapshot(handler_pool),
        backpressure=delivery.backpressure, caches=storage.caches,
        db_stats=db_stats_view(query_stats))
    register_control_routes(flask_app, settings, live_config, sources, telemetry.influx)
    cluster = delivery.cluster
    return App(
        settings=settings, flask=flask_app, sio=delivery.sio,
        wsgi=wsgi_app(settings, delivery.sio, flask_app), hub=delivery.hub,
        ring=telemetry.ring, writer=telemetry.writer,
        sampler=build_sampler(settings, telemetry, handler_pool=handler_pool,
                              eio_sockets=delivery.sio.eio.sockets, query_stats=query_stats,
                              caches=storage.caches, hub=delivery.hub),
        influx=telemetry.influx, engine=storage.engine, patches=patches, handler_pool=handler_pool,
        trimmer=build_trimmer(settings, storage, cluster.announce_trim if cluster else None),
        backpressure=delivery.backpressure, live_config=live_config,
        control_log=storage.control_log, handshakes=AdaptiveRate(), cluster=cluster,
        presence=delivery.presence, log_head=storage.sql_log.head)


def create_jobs(settings: Settings, patches: PatchesInForce) -> JobsProcess:
    """A ``jobs`` process, built and not started (``JobsProcess.start``)."""
    telemetry = make_telemetry(settings, "jobs")
    engine = build_engine(settings, patches)
    control_log = SqlControlLog(engine)
    # the effective config, as every node folds it; no announcements from here
    config = build_live_config(settings, control_log, lambda _values: None, telemetry.ring,
                               announce=False)
    sampler = RuntimeSampler(telemetry.ring)
    jobs = build_jobs(settings, telemetry.influx, engine, config, telemetry.ring)
    scheduler = build_scheduler(jobs, job_lock_for(engine, settings.var_dir), sampler,
                                telemetry.ring)
    return JobsProcess(scheduler=scheduler, telemetry=telemetry, sampler=sampler,
                       control_log=control_log, engine=engine)
