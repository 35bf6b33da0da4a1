"""Socket.IO handlers: authenticate, register with the hub, take acks.

The contract (docs/architecture.md, "Contracts that other parts rely on"):
connect with ``auth: {token, last_offset?, compression?}``; the server emits
``notifications`` (a list; binary and compressed for a large batch when
``auth.compression = "deflate"``) and ``reload`` (the client's missed
entries were trimmed); the client emits ``ack {offset}``.
Errors on events come back as the ack callback's value and as an ``error``
event: ``{error, detail, field?}``.

With ``limits``, connection attempts and events are rate-limited per IP
address and per user (``domain/socket_rate_limits.py``): an attempt over a limit is
refused with ``rate_limited``, an event over one is ignored with an
``error``, and a connection that keeps sending past it is closed.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from service.adapters.socketio_server import engineio_session
from service.adapters.tokens import UserTokens
from service.domain.compression import parse_scheme
from service.domain.errors import InternalError, InvalidInput, ServiceError, new_error_id
from service.domain.model import parse_offset
from service.domain.socket_rate_limits import RateLimited, SocketRateLimits, address_key
from service.entrypoints.error_answers import socket_error
from service.service_layer.delivery import DeliveryHub
from service.service_layer.ports import Telemetry

log = logging.getLogger(__name__)


def register_socket_handlers(
    sio: socketio.Server, hub: DeliveryHub, tokens: UserTokens, telemetry: Telemetry | None,
    *, limits: SocketRateLimits | None = None,
) -> None:
    # sid -> (user, address key), for the event limits; only kept when they are on
    peers: dict[str, tuple[str, str]] = {}
    flooded: set[str] = set()  # closed by us for flooding, until their disconnect runs
    limit_events = limits is not None and limits.limits_events

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
        address = address_key(environ.get("REMOTE_ADDR"))
        try:
            if limits is not None:  # first: a flood of bad attempts costs no HMAC, no read
                limits.check_connect_address(address)
            if auth is not None and not isinstance(auth, dict):
                raise InvalidInput("auth must be an object {token, last_offset?, compression?}",
                                   field="auth")
            auth = auth or {}
            user_id = tokens.verify(auth.get("token"))
            if limits is not None:
                limits.check_connect_user(user_id)
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
        except Exception:  # a bug: the client gets an answer, the node goes on
            error_id = new_error_id()
            log.exception("opening connection %s failed [%s]", sid, error_id)
            hub.disconnect(sid)  # whatever was registered goes with it
            error = InternalError("the server failed to open this connection; retry",
                                  error_id=error_id)
            record("refused", error.code)
            raise socketio.exceptions.ConnectionRefusedError(
                error.message, socket_error(error)) from None
        if limit_events:
            peers[sid] = (user_id, address)
        record("opened", "ok")

    @sio.event
    def disconnect(sid: str, reason: Any = None) -> None:
        session = engineio_session(sio, sid)
        if session is not None:
            hub.leaks.released("engineio_session", session)
        conn = hub.disconnect(sid)
        if limits is not None:
            peers.pop(sid, None)
            limits.closed(sid)
        was_flooding = sid in flooded
        flooded.discard(sid)
        if conn is not None:
            record("closed", RateLimited.code if was_flooding
                   else conn.close_reason or _reason_tag(reason))

    def tell(sid: str, error: ServiceError) -> None:
        """An ``error`` event to this node's own client: never through Redis
        (with several nodes, every emit would otherwise be published to all)."""
        sio.emit("error", socket_error(error), to=sid, ignore_queue=True)

    def over_limit(sid: str) -> dict | None:
        """None if the event may go on; else its error, sent already, and the
        connection closed if it keeps flooding."""
        peer = peers.get(sid) if limit_events else None
        if peer is None or limits is None:
            return None
        try:
            limits.check_event(sid, *peer)
        except RateLimited as exc:
            hub.touch(sid)  # busy, not idle
            tell(sid, exc)
            if exc.close:
                close_flooder(sid)
            return socket_error(exc)
        return None

    def close_flooder(sid: str) -> None:
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        flooded.add(sid)
        sio.disconnect(sid)  # a Socket.IO client sees "io server disconnect": no auto-reconnect
        if eio_sid is not None:
            sio.eio.disconnect(eio_sid)  # and a raw WebSocket cannot go on sending

    @sio.on("ack")
    def ack(sid: str, data: Any = None, *extra: Any) -> dict:
        refused = over_limit(sid)
        if refused is not None:
            return refused
        try:
            if not isinstance(data, dict) or extra:
                raise InvalidInput("ack takes one object {offset}", field="offset")
            offset = parse_offset(data.get("offset"), "offset")
            hub.ack(sid, offset)  # counts as activity
        except ServiceError as exc:
            hub.touch(sid)  # a refused ack is activity too
            tell(sid, exc)
            return socket_error(exc)
        return {"ok": True, "offset": offset}

    @sio.on("*")
    def unknown_event(event: str, sid: str, *_args: Any) -> dict:
        refused = over_limit(sid)
        if refused is not None:
            return refused
        hub.touch(sid)
        error = InvalidInput(
            f"unknown event {event[:64]!r}; this server accepts ack", field="event"
        )
        tell(sid, error)
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
