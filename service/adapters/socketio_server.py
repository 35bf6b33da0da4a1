"""python-socketio on gevent, WebSocket transport only."""

from __future__ import annotations

from collections import deque
from typing import Any

import gevent
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from service.adapters import wire_json
from service.adapters.patches import ENGINEIO_SESSIONS, SOCKETIO_MESSAGES, PatchesInForce, check
from service.adapters.patches.socketio_messages import socketio_server_class
from service.domain.connections import SlowConsumer

MAX_FRAME_BYTES = 64 * 1024  # clients only send auth and acks
STUCK_GRACE_S = 2.0  # a closed client that reads nothing is cut off after this


def make_socketio_server(
    *,
    ping_interval: float,
    ping_timeout: float,
    cors_allowed_origins: str,
    client_manager: socketio.Manager | None = None,
    patches: PatchesInForce | None = None,
) -> socketio.Server:
    """Nothing connects here: a RedisManager connects on first use. With
    the library patches in force (``patches``; given none, the installed
    versions must be those the patches were written for), the Engine.IO
    sessions park no greenlet while idle and client messages are checked
    before dispatch (service/adapters/patches)."""
    origins: Any = "*" if cors_allowed_origins == "*" else cors_allowed_origins.split(",")
    if patches is None:
        patches = check(allow_unpatched=False, only=(SOCKETIO_MESSAGES, ENGINEIO_SESSIONS))
    server_class = socketio_server_class(patches)
    return server_class(
        async_mode="gevent",
        transports=["websocket"],
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_http_buffer_size=MAX_FRAME_BYTES,
        cors_allowed_origins=origins,
        client_manager=client_manager,
        json=wire_json,
        logger=False,
        engineio_logger=False,
        # Run each event's handler in its connection's reader greenlet instead of
        # a greenlet spawned per event: acks arrive once per batch per client,
        # and the spawns were a measurable share of the server's CPU
        # (docs/library-patches.md). Handlers block only their own
        # connection; the connect handler's one read of the log is fine there.
        async_handlers=False,
    )


def engineio_session(sio: socketio.Server, sid: str) -> Any:
    """The Engine.IO session under a Socket.IO sid, or None once it is gone."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    return sio.eio.sockets.get(eio_sid) if eio_sid else None


class SocketIOSender:
    """The hub's Sender port, over a python-socketio server.

    Engine.IO queues each connection's packets without a bound. To bound it in
    bytes, the sender remembers, for each emit, its size and how many packets
    the queue had been given once it was in. With the patched sessions
    (patches/engineio_sessions.py) the queue counts the packets its writer
    took, so an emit is sent exactly when that count reaches its mark,
    whatever else shares the queue (pings, the
    attachment of a binary event). With Engine.IO's own queue, the last
    ``qsize()`` marks are taken to be those still waiting. One emit more than
    ``max_queued_bytes`` allows raises SlowConsumer.
    """

    def __init__(self, sio: socketio.Server, *, max_queued_bytes: int = 1 << 20) -> None:
        self._sio = sio
        self.max_queued_bytes = max_queued_bytes  # may change at run time
        self._sizes: dict[str, deque[tuple[int, int]]] = {}  # (mark, bytes) per emit
        self._backlogged: set[str] = set()  # connections that may have bytes waiting
        self._recent: tuple[Any, str, list] | None = None  # (data, event, packets) last sent

    def send(self, sid: str, event: str, data: Any) -> None:
        """Queue the event on the connection's Engine.IO socket. The hub's
        sends are always to one local connection, so they skip the manager
        (with Redis, an emit would travel through the message queue), and the
        packets of a batch sent to many connections are built once."""
        socket = engineio_session(self._sio, sid)
        if socket is None or socket.closed:
            return  # gone: its disconnect handler cleans up
        packets = self._packets(event, data)
        size = len(data) if isinstance(data, str | bytes) else 0
        queue = socket.queue
        sizes = self._sizes.setdefault(sid, deque())
        queued = self._waiting(queue, sizes)
        # one emit larger than the bound goes when nothing waits (a big batch
        # to a fast client); what would pile up behind unread bytes does not
        if queued and queued + size > self.max_queued_bytes:
            raise SlowConsumer(
                f"{queued} bytes are still waiting to be sent to this client; the bound "
                f"is {self.max_queued_bytes}", field="connection")
        for pkt in packets:
            socket.send(pkt)
        sizes.append((getattr(queue, "put_count", 0), size))
        self._backlogged.add(sid)

    def _packets(self, event: str, data: Any) -> list[eio_packet.Packet]:
        """The Engine.IO packets of one event, as Manager.emit builds them;
        the same objects again for the same data object, sent just before."""
        recent = self._recent
        if recent is not None and recent[0] is data and recent[1] == event:
            return recent[2]
        pkt = self._sio.packet_class(sio_packet.EVENT, namespace="/", data=[event, data])
        encoded = pkt.encode()
        packets = [eio_packet.Packet(eio_packet.MESSAGE, p)
                   for p in (encoded if isinstance(encoded, list) else [encoded])]
        self._recent = (data, event, packets)
        return packets

    @staticmethod
    def _waiting(queue: Any, sizes: deque[tuple[int, int]]) -> int:
        """Forget the emits that left; return the bytes of those still queued."""
        taken = getattr(queue, "taken", None)
        if taken is not None:
            while sizes and sizes[0][0] <= taken:
                sizes.popleft()
        else:
            waiting = queue.qsize()
            while len(sizes) > waiting:
                sizes.popleft()
        return sum(size for _, size in sizes)

    def waiting(self, sid: str) -> int:
        queue, sizes = self._engineio_queue(sid), self._sizes.get(sid)
        return self._waiting(queue, sizes) if queue is not None and sizes else 0

    def queued_bytes(self) -> tuple[int, int]:
        """Bytes waiting over all connections, and how many connections have
        any. Visits only connections sent to since they last drained."""
        total = 0
        drained = []
        for sid in self._backlogged:
            queue, sizes = self._engineio_queue(sid), self._sizes.get(sid)
            waiting = self._waiting(queue, sizes) if queue is not None and sizes else 0
            if waiting:
                total += waiting
            else:
                drained.append(sid)
        self._backlogged.difference_update(drained)
        return total, len(self._backlogged)

    def disconnect(self, sid: str) -> None:
        """Close with Socket.IO's disconnect. If bytes still wait for a client
        that does not read them, the disconnect waits behind them: a client
        that has not read them ``STUCK_GRACE_S`` later is cut off, so its
        resources go then and not at the ping timeout (and socket.io-client,
        seeing a dropped transport rather than a server's disconnect,
        reconnects and catches up at its own pace)."""
        session = engineio_session(self._sio, sid) if self.waiting(sid) > 0 else None
        self._sio.disconnect(sid)
        if session is not None and hasattr(session, "abort_transport"):
            self._sio.start_background_task(self._cut_if_stuck, session)

    @staticmethod
    def _cut_if_stuck(session: Any) -> None:
        gevent.sleep(STUCK_GRACE_S)
        if not session.closed:
            session.abort_transport()

    def release(self, sid: str) -> None:
        self._sizes.pop(sid, None)
        self._backlogged.discard(sid)

    def _engineio_queue(self, sid: str) -> Any:
        return getattr(engineio_session(self._sio, sid), "queue", None)

