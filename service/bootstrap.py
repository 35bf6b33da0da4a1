"""The one place that wires adapters, handlers and entrypoints together.

Importing this module connects to nothing; ``create_app`` builds objects,
and connections open on first use.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import socketio
from flask import Flask
from gevent.pool import Pool
from sqlalchemy import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from service.adapters.cluster import ClusterHandlers, ClusterManager
from service.adapters.control_log import SqlControlLog, create_control_schema
from service.adapters.database import make_engine
from service.adapters.db_metrics import QueryStats
from service.adapters.influx import InfluxClient
from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.influx_writer import Backoff, InfluxWriter
from service.adapters.jwt_tokens import jwt_verifier
from service.adapters.notification_log import SqlNotificationLog, create_schema
from service.adapters.presence import RedisPresence
from service.adapters.runtime_metrics import RuntimeSampler, process_snapshot, rss_bytes
from service.adapters.socketio_server import SocketIOSender, make_socketio_server
from service.adapters.stream_trim import SqlStreamTrimmer
from service.adapters.telemetry_spool import DiskSpool
from service.adapters.tokens import UserTokens
from service.config import Settings
from service.domain.backpressure import BackpressurePolicy
from service.domain.batching import BatchPolicy
from service.domain.compression import CompressionPolicy
from service.domain.connections import ConnectionPolicy
from service.domain.control import recommendation_states
from service.domain.errors import PresenceUnavailable
from service.domain.model import Appended, PublishRequest
from service.domain.presence import Presence
from service.domain.rate_limits import SocketRateLimits
from service.domain.throttle import parse_rates
from service.entrypoints.admin_api import admin_blueprint, grafana_blueprint, health_blueprint
from service.entrypoints.admission import AdaptiveRate
from service.entrypoints.auth import BearerAuth
from service.entrypoints.config_api import config_blueprint
from service.entrypoints.control_api import alerts_blueprint, control_blueprint
from service.entrypoints.docs_site import docs_blueprint
from service.entrypoints.errors import register_http_errors
from service.entrypoints.history_api import history_blueprint
from service.entrypoints.openapi import openapi_blueprint
from service.entrypoints.presence_api import presence_blueprint
from service.entrypoints.publish_api import publish_blueprint
from service.entrypoints.publish_only import refuse_sockets
from service.entrypoints.sockets import register_socket_handlers
from service.entrypoints.unread_api import unread_blueprint
from service.service_layer.backpressure import Backpressure
from service.service_layer.books import BookedLog
from service.service_layer.cache_stats import CacheReporter, make_caches, retune_caches
from service.service_layer.cached_log import CachedNotificationLog, InvalidatingTrimmer
from service.service_layer.cluster import (
    AckRelayingLog,
    local_presence,
    run_log_follower,
    run_presence,
)
from service.service_layer.delivery import DeliveryHub
from service.service_layer.history import History
from service.service_layer.leaks import LeakTracker, report_leaks
from service.service_layer.offline import run_offline_trimmer
from service.service_layer.publishing import publish
from service.service_layer.reports import optimization_report, render_markdown, trends
from service.service_layer.status import StatusSources
from service.service_layer.telemetry import TelemetryRing
from service.service_layer.throttling import PublishThrottle
from service.service_layer.tuning import LiveConfig
from service.service_layer.write_batching import WriteBatcher

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 256 * 1024  # a 64 KiB payload, JSON-escaped, with room to spare


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
    handlers: Pool  # the WSGI server's request greenlets
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


def register_control_routes(flask_app: Flask, settings: Settings, live_config: LiveConfig,
                            sources: StatusSources, influx: InfluxClient) -> None:
    """The admin-token routes, the alert webhook, /healthz, the Grafana
    redirect, the API's description and the docs."""
    admins = BearerAuth("admin", settings.admin_credentials())
    reader = InfluxAnalysisReader(influx)

    def report(since: datetime | None, until: datetime | None) -> dict:
        events = live_config.events()
        return optimization_report(events, recommendation_states(events), reader, since, until)

    flask_app.register_blueprint(config_blueprint(live_config, admins))
    flask_app.register_blueprint(control_blueprint(live_config, admins))
    flask_app.register_blueprint(alerts_blueprint(
        live_config, BearerAuth("alert webhook", settings.alert_webhook_credentials())))
    flask_app.register_blueprint(admin_blueprint(
        sources, admins, live_config, trends=functools.partial(trends, reader),
        report=report, render_markdown=render_markdown, cluster_health=reader.latest_health))
    flask_app.register_blueprint(grafana_blueprint(settings.grafana_url))
    flask_app.register_blueprint(health_blueprint(sources))
    flask_app.register_blueprint(openapi_blueprint())
    flask_app.register_blueprint(docs_blueprint())


def delivery_sink(hub: DeliveryHub, cluster: ClusterManager | None) -> Callable[[Appended], None]:
    """Where a committed entry goes: this node's connections, and the other
    nodes. (A publish-only node's hub has no connections: it counts the
    entry as queued, as a node whose users are elsewhere does.)"""
    if cluster is None:
        return hub.deliver

    def deliver_and_announce(entry: Appended) -> None:
        hub.deliver(entry)
        cluster.announce(entry)

    return deliver_and_announce


def presence_views(node_id: str, hub: DeliveryHub, store: RedisPresence | None
                   ) -> tuple[Callable[[], Presence], Callable[[str], list[str]]]:
    """The presence API's two reads: from Redis in a cluster, else this node's."""
    def cluster_presence() -> Presence:
        return store.read() if store is not None else local_presence(node_id, hub)

    def nodes_of(user_id: str) -> list[str]:
        here = hub.is_connected(user_id)
        others = [n for n in store.nodes_of(user_id) if n != node_id] if store else []
        return sorted(others + [node_id]) if here else others

    return cluster_presence, nodes_of


def make_telemetry(
    settings: Settings, role: str
) -> tuple[TelemetryRing, InfluxWriter, InfluxClient]:
    """The ring, and the writer that drains it to InfluxDB through a disk spool."""
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
    return ring, writer, influx


def create_app(settings: Settings, *, role: str = "serve") -> App:
    engine = make_engine(settings.database_url, pool=settings.db_pool)
    create_schema(engine)
    create_control_schema(engine)
    # Every read and write of the log goes through its cache, so that each
    # write drops (at commit, before its caller is answered) what it changed.
    caches = make_caches(settings.tunables())
    sql_log = SqlNotificationLog(engine, key_window_s=settings.idempotency_window)
    # A publish-only node hears no other node's writes: it must not cache reads.
    notification_log = CachedNotificationLog(sql_log, users=caches["user"],
                                             shared=caches["global"],
                                             cache_reads=not settings.write_only)
    cluster = (ClusterManager(settings.redis_url, channel=settings.redis_channel,
                              node_id=settings.node_id, write_only=settings.write_only)
               if settings.redis_url else None)
    control_log = SqlControlLog(engine)

    ring, writer, influx = make_telemetry(settings, role)

    sio = make_socketio_server(
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        cors_allowed_origins=settings.cors_allowed_origins,
        client_manager=cluster,
    )
    # TELEMETRY_ENABLED=0 measures nothing at all: the baseline benchmarks compare against.
    telemetry = ring if settings.telemetry_enabled else None
    policy = ConnectionPolicy(
        max_per_node=settings.per_worker(settings.max_connections),  # `serve --workers`
        max_per_user=settings.max_connections_per_user,
        idle_timeout_s=settings.idle_timeout,
    )
    sender = SocketIOSender(sio, max_queued_bytes=settings.send_queue_max_bytes)
    # Engine.IO's ping task holds its session for up to a ping interval after
    # the close: only past that is a session still alive a leak.
    leak_grace = max(settings.leak_grace_s, settings.ping_interval + settings.ping_timeout)
    backpressure = Backpressure(
        BackpressurePolicy.for_budget(settings.memory_budget_mb << 20,
                                      settings.backpressure_actions,
                                      high_water_bytes=settings.backpressure_high_water_bytes),
        queued_bytes=sender.queued_bytes, rss_bytes=rss_bytes, telemetry=telemetry)
    # where acks are written: through the cache, and told to the other nodes
    ack_log = AckRelayingLog(notification_log, cluster) if cluster else notification_log
    hub = DeliveryHub(ack_log, sender, telemetry, sio.start_background_task, policy=policy,
                      batching=BatchPolicy(max_size=settings.batch_size,
                                           max_wait_s=settings.batch_timeout_ms / 1000.0),
                      compression=CompressionPolicy(min_bytes=settings.compression_min_bytes),
                      pressure=backpressure, leaks=LeakTracker(grace_s=leak_grace),
                      replay_reads_at_once=max(1, settings.db_pool.size // 2),
                      on_foreign=notification_log.changed_elsewhere if cluster else None)
    backpressure.on_release = hub.resume_deferred
    if cluster is not None:
        cluster.handlers = ClusterHandlers(
            committed=hub.deliver_many,
            acked=notification_log.acked_elsewhere,
            trimmed=notification_log.invalidate_all)
    tokens = UserTokens(settings.user_token_secret, settings.user_token_ttl, jwt=jwt_verifier(
        secret=settings.jwt_secret, public_key=settings.jwt_public_key,
        jwks_url=settings.jwt_jwks_url, audience=settings.jwt_audience,
        issuer=settings.jwt_issuer))
    limits = SocketRateLimits(
        connect_per_ip=settings.connect_rate_per_ip,
        connect_per_user=settings.connect_rate_per_user,
        event_per_ip=settings.event_rate_per_ip,
        event_per_user=settings.event_rate_per_user,
        clock=time.monotonic)
    if settings.write_only:
        refuse_sockets(sio)
    else:
        register_socket_handlers(sio, hub, tokens, telemetry, limits=limits)

    flask_app = Flask("service")
    flask_app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    flask_app.json.sort_keys = False
    register_http_errors(flask_app)
    throttle = PublishThrottle(settings.throttle_rates, telemetry=telemetry)

    def admit(request: PublishRequest) -> None:
        backpressure.admit(request)  # first: a refused publish takes no throttle tokens
        throttle.admit(request)

    # the books count each entry where it is committed (notify_books)
    writes = WriteBatcher(BookedLog(notification_log, hub.books), delivery_sink(hub, cluster),
                          telemetry,
                          max_batch=settings.write_batch_size,
                          window_s=settings.write_batch_window_ms / 1000.0,
                          spawn=sio.start_background_task)
    handler = functools.partial(publish, append=writes.append, telemetry=telemetry, admit=admit,
                                prior=notification_log.prior_publish)
    publishers = BearerAuth("publish", settings.publish_credentials())
    flask_app.register_blueprint(publish_blueprint(handler, publishers))
    flask_app.register_blueprint(unread_blueprint(notification_log.unread, publishers))
    flask_app.register_blueprint(history_blueprint(
        History(notification_log, ack_log, sql_log.head, telemetry), publishers, tokens))
    presence = (RedisPresence(settings.redis_url, channel=settings.redis_channel,
                              node_id=settings.node_id, ttl_s=3 * settings.presence_interval)
                if cluster is not None and not settings.write_only else None)
    flask_app.register_blueprint(presence_blueprint(
        *presence_views(settings.node_id, hub, presence), settings.node_id, publishers))

    def retune(values: dict) -> None:
        """Hand live tunables to the components that use them."""
        hub.retune(
            batching=BatchPolicy(max_size=values["batch_size"],
                                 max_wait_s=values["batch_timeout_ms"] / 1000.0),
            policy=ConnectionPolicy(max_per_node=settings.per_worker(values["max_connections"]),
                                    max_per_user=values["max_connections_per_user"],
                                    idle_timeout_s=values["idle_timeout"]),
            compression=CompressionPolicy(min_bytes=values["compression_min_bytes"]))
        sender.max_queued_bytes = values["send_queue_max_bytes"]
        writes.max_batch = values["write_batch_size"]
        writes.window_s = values["write_batch_window_ms"] / 1000.0
        throttle.set_rates(parse_rates(values["throttle"], {}))
        backpressure.policy = BackpressurePolicy.for_budget(
            values["memory_budget_mb"] << 20, settings.backpressure_actions,
            high_water_bytes=settings.backpressure_high_water_bytes)
        gc.set_threshold(values["gc_gen0_threshold"], *gc.get_threshold()[1:])
        retune_caches(caches, values)

    live_config = LiveConfig(
        settings.optimization_level,
        settings.env_overrides(),
        retune, telemetry, log=control_log)  # folds the log's history in, and follows it
    handlers = Pool()  # every request's and WebSocket's greenlet
    sources = StatusSources(
        node_id=settings.node_id,
        storage_kind=settings.storage_kind,
        hub=hub,
        ring=ring,
        sink=writer,
        log=notification_log,
        started_at=time.time(),
        process_stats=lambda: process_snapshot(handlers),
        backpressure=backpressure,
        caches=caches,
    )
    register_control_routes(flask_app, settings, live_config, sources, influx)

    wsgi: Callable = socketio.WSGIApp(sio, flask_app, socketio_path="socket.io")
    if settings.proxy_hops:
        # the client's address from X-Forwarded-For, as set by the trusted
        # proxies in front, for the per-IP limits and the logs
        wsgi = ProxyFix(wsgi, x_for=settings.proxy_hops)
    sampler = None
    if telemetry is not None:
        # statement timing and GC callbacks cost on every statement and every
        # collection: installed only when something will record them
        query_stats = QueryStats(engine, slow_ms=settings.db_slow_ms)
        sources.db_stats = lambda: query_stats.last_interval
        sampler = RuntimeSampler(ring, handlers=handlers, eio_sockets=sio.eio.sockets,
                                 ping_timeout=settings.ping_timeout,
                                 extra=[query_stats.emit,
                                        CacheReporter({("global", "log"): caches["global"],
                                                       ("user", "streams"): caches["user"]}).emit,
                                        functools.partial(report_leaks, hub.leaks),
                                        hub.books.emit])
    return App(
        settings=settings,
        flask=flask_app,
        sio=sio,
        wsgi=wsgi,
        hub=hub,
        ring=ring,
        writer=writer,
        sampler=sampler,
        influx=influx,
        engine=engine,
        handlers=handlers,
        trimmer=InvalidatingTrimmer(
            SqlStreamTrimmer(engine, key_window_s=settings.idempotency_window),
            notification_log, tell_others=cluster.announce_trim if cluster else None),
        backpressure=backpressure,
        live_config=live_config,
        control_log=control_log,
        handshakes=AdaptiveRate(),
        cluster=cluster,
        presence=presence,
        log_head=sql_log.head,
    )
