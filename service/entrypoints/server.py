"""``python -m service serve``: one node on gevent's WSGI server."""

from __future__ import annotations

import logging
import signal
import sys

import gevent
from gevent import pywsgi
from geventwebsocket.handler import WebSocketHandler

from service.bootstrap import create_app
from service.config import Settings
from service.domain.errors import StorageUnavailable
from service.entrypoints.runtime import start_process, tune_gc

log = logging.getLogger("service.serve")


def serve(settings: Settings) -> int:
    refused = start_process()
    if refused is not None:
        return refused
    try:
        app = create_app(settings)
    except StorageUnavailable as exc:
        print(f"refusing to start: {exc.message}", file=sys.stderr)
        return 4
    server = pywsgi.WSGIServer(
        (settings.host, settings.port),
        app.wsgi,
        handler_class=WebSocketHandler,
        spawn=app.handlers,
        log=None,
        error_log=logging.getLogger("service.wsgi"),
    )
    app.start_background()

    def shutdown() -> None:
        log.info("stopping: closing connections")
        server.stop(timeout=5)

    gevent.signal_handler(signal.SIGTERM, shutdown)
    gevent.signal_handler(signal.SIGINT, shutdown)
    try:
        server.start()
    except OSError as exc:
        print(
            f"refusing to start: cannot listen on {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        return 5
    tune_gc(settings.gc_gen0_threshold, settings.gc_freeze)
    print(banner(settings), flush=True)
    server.serve_forever()
    app.close()
    log.info("stopped")
    return 0


def banner(settings: Settings) -> str:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        f"notify node {settings.node_id} serving on {base}",
        f"  publish:   POST {base}/api/v1/notifications",
        f"  socket.io: {base}/socket.io (WebSocket)",
        f"  health:    {base}/healthz",
        f"  storage:   {settings.storage_kind} ({_redact(settings.database_url)})",
        f"  influxdb:  {settings.influx_url} database {settings.influx_db}",
        f"  level:     {settings.optimization_level}",
    ]
    shown = {
        "PUBLISH_TOKEN": settings.publish_token,
        "ADMIN_TOKEN": settings.admin_token,
        "USER_TOKEN_SECRET": settings.user_token_secret,
    }
    for name in settings.generated_secrets:
        where = f"{settings.var_dir}/dev-secrets.json"
        lines.append(f"  {name}={shown[name]}  (generated for dev, kept in {where})")
    return "\n".join(lines)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
