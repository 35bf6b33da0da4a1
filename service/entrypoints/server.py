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
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import WebSocket

from service.adapters.patches.websocket_frames import bounded_websocket_class
from service.bootstrap import App, create_app
from service.config import Settings
from service.domain.errors import StorageUnavailable
from service.entrypoints.runtime import UNPATCHED_EXIT, library_patches, start_process, tune_gc

log = logging.getLogger("service.serve")

# Every connection keeps its handler, and so its read buffer, for as long as it
# is open, and the buffer only ever holds a request head or a small client
# frame (auth, acks, pongs): pywsgi's default (io.DEFAULT_BUFFER_SIZE) is RSS
# per idle WebSocket for nothing. Longer reads (publish bodies, big frames)
# bypass a buffered reader's buffer, so a small one costs no copies.
# (docs/benchmarks.md, "Figures behind constants", has the figures of this
# file's constants.)
READ_BUFFER_BYTES = 1024
SHUTDOWN_FLUSH_S = 1.0
# Connections the kernel holds for accept(). gevent's default overflowed in a
# connection storm, and each dropped SYN is retried seconds later. Linux caps
# it at somaxconn.
LISTEN_BACKLOG = 4096
# Connections accepted per turn of the loop (gevent's default: 100): in a
# storm a publisher's new connection waited behind the backlog for seconds.
# Accepting is cheap here: a Socket.IO connection then waits for its turn
# (admission.py) parked, and anything else goes at once.
MAX_ACCEPT = 2048
# Linux's TCP_NOTSENT_LOWAT (socket.TCP_NOTSENT_LOWAT from Python 3.12)
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


SOCKETIO_REQUEST = b"GET /socket.io/"


def _opens_socketio(sock: Any) -> bool:
    """Whether the connection's first bytes ask for Socket.IO (read without
    taking them: the handler reads them next)."""
    try:
        head = sock.recv(len(SOCKETIO_REQUEST), socket.MSG_PEEK)
    except OSError:
        return False
    return head == SOCKETIO_REQUEST


class NodeConnectionHandler(WebSocketHandler):
    """gevent-websocket's handler for one connection to the node: no Nagle
    delay, a bounded kernel send buffer (SOCKET_UNSENT_MAX_BYTES), a small
    read buffer, a turn before a Socket.IO handshake, the bounded frame reader
    of the library patches, and the socket known to shutdown."""

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        # pywsgi writes an answer's head and body in two sends. With Nagle on,
        # the body waits for the client's delayed ACK of the head, on every
        # request of a reused connection (a publisher's keep-alive), and so
        # does a small WebSocket frame sent behind an unacked one.
        with contextlib.suppress(OSError):  # not TCP (a test's socketpair)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The kernel takes whatever fits its send buffer, which autotunes up to
        # tcp_wmem's maximum (megabytes): a client that stops reading would have
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
        its request is even parsed: in a storm, parsing every request at once
        held the loop, and a publish with it, for over a second. Anything else
        (a publish, /healthz) goes at once."""
        turns = getattr(self.server, "handshakes", None)
        if turns is not None and _opens_socketio(self.socket):
            turns.acquire()
        super().handle()

    def run_websocket(self) -> None:
        # pywsgi is done with the parsed request head (an email.message) once
        # it has built the environ; a WebSocket would keep it for its whole
        # life. Without it, the class's empty default shows through.
        self.__dict__.pop("headers", None)
        if type(self.websocket) is WebSocket:
            # the frame reader of patches/websocket_frames.py, unless it is left
            # out (``server.patches``: set from the check at start-up)
            bounded = bounded_websocket_class(getattr(self.server, "patches", None))
            if bounded is not None:
                self.websocket.__class__ = bounded  # same slots: only methods differ
        # known to shutdown(), which must unblock a writer stuck on this socket
        open_websockets: set[socket.socket] = getattr(self.server, "open_websockets", set())
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


class NodeServer(pywsgi.WSGIServer):
    """gevent's WSGI server, given at construction what its connections'
    handlers (NodeConnectionHandler) read from it."""

    max_accept = MAX_ACCEPT

    def __init__(self, listener: socket.socket | tuple[str, int], app: App,
                 unsent_max_bytes: int) -> None:
        super().__init__(
            listener, app.wsgi, handler_class=NodeConnectionHandler, spawn=app.handler_pool,
            # a worker's socket listens already (bound by its supervisor)
            backlog=None if isinstance(listener, socket.socket) else LISTEN_BACKLOG,
            log=None, error_log=logging.getLogger("service.wsgi"))
        self.open_websockets: set[socket.socket] = set()  # for shutdown() to unblock
        self.clients = NoClientRegistry()
        self.handshakes = app.handshakes
        self.unsent_max_bytes = unsent_max_bytes
        self.patches = app.patches  # the WebSocket frame reader follows them


def serve(settings: Settings, *, listener: socket.socket | None = None,
          supervisor: int | None = None) -> int:
    """One node, or with ``listener`` one worker of a node: it serves on that
    socket (bound by its supervisor, the process with pid ``supervisor``,
    service.entrypoints.workers) rather than binding HOST:PORT itself."""
    refused = start_process(f"w{settings.worker_index}" if settings.worker_index else "")
    if refused is not None:
        return refused
    patches = library_patches(settings)
    if patches is None:
        return UNPATCHED_EXIT
    try:
        app = create_app(settings, patches)
    except StorageUnavailable as exc:
        print(f"refusing to start: {exc.message}", file=sys.stderr)
        return 4
    server = NodeServer(listener if listener is not None else (settings.host, settings.port),
                        app, settings.socket_unsent_max_bytes)
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
