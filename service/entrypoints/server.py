"""``python -m service serve``: one node on gevent's WSGI server."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
from typing import Any

import gevent
from gevent import pywsgi
from geventwebsocket.exceptions import FrameTooLargeException, ProtocolError, WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, WebSocket

from service.adapters.socketio_server import MAX_FRAME_BYTES
from service.bootstrap import create_app
from service.config import Settings
from service.domain.errors import StorageUnavailable
from service.entrypoints.runtime import start_process, tune_gc

log = logging.getLogger("service.serve")

# Every connection keeps its handler, and so its read buffer, for as long as it
# is open. pywsgi's default is io.DEFAULT_BUFFER_SIZE (8 KiB): over 8 KB of RSS
# per idle WebSocket for a buffer that only ever holds a request head or a
# small client frame (auth, acks, pongs). Longer reads (publish bodies, big
# frames) bypass a buffered reader's buffer, so a small one costs no copies.
READ_BUFFER_BYTES = 1024
SHUTDOWN_FLUSH_S = 1.0
# Connections the kernel holds for accept(). gevent's default, 128, overflowed
# in a storm of 300 clients: each dropped SYN is retried after 1 s, then 3 s
# and 7 s, which is what the clients measured. Linux caps it at somaxconn
# (4096 here; Node listens with 511).
LISTEN_BACKLOG = 4096
# Connections accepted per turn of the loop (gevent's default: 100). A storm
# filled the backlog, and a publisher's new connection waited behind it, 100
# a turn: 2-3 s. Accepting is cheap here: a Socket.IO connection then waits
# for its turn (admission.py) parked, and anything else goes at once.
MAX_ACCEPT = 2048
# Linux's TCP_NOTSENT_LOWAT (socket.TCP_NOTSENT_LOWAT from Python 3.12)
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


class _WebSocket(WebSocket):
    """gevent-websocket's WebSocket without its pure-Python UTF-8 validator:
    a text message is decoded as UTF-8 right after, which refuses the same
    input (and closes with 1007, as the validator would). The validator ran
    twice per client frame: 7 % of the server's CPU reading acks."""

    __slots__ = ()

    def validate_utf8(self, message: bytes) -> None:
        return None

    # gevent-websocket reads a frame whole, whatever length its header gives,
    # joins continuation frames without a bound, and unmasks byte by byte in
    # Python: one 100 MB frame from a client that had not even authenticated
    # held 125 MB and froze every other connection and publish for over 10 s,
    # before Engine.IO refused it as too large. Here a message longer than a
    # client may send is refused from its header, before it is read, and the
    # unmasking is one integer XOR.

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame. The header is parsed
        here rather than into a Header object, and the mask is read with the
        payload: a client's ack is one small frame, and reading it was a
        fifth of a busy node's CPU."""
        read = self.stream.read
        head = read(2)
        if len(head) != 2:
            raise WebSocketError("Unexpected EOF while decoding header")
        first, second = head[0], head[1]
        if first & Header.HEADER_FLAG_MASK:
            raise ProtocolError("reserved bits set")
        fin, opcode, length = bool(first & Header.FIN_MASK), first & Header.OPCODE_MASK, \
            second & Header.LENGTH_MASK
        if opcode > 0x07:  # a control frame
            if not fin:
                raise ProtocolError(f"Received fragmented control frame: {head!r}")
            if length > 125:
                raise FrameTooLargeException(
                    f"Control frame cannot be larger than 125 bytes: {head!r}")
        if length >= 126:
            size = 2 if length == 126 else 8
            extended = read(size)
            if len(extended) != size:
                raise WebSocketError("Unexpected EOF while decoding header")
            length = int.from_bytes(extended, "big")
        if length > MAX_FRAME_BYTES:
            self._refuse_too_large(length)
        masked = second & Header.MASK_MASK
        want = length + 4 if masked else length
        if not want:
            return fin, opcode, b""
        try:
            data = self.raw_read(want)
        except Exception:  # as gevent-websocket: a failed read is a short one
            data = b""
        if len(data) != want:
            raise WebSocketError("Unexpected EOF reading frame payload")
        return fin, opcode, _unmask(data[4:], data[:4]) if masked else data

    def read_message(self) -> bytes | bytearray | str | None:
        """gevent-websocket's, with the message's length bounded."""
        opcode = None
        message = bytearray()
        while True:
            fin, f_opcode, payload = self.read_frame()
            if f_opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
                if opcode:
                    raise ProtocolError(f"expected a continuation frame, got {f_opcode!r}")
                opcode = f_opcode
            elif f_opcode == self.OPCODE_CONTINUATION:
                if not opcode:
                    raise ProtocolError("Unexpected frame with opcode=0")
            elif f_opcode == self.OPCODE_PING:
                self.handle_ping(None, payload)
                continue
            elif f_opcode == self.OPCODE_PONG:
                continue
            elif f_opcode == self.OPCODE_CLOSE:
                self.handle_close(Header(fin, f_opcode, 0, len(payload)), payload)
                return None
            else:
                raise ProtocolError(f"Unexpected opcode={f_opcode!r}")
            if len(message) + len(payload) > MAX_FRAME_BYTES:
                self._refuse_too_large(len(message) + len(payload))
            if fin and not message:  # one frame: no copy into the bytearray
                message = payload
                break
            message += payload
            if fin:
                break
        if opcode == self.OPCODE_TEXT:
            return self._decode_bytes(message)
        return message

    def _refuse_too_large(self, length: int) -> None:
        log.info("closing a WebSocket whose client sent a message of %d bytes or more "
                 "(at most %d)", length, MAX_FRAME_BYTES)
        raise FrameTooLargeException(f"a message of {length} bytes; at most {MAX_FRAME_BYTES}")


SOCKETIO_REQUEST = b"GET /socket.io/"


def _opens_socketio(sock: Any) -> bool:
    """Whether the connection's first bytes ask for Socket.IO (read without
    taking them: the handler reads them next)."""
    try:
        head = sock.recv(len(SOCKETIO_REQUEST), socket.MSG_PEEK)
    except OSError:
        return False
    return head == SOCKETIO_REQUEST


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """A client's frame payload XOR its 4-byte mask, repeated."""
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


class LeanWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler, keeping less per open WebSocket."""

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        # pywsgi writes an answer's head and body in two sends. With Nagle on,
        # the body waits for the client's delayed ACK of the head: about 40 ms
        # per request on a reused connection (a publisher's keep-alive), and
        # the same for a small WebSocket frame sent behind an unacked one.
        with contextlib.suppress(OSError):  # not TCP (a test's socketpair)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The kernel takes whatever fits its send buffer, which autotunes up to
        # tcp_wmem's maximum (4 MiB): a client that stops reading would have
        # megabytes waiting in the kernel before one byte waited in the node's
        # send queue, so SEND_QUEUE_MAX_BYTES would never see a slow consumer,
        # and the kernel's memory per such client would not be bounded by it.
        # Unsent bytes past SOCKET_UNSENT_MAX_BYTES stay in the node's queue.
        # Off by default: bursts to clients that read, but not at once, then
        # count against SEND_QUEUE_MAX_BYTES too (docs/configuration.md).
        unsent = getattr(server, "unsent_max_bytes", 0)
        if unsent:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, unsent)
        super().__init__(sock, address, server,
                         rfile if rfile is not None else sock.makefile("rb", READ_BUFFER_BYTES))

    def handle(self) -> None:
        """A Socket.IO connection waits for its turn (``AdaptiveRate``) before
        its request is even parsed: in a storm, parsing 10,000 requests at once
        held the loop for 1.5 s, and a publish with it. Anything else (a
        publish, /healthz) goes at once."""
        turns = getattr(self.server, "handshakes", None)
        if turns is not None and _opens_socketio(self.socket):
            turns.acquire()
        super().handle()

    def run_websocket(self) -> None:
        # pywsgi is done with the parsed request head (an email.message, about
        # 1.3 KB) once it has built the environ; a WebSocket would keep it for
        # its whole life. Without it, the class's empty default shows through.
        self.__dict__.pop("headers", None)
        if type(self.websocket) is WebSocket:
            self.websocket.__class__ = _WebSocket  # same slots: only the method differs
        # known to shutdown(), which must unblock a writer stuck on this socket
        open_websockets = getattr(self.server, "open_websockets", set())
        open_websockets.add(self.socket)
        try:
            super().run_websocket()
        finally:
            open_websockets.discard(self.socket)


class NoClientRegistry(dict):
    """geventwebsocket files every open WebSocket in ``server.clients`` under
    its peer's address, and nothing here reads it. A handler still running
    when its client's port came back in a new connection (a client that gave
    up waiting for its turn, and dialled again) lost its entry to the new
    one; the first to end deleted it, and the other's ``del`` raised
    KeyError before it closed its WebSocket: a traceback, and a session kept
    alive. Nothing is filed, so nothing can collide."""

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def __delitem__(self, key: object) -> None:
        pass


def serve(settings: Settings, *, listener: socket.socket | None = None,
          supervisor: int | None = None) -> int:
    """One node, or with ``listener`` one worker of a node: it serves on that
    socket (bound by its supervisor, the process with pid ``supervisor``,
    service.entrypoints.workers) rather than binding HOST:PORT itself."""
    refused = start_process(f"w{settings.worker_index}" if settings.worker_index else "")
    if refused is not None:
        return refused
    try:
        app = create_app(settings)
    except StorageUnavailable as exc:
        print(f"refusing to start: {exc.message}", file=sys.stderr)
        return 4
    server = pywsgi.WSGIServer(
        listener if listener is not None else (settings.host, settings.port),
        app.wsgi,
        handler_class=LeanWebSocketHandler,
        spawn=app.handlers,
        backlog=None if listener is not None else LISTEN_BACKLOG,  # a worker's listens already
        log=None,
        error_log=logging.getLogger("service.wsgi"),
    )
    server.open_websockets = set()
    server.clients = NoClientRegistry()
    server.handshakes = app.handshakes
    server.max_accept = MAX_ACCEPT
    server.unsent_max_bytes = settings.socket_unsent_max_bytes
    app.start_background()

    stopping = False

    def shutdown() -> None:
        nonlocal stopping
        if stopping:  # Ctrl-C reaches a worker twice: from the terminal, and its supervisor
            return
        stopping = True
        log.info("stopping: closing connections")
        server.close()  # no new connections
        for session in list(app.sio.eio.sockets.values()):
            session.close(wait=False, reason=app.sio.eio.reason.SERVER_DISCONNECT)
        gevent.sleep(SHUTDOWN_FLUSH_S)  # let clients that read get what is queued
        # A writer blocked on a client that reads nothing would still hold its
        # socket when the server closes it, and libev aborts the process on
        # the closed descriptor. Shutting the sockets down first makes those
        # sends fail, so every greenlet ends on its own.
        for sock in list(server.open_websockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
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
    if supervisor is not None:
        from service.entrypoints.workers import watch_supervisor

        gevent.spawn(watch_supervisor, supervisor, shutdown)
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
