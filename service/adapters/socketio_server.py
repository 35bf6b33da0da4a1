"""python-socketio on gevent, WebSocket transport only."""

from __future__ import annotations

from typing import Any

import socketio

from service.adapters import wire_json

MAX_FRAME_BYTES = 64 * 1024  # clients only send auth and acks


def make_socketio_server(
    *,
    ping_interval: float,
    ping_timeout: float,
    cors_allowed_origins: str,
    redis_url: str | None = None,
) -> socketio.Server:
    """Nothing connects here: RedisManager connects on first use."""
    manager = socketio.RedisManager(redis_url) if redis_url else None
    origins: Any = "*" if cors_allowed_origins == "*" else cors_allowed_origins.split(",")
    return socketio.Server(
        async_mode="gevent",
        transports=["websocket"],
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_http_buffer_size=MAX_FRAME_BYTES,
        cors_allowed_origins=origins,
        client_manager=manager,
        json=wire_json,
        logger=False,
        engineio_logger=False,
    )


class SocketIOSender:
    """The hub's Sender port, over a python-socketio server."""

    def __init__(self, sio: socketio.Server) -> None:
        self._sio = sio

    def send(self, sid: str, event: str, data: Any) -> None:
        self._sio.emit(event, data, to=sid)

    def disconnect(self, sid: str) -> None:
        self._sio.disconnect(sid)

