"""Engine.IO WebSocket sessions that park no greenlet of their own while idle.

Replaces, in python-engineio 4.15.1: ``engineio.socket.Socket.send``,
``close``, ``schedule_ping`` and ``_websocket_handler``;
``engineio.Server._handle_connect`` (WebSocket branch only) and
``create_queue``. Plugged in through python-socketio 5.18.1's
``socketio.Server._engineio_server_class`` (socketio_messages.py); writes
frames with gevent-websocket 0.10.1's ``Header`` straight to the socket of
its handler (``WebSocket.handler.socket``).

Why: python-engineio gives every WebSocket connection, besides the WSGI
handler greenlet that reads frames, a writer greenlet blocked on the send
queue and a greenlet sleeping until the next ping; parked greenlets were a
third of what an idle connection cost (docs/library-patches.md, "Memory per
connection", has the figures). Here:

- the ping is a libev timer: when it fires, the PING is queued from the
  event loop, which only appends to the unbounded queue;
- a packet sent when nothing waits before it is written by the caller,
  as much as the socket takes without waiting: no greenlet switch per frame;
- the writer exists only while packets wait: ``send`` starts one when there
  is none, and it ends when the queue has stayed empty for WRITER_LINGER_S.
  One writer at a time, first in first out: the same packets in the same
  order as Engine.IO's writer;
- as nothing waits on the send queue any more, it is a plain deque
  (SendQueue) instead of gevent's JoinableQueue.

Everything else is Engine.IO's: the ping timeout checks, the reader loop and
close(). A packet from the client that Engine.IO cannot decode is the
client's fault: one log line and the connection closed (decoding is wrapped
apart from dispatch). The send-queue bound in socketio_server.SocketIOSender
reads the queue's size as before; it now also counts the packets the writer
has not taken yet while it is blocked on a slow client (Engine.IO's writer
took all waiting packets at once, out of the count).

Contract test: tests/unit/test_patch_engineio_sessions.py.
"""

from __future__ import annotations

import contextlib
import logging
import socket as stdlib_socket
import time
from collections import deque
from typing import Any

import engineio
import gevent
from engineio import exceptions, packet
from engineio.socket import Socket
from gevent.event import Event
from gevent.queue import Empty
from geventwebsocket.websocket import Header, WebSocket

log = logging.getLogger(__name__)

# How long a writer waits for more packets before it ends (see WebSocketSession._linger)
WRITER_LINGER_S = 0.25


class SendQueue:
    """The part of a JoinableQueue a WebSocketSession uses: put, get without
    waiting, qsize, task_done and join (close(wait=True) waits for the writer
    to drain). ``get`` never blocks: only the writer reads, and only what is
    there. (Engine.IO's long-polling would block on it; it is not offered.)"""

    __slots__ = ("_items", "_unfinished", "_all_done", "put_count", "taken")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._unfinished = 0
        # packets ever put and ever taken: SocketIOSender's exact byte count
        self.put_count = 0
        self.taken = 0
        self._all_done: Event | None = None  # made by the first join() that must wait

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._items.append(item)
        self._unfinished += 1
        self.put_count += 1
        if self._all_done is not None:
            self._all_done.clear()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not self._items:
            raise Empty
        self.taken += 1
        return self._items.popleft()

    def qsize(self) -> int:
        return len(self._items)

    def task_done(self) -> None:
        self._unfinished -= 1
        if self._unfinished <= 0 and self._all_done is not None:
            self._all_done.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._unfinished <= 0:
            return True
        if self._all_done is None:
            self._all_done = Event()
        return self._all_done.wait(timeout)


def _frame(pkt: Any) -> bytes:
    """The packet as one WebSocket frame, encoded once and kept on it."""
    frame = getattr(pkt, "ws_frame", None)
    if frame is None:
        data = pkt.encode()
        if isinstance(data, str):
            data, opcode = data.encode("utf-8"), WebSocket.OPCODE_TEXT
        else:
            opcode = WebSocket.OPCODE_BINARY
        frame = pkt.ws_frame = Header.encode_header(True, opcode, b"", len(data), 0) + data
    return frame


class _Rest:
    """The end of a frame the kernel did not take at once: for the writer."""

    __slots__ = ("ws_frame",)

    def __init__(self, frame: bytes) -> None:
        self.ws_frame = frame


class WebSocketSession(Socket):
    last_ping: float | None  # Engine.IO's: when the unanswered ping was sent
    connected: bool
    _ws: Any = None  # the WebSocket, from the handshake until the writer closes it
    _writer: Any = None  # the greenlet sending queued packets, only while there are some
    _more: Event | None = None  # set by send() while the writer lingers
    _ping_timer: Any = None

    def schedule_ping(self) -> None:
        # as Engine.IO: a new ping only once the previous one was answered
        if self.last_ping:
            self.last_ping = None
            self._ping_timer = gevent.get_hub().loop.timer(self.server.ping_interval)
            self._ping_timer.start(self._ping_due)

    def _ping_due(self) -> None:
        """In the event loop: what Engine.IO's sleeping greenlet did on waking.
        send() does not block here: the queue is unbounded, and starting a
        writer only schedules it."""
        self._ping_timer.close()
        self._ping_timer = None
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(packet.Packet(packet.PING))

    def send(self, pkt: packet.Packet) -> None:
        if self._written_now(pkt):
            return
        super().send(pkt)
        self._kick_writer()

    def _written_now(self, pkt: packet.Packet) -> bool:
        """Write the packet from the caller when nothing waits before it:
        no writer greenlet to wake for a frame the socket has room for (a
        broadcast's flush reaches a thousand connections in one pass). What
        the kernel does not take is queued for the writer, in order. False:
        queue it as usual."""
        queue = self.queue
        if (self._ws is None or queue.qsize() or self.closing or self.closed
                or (self._writer is not None and self._more is None)):  # a writer mid-frame
            return False
        ws = self._ws._sock
        if ws.closed:
            return False
        if not self.check_ping_timeout():  # as Engine.IO's send: the client is gone, closed now
            return True
        frame = _frame(pkt)
        try:
            sent = ws.handler.socket.send(frame, 0, 0.0)  # timeout 0: never waits
        except BlockingIOError:
            sent = 0
        except Exception:  # the writer meets it too, and closes the WebSocket
            return False
        if sent == len(frame):
            queue.put_count += 1  # put and taken at once, for SocketIOSender's count
            queue.taken += 1
            return True
        queue.put(_Rest(frame[sent:]) if sent else pkt)
        self._kick_writer()
        return True

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        # Engine.IO's close() queues the None that ends the writer without
        # send(): have it sent before waiting for the queue to drain
        super().close(wait=False, abort=abort, reason=reason)
        if self._ping_timer is not None:  # let go of the session now, not at the next ping
            self._ping_timer.close()
            self._ping_timer = None
        self._kick_writer()
        if wait and self._writer is not None:
            self.queue.join()

    def _kick_writer(self) -> None:
        """Have what is queued sent: wake the lingering writer, or start one."""
        if self._ws is None or not self.queue.qsize():
            return
        if self._writer is None:
            self._writer = self.server.start_background_task(self._write_queued)
        elif self._more is not None:
            self._more.set()

    def _write_queued(self) -> None:
        """Send what is queued, linger, then end. A None in the queue closes
        the WebSocket, as in Engine.IO's writer; so does a failed send."""
        empty = self.server.get_queue_empty_exception()
        try:
            while True:
                try:
                    pkt = self.queue.get(block=False)
                except empty:
                    if self._linger():
                        continue
                    return
                self.queue.task_done()
                if pkt is None:
                    self._close_ws()
                    return
                self._send_frame(pkt)
        except Exception:  # as Engine.IO's writer: any send error ends the connection
            self._close_ws()
        finally:
            self._writer = self._more = None

    def _send_frame(self, pkt: packet.Packet) -> None:
        """Send one packet as a WebSocket frame. The frame is kept on the
        packet: SocketIOSender hands one packet object to every connection
        that is sent the same batch, so it is encoded once for all of them.
        Written with send() rather than sendall(), which asks the kernel for
        the send-buffer size on every call."""
        frame = _frame(pkt)
        ws = self._ws._sock  # gevent-websocket's WebSocket under Engine.IO's wrapper
        if ws.closed:
            raise ConnectionError("the WebSocket is closed")
        sock, view = ws.handler.socket, memoryview(frame)
        while view:
            view = view[sock.send(view):]

    def _linger(self) -> bool:
        """Wait WRITER_LINGER_S for more before ending: under load the next
        batch comes sooner, and waking a greenlet costs less CPU than starting
        one (docs/library-patches.md). Whether more came."""
        self._more = Event()
        self._more.wait(WRITER_LINGER_S)
        self._more = None
        return self.queue.qsize() > 0

    def abort_transport(self) -> None:
        """Shut the TCP connection down at once: a writer blocked on a client
        that reads nothing fails now, the reader ends, and the session closes
        as for a dropped connection (a close queued behind unread bytes would
        wait for the ping timeout)."""
        ws = getattr(self._ws, "_sock", None)
        sock = getattr(getattr(ws, "handler", None), "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(stdlib_socket.SHUT_RDWR)

    def _close_ws(self) -> None:
        ws, self._ws = self._ws, None  # no writer starts after this one
        try:
            ws.close()
        finally:
            while self.queue.qsize():  # nothing will send these: let close(wait=True) return
                self.queue.get(block=False)
                self.queue.task_done()

    def _websocket_handler(self, ws: Any) -> list:
        """Engine.IO's WebSocket handler, without its writer greenlet."""
        if self.connected:  # an upgrade from long-polling: this server offers WebSocket only
            return []

        def websocket_wait() -> Any:
            data = ws.wait()
            if data and len(data) > self.server.max_http_buffer_size:
                raise ValueError("packet is too large")
            return data

        # as Engine.IO: try to make a read time out after a ping interval and
        # timeout (gevent-websocket's WebSocket has no settimeout: a no-op there)
        for attr in ("_sock", "socket"):
            if hasattr(ws, attr) and hasattr(getattr(ws, attr), "settimeout"):
                getattr(ws, attr).settimeout(self.server.ping_interval + self.server.ping_timeout)
        self.connected = True
        self.upgraded = True
        self._ws = ws
        self._kick_writer()  # the OPEN packet, queued during the handshake
        while True:
            try:
                p = websocket_wait()
            except Exception as exc:
                if not self.closed:
                    self.server.logger.info('%s: Unexpected error "%s", closing connection',
                                            self.sid, str(exc))
                break
            if p is None:  # closed by the client
                break
            try:
                received = packet.Packet(encoded_packet=p)
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                # the client's garbage, not our bug: one line, no traceback
                log.info("%s: malformed Engine.IO packet, closing connection: %s",
                         self.sid, exc)
                break
            try:
                self.receive(received)
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                break
            except Exception:
                self.server.logger.exception("Unknown receive error")
                break
        self.queue.put(None)  # the writer sends what is queued, then closes the WebSocket
        self._kick_writer()
        if self._writer is not None:
            self._writer.join()
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        return []


class WebSocketSessionServer(engineio.Server):
    start_service_task: bool  # Engine.IO's: its service task is yet to start

    def create_queue(self, *args: Any, **kwargs: Any) -> SendQueue:
        """Each session's send queue (the only queue the server makes)."""
        return SendQueue()

    def _handle_connect(self, environ: dict, start_response: Any, transport: str,
                        jsonp_index: int | None = None) -> Any:
        """Engine.IO's, WebSocket branch only, with a WebSocketSession."""
        if transport != "websocket":  # transports=["websocket"] refused it already
            return self._bad_request("WebSocket only")
        if self.start_service_task:
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        s = WebSocketSession(self, sid)
        self.sockets[sid] = s
        s.send(packet.Packet(packet.OPEN, {
            "sid": sid,
            "upgrades": self._upgrades(sid, transport),
            "pingTimeout": int(self.ping_timeout * 1000),
            "pingInterval": int(self.ping_interval + self.ping_interval_grace_period) * 1000,
            "maxPayload": self.max_http_buffer_size,
        }))
        ret = self._trigger_event("connect", sid, environ, run_async=False)
        if ret is not None and ret is not True:
            del self.sockets[sid]
            self.logger.warning("Application rejected connection")
            return self._unauthorized(ret or None)
        s.schedule_ping()
        ret = s.handle_get_request(environ, start_response)
        if s.closed and sid in self.sockets:
            del self.sockets[sid]
        return ret
