"""Socket.IO handlers: authenticate, register with the hub, take acks.

Contract (DESIGN.md): connect with ``auth: {token, last_offset?}``; the
server emits ``notifications`` (a list); the client emits ``ack {offset}``.
Beyond it: ``auth.compression = "deflate"`` lets large batches arrive
compressed (binary), and ``reload`` tells a client its missed entries were
trimmed.
Errors on events come back as the ack callback's value and as an ``error``
event: ``{error, detail, field?}``.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from service.adapters.socketio_server import engineio_session
from service.adapters.tokens import UserTokens
from service.domain.compression import parse_scheme
from service.domain.errors import InvalidInput, ServiceError
from service.domain.model import parse_offset
from service.entrypoints.errors import socket_error
from service.service_layer.delivery import DeliveryHub
from service.service_layer.ports import Telemetry

log = logging.getLogger(__name__)


def register_socket_handlers(
    sio: socketio.Server, hub: DeliveryHub, tokens: UserTokens, telemetry: Telemetry | None
) -> None:
    def record(event: str, reason: str) -> None:
        if telemetry is None:
            return
        telemetry.emit(
            "notify_connection",
            (("event", event), ("reason", reason)),
            {"count": 1, "active": hub.connection_count},
        )

    @sio.event
    def connect(sid: str, environ: dict, auth: Any = None) -> None:
        try:
            if auth is not None and not isinstance(auth, dict):
                raise InvalidInput("auth must be an object {token, last_offset?, compression?}",
                                   field="auth")
            auth = auth or {}
            user_id = tokens.verify(auth.get("token"))
            last_offset = auth.get("last_offset")
            if last_offset is not None:
                last_offset = parse_offset(last_offset, "last_offset")
            hub.connect(sid, user_id, last_offset,
                        accepts_deflate=parse_scheme(auth.get("compression")))
            session = engineio_session(sio, sid)
            if session is not None:
                hub.leaks.track("engineio_session", session)
        except ServiceError as exc:
            record("refused", exc.code)
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, socket_error(exc)
            ) from None
        record("opened", "ok")

    @sio.event
    def disconnect(sid: str, reason: Any = None) -> None:
        session = engineio_session(sio, sid)
        if session is not None:
            hub.leaks.released("engineio_session", session)
        conn = hub.disconnect(sid)
        if conn is not None:
            record("closed", conn.close_reason or _reason_tag(reason))

    @sio.on("ack")
    def ack(sid: str, data: Any = None, *extra: Any) -> dict:
        try:
            if not isinstance(data, dict) or extra:
                raise InvalidInput("ack takes one object {offset}", field="offset")
            offset = parse_offset(data.get("offset"), "offset")
            hub.ack(sid, offset)  # counts as activity
        except ServiceError as exc:
            hub.touch(sid)  # a refused ack is activity too
            sio.emit("error", socket_error(exc), to=sid)
            return socket_error(exc)
        return {"ok": True, "offset": offset}

    @sio.on("*")
    def unknown_event(event: str, sid: str, *_args: Any) -> dict:
        hub.touch(sid)
        error = InvalidInput(
            f"unknown event {event[:64]!r}; this server accepts ack", field="event"
        )
        sio.emit("error", socket_error(error), to=sid)
        return socket_error(error)


def _reason_tag(reason: Any) -> str:
    text = str(reason or "unknown").lower()
    for known in (
        "client disconnect",
        "server disconnect",
        "ping timeout",
        "transport close",
        "transport error",
    ):
        if known in text:
            return known.replace(" ", "_")
    return "other"
