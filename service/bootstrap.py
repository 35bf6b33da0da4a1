"""The one place that wires adapters, handlers and entrypoints together.

Importing this module connects to nothing; ``create_app`` builds objects,
and connections open on first use.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import socketio
from flask import Flask
from sqlalchemy import Engine

from service.adapters.database import make_engine
from service.adapters.influx import InfluxClient
from service.adapters.influx_writer import InfluxWriter
from service.adapters.notification_log import SqlNotificationLog, create_schema
from service.adapters.socketio_server import SocketIOSender, make_socketio_server
from service.adapters.tokens import UserTokens
from service.config import Settings
from service.entrypoints.admin_api import admin_blueprint, health_blueprint
from service.entrypoints.errors import register_http_errors
from service.entrypoints.publish_api import publish_blueprint
from service.entrypoints.sockets import register_socket_handlers
from service.service_layer.delivery import DeliveryHub
from service.service_layer.publishing import publish
from service.service_layer.status import StatusSources
from service.service_layer.telemetry import TelemetryRing

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 256 * 1024  # a 64 KiB payload, JSON-escaped, with room to spare


@dataclass
class App:
    settings: Settings
    flask: Flask
    sio: socketio.Server
    wsgi: socketio.WSGIApp
    hub: DeliveryHub
    ring: TelemetryRing
    writer: InfluxWriter
    influx: InfluxClient
    engine: Engine

    def start_background(self) -> None:
        self.sio.start_background_task(self.writer.run)

    def close(self) -> None:
        """Stop background work and flush what telemetry is left."""
        self.writer.stop()
        self.writer.report_self()
        while self.writer.flush():
            pass
        self.engine.dispose()


def create_app(settings: Settings, *, role: str = "serve") -> App:
    engine = make_engine(settings.database_url)
    create_schema(engine)
    notification_log = SqlNotificationLog(engine)

    ring = TelemetryRing()
    influx = InfluxClient(settings.influx_settings())
    writer = InfluxWriter(ring, influx, {"node": settings.node_id, "role": role})

    sio = make_socketio_server(
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        cors_allowed_origins=settings.cors_allowed_origins,
        redis_url=settings.redis_url,
    )
    hub = DeliveryHub(notification_log, SocketIOSender(sio), ring, sio.start_background_task)
    tokens = UserTokens(settings.user_token_secret, settings.user_token_ttl)
    register_socket_handlers(sio, hub, tokens, ring)

    flask_app = Flask("service")
    flask_app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    flask_app.json.sort_keys = False
    register_http_errors(flask_app)
    handler = functools.partial(publish, log=notification_log, deliver=hub.deliver, telemetry=ring)
    flask_app.register_blueprint(publish_blueprint(handler, settings.publish_token))
    sources = StatusSources(
        node_id=settings.node_id,
        storage_kind=settings.storage_kind,
        hub=hub,
        ring=ring,
        sink=writer,
        log=notification_log,
        started_at=time.time(),
    )
    flask_app.register_blueprint(admin_blueprint(sources, settings.admin_token))
    flask_app.register_blueprint(health_blueprint(sources))

    wsgi = socketio.WSGIApp(sio, flask_app, socketio_path="socket.io")
    return App(
        settings=settings,
        flask=flask_app,
        sio=sio,
        wsgi=wsgi,
        hub=hub,
        ring=ring,
        writer=writer,
        influx=influx,
        engine=engine,
    )
