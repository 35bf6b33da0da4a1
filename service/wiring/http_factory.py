"""The HTTP side of a ``serve`` process: the Flask app and its routes, the
Socket.IO event handlers, the publish path (admission, throttle, group
commit), and the WSGI app that serves Socket.IO and Flask together."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import socketio
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from service.adapters.influx import InfluxClient
from service.adapters.influx_reader import InfluxAnalysisReader
from service.adapters.jwt_tokens import jwt_verifier
from service.adapters.redis_presence import RedisPresence
from service.adapters.tokens import UserTokens
from service.config import Settings
from service.domain.control import recommendation_states
from service.domain.model import PublishRequest
from service.domain.presence import Presence
from service.domain.socket_rate_limits import SocketRateLimits
from service.entrypoints.admin_api import admin_blueprint, grafana_blueprint, health_blueprint
from service.entrypoints.auth import BearerAuth
from service.entrypoints.config_api import config_blueprint
from service.entrypoints.control_api import alerts_blueprint, control_blueprint
from service.entrypoints.docs_site import docs_blueprint
from service.entrypoints.error_answers import register_http_errors
from service.entrypoints.history_api import history_blueprint
from service.entrypoints.http_input import MAX_REQUEST_BYTES
from service.entrypoints.openapi import openapi_blueprint
from service.entrypoints.presence_api import presence_blueprint
from service.entrypoints.publish_api import publish_blueprint
from service.entrypoints.sockets import register_socket_handlers
from service.entrypoints.unread_api import unread_blueprint
from service.entrypoints.write_only_sockets import refuse_sockets
from service.service_layer.books import BookedLog
from service.service_layer.cluster import local_presence
from service.service_layer.delivery import DeliveryHub
from service.service_layer.live_config import LiveConfig
from service.service_layer.publish_throttle import PublishThrottle
from service.service_layer.publishing import publish
from service.service_layer.reports import optimization_report, render_markdown, trends
from service.service_layer.status import StatusSources
from service.service_layer.telemetry import TelemetryRing
from service.service_layer.user_history import History
from service.service_layer.write_batching import WriteBatcher
from service.wiring.delivery_factory import Delivery, delivery_sink
from service.wiring.storage_factory import Storage


@dataclass(frozen=True)
class Publishing:
    throttle: PublishThrottle
    writes: WriteBatcher  # group commit: many publishes to one transaction


def build_publishing(settings: Settings, storage: Storage, delivery: Delivery,
                     recorder: TelemetryRing | None) -> Publishing:
    # the books count each entry where it is committed (notify_books)
    writes = WriteBatcher(BookedLog(storage.log, delivery.hub.books),
                          delivery_sink(delivery.hub, delivery.cluster), recorder,
                          max_batch=settings.write_batch_size,
                          window_s=settings.write_batch_window_ms / 1000.0,
                          spawn=delivery.sio.start_background_task)
    return Publishing(PublishThrottle(settings.throttle_rates, telemetry=recorder), writes)


def build_user_tokens(settings: Settings) -> UserTokens:
    return UserTokens(settings.user_token_secret, settings.user_token_ttl, jwt=jwt_verifier(
        secret=settings.jwt_secret, public_key=settings.jwt_public_key,
        jwks_url=settings.jwt_jwks_url, audience=settings.jwt_audience,
        issuer=settings.jwt_issuer))


def register_sockets(settings: Settings, sio: socketio.Server, hub: DeliveryHub,
                     tokens: UserTokens, recorder: TelemetryRing | None) -> None:
    if settings.write_only:
        refuse_sockets(sio)
        return
    limits = SocketRateLimits(
        connect_per_ip=settings.connect_rate_per_ip,
        connect_per_user=settings.connect_rate_per_user,
        event_per_ip=settings.event_rate_per_ip,
        event_per_user=settings.event_rate_per_user,
        clock=time.monotonic)
    register_socket_handlers(sio, hub, tokens, recorder, limits=limits)


def build_flask() -> Flask:
    flask_app = Flask("service")
    flask_app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    if isinstance(flask_app.json, DefaultJSONProvider):  # Flask's own: answers keep their order
        flask_app.json.sort_keys = False
    register_http_errors(flask_app)
    return flask_app


def register_notification_routes(flask_app: Flask, settings: Settings, storage: Storage,
                                 delivery: Delivery, publishing: Publishing,
                                 tokens: UserTokens, recorder: TelemetryRing | None) -> None:
    """Publish, unread counts, history and presence: the publish token's routes."""
    def admit(request: PublishRequest) -> None:
        delivery.backpressure.admit(request)  # first: a refused publish takes no throttle tokens
        publishing.throttle.admit(request)

    handler = functools.partial(publish, append=publishing.writes.append, telemetry=recorder,
                                admit=admit, prior=storage.log.prior_publish)
    publishers = BearerAuth("publish", settings.publish_credentials())
    flask_app.register_blueprint(publish_blueprint(handler, publishers))
    flask_app.register_blueprint(unread_blueprint(storage.log.unread, publishers))
    flask_app.register_blueprint(history_blueprint(
        History(storage.log, delivery.ack_log, storage.sql_log.head, recorder),
        publishers, tokens))
    flask_app.register_blueprint(presence_blueprint(
        *presence_views(settings.node_id, delivery.hub, delivery.presence), settings.node_id,
        publishers))


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


def wsgi_app(settings: Settings, sio: socketio.Server, flask_app: Flask) -> Callable:
    """Socket.IO and the Flask app, behind ProxyFix with PROXY_HOPS."""
    wsgi: Callable = socketio.WSGIApp(sio, flask_app, socketio_path="socket.io")
    if settings.proxy_hops:
        # the client's address from X-Forwarded-For, as set by the trusted
        # proxies in front, for the per-IP limits and the logs
        wsgi = ProxyFix(wsgi, x_for=settings.proxy_hops)
    return wsgi
