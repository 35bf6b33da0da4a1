"""A user-space TCP proxy that injects network faults between two chaos peers.

This kernel has no ``netem`` qdisc (and no ``tc`` drop action), so latency,
bandwidth limits and partitions of one link (a node's link to PostgreSQL or
Redis) are made here, in the byte stream. Everything uses gevent's own socket,
server and event types, so the proxy is cooperative whether or not the process
is monkey-patched (``python -m bench`` is; pytest is not).

Each direction of each connection has a reader greenlet, which puts
``(read_at, bytes)`` on a bounded queue, and a writer greenlet, which applies
the current mode when it takes the bytes off. Keeping the timing in the writer
is what lets ``delay`` add latency without cutting throughput to one chunk per
delay, and the queue bound (``QUEUE_LIMIT``) is backpressure: a full queue
stops the reader, so the sender's own TCP window closes instead of this
process's memory growing.
"""

from __future__ import annotations

import collections
import logging
import struct
import time

import gevent
import gevent.event
import gevent.server
import gevent.socket
from gevent import socket as gsocket

log = logging.getLogger(__name__)

MODES = ("pass", "blackhole", "reset", "delay", "throttle")
QUEUE_LIMIT = 4 * 1024 * 1024  # bytes queued per direction before its reader stops
READ_SIZE = 64 * 1024
CONNECT_TIMEOUT_S = 5.0
_EOF = b""  # queued after the last chunk: the sender closed (send a FIN on)
_RST = None  # queued instead: the sender reset its connection (reset the other side)


def _abort(sock: gsocket.socket) -> None:
    """Close with an RST, not a FIN: SO_LINGER (on, 0 s) makes close() abortive."""
    try:
        sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Direction:
    """One way of one connection: src -> queue -> dst."""

    def __init__(self, conn: _Connection, src: gsocket.socket, dst: gsocket.socket) -> None:
        self.conn, self.src, self.dst = conn, src, dst
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.queued = 0
        self.readable = gevent.event.Event()  # queue not empty
        self.writable = gevent.event.Event()  # queue below QUEUE_LIMIT
        self.writable.set()
        self.tokens = 0.0
        self.refilled = time.monotonic()

    def _put(self, chunk: bytes | None) -> None:
        self.queue.append((time.monotonic(), chunk))
        self.queued += len(chunk or b"")
        self.readable.set()

    def read_loop(self) -> None:
        proxy = self.conn.proxy
        while True:
            while self.queued >= QUEUE_LIMIT:
                self.writable.clear()
                self.writable.wait()
            while proxy.mode == "blackhole":  # leave the bytes in the kernel: see FaultProxy
                proxy.wait_change()
            try:
                data = self.src.recv(READ_SIZE)
            except OSError:
                self._put(_RST)
                return
            self._put(data)
            if not data:
                return

    def write_loop(self) -> None:
        proxy = self.conn.proxy
        while True:
            if not self.queue:
                self.readable.clear()
                self.readable.wait()
                continue
            mode = proxy.mode
            if mode in ("blackhole", "reset"):
                proxy.wait_change()
                continue
            read_at, chunk = self.queue[0]
            if mode == "delay":
                due = read_at + proxy.delay_ms / 1000.0 - time.monotonic()
                if due > 0:
                    proxy.wait_change(due)
                    continue
            if chunk is _RST:
                self.conn.abort()
                return
            if chunk == _EOF:
                self.conn.finish(self)
                return
            if mode == "throttle":
                piece = self._take_tokens(chunk, proxy.bytes_per_s)
                if not piece:
                    continue
            else:
                piece = chunk
            try:
                self.dst.sendall(piece)
            except OSError:
                self.conn.abort()
                return
            proxy.bytes_forwarded += len(piece)
            if len(piece) == len(chunk):
                self.queue.popleft()
            else:
                self.queue[0] = (read_at, chunk[len(piece):])
            self.queued -= len(piece)
            if self.queued < QUEUE_LIMIT:
                self.writable.set()

    def _take_tokens(self, chunk: bytes, rate: int) -> bytes:
        """A token bucket: 20 ms pieces keep the rate smooth; it holds two, so a late
        wake-up is not lost rate.
        Returns b"" after waiting for tokens, so the mode is looked at again."""
        size = max(1, min(READ_SIZE, rate // 50))
        now = time.monotonic()
        self.tokens = min(2.0 * size, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        piece = chunk[:size]
        if self.tokens < len(piece):
            self.conn.proxy.wait_change((len(piece) - self.tokens) / rate)
            return b""
        self.tokens -= len(piece)
        return piece


class _Connection:
    def __init__(self, proxy: FaultProxy, client: gsocket.socket,
                 upstream: gsocket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.ways = [_Direction(self, client, upstream), _Direction(self, upstream, client)]
        self.done: set[int] = set()
        self.closed = False
        self.greenlets: list[gevent.Greenlet] = []

    def run(self) -> None:
        self.greenlets = [gevent.spawn(f) for way in self.ways
                          for f in (way.read_loop, way.write_loop)]
        gevent.joinall(self.greenlets)
        self.close()

    def finish(self, way: _Direction) -> None:
        """A clean EOF: pass the FIN on; once both ways have, close both sockets."""
        try:
            way.dst.shutdown(gsocket.SHUT_WR)
        except OSError:
            pass
        self.done.add(id(way))
        if len(self.done) == 2:
            self.close()

    def close(self, *, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        current = gevent.getcurrent()
        for greenlet in self.greenlets:
            if greenlet is not current:
                greenlet.kill(block=False)
        for sock in (self.client, self.upstream):
            _abort(sock) if reset else sock.close()
        self.proxy.connections.discard(self)

    def abort(self) -> None:
        if not self.closed:
            self.proxy.resets += 1
        self.close(reset=True)


class FaultProxy:
    """Forwards TCP from ``listen`` to ``target``, with a fault mode set at run time.

    Modes apply at once to existing and new connections, both directions:

    - ``pass``: forward (this is also "heal").
    - ``blackhole``: a partition of this link. Connections are still accepted,
      nothing is forwarded either way and no FIN or RST is sent; new connections
      only connect upstream once healed. Bytes are held, not dropped: the proxy
      stops reading, so they wait in the kernel's buffers (senders' writes block
      once those fill), and on heal they flow on intact. That is what a real
      partition does to TCP, which retransmits; dropping them would hand the
      applications a stream with a hole in it, a corruption no network causes,
      and could make a Redis or PostgreSQL client parse one reply as another.
      Applications see silence and must time out; TCP keepalives do not fire,
      because the proxy's kernel still answers them.
    - ``reset``: every connection is closed with an RST on both sides, and every
      new one is reset as soon as it is accepted, until the mode changes.
    - ``delay``: each chunk leaves ``delay_ms`` after it was read (one way: a
      round trip gains twice that), order kept.
    - ``throttle``: each direction of each connection forwards at most
      ``bytes_per_s``.

    An error on one connection closes that connection only (with an RST to its
    other side when the error was a reset or a failed write); the proxy goes on.
    """

    def __init__(self, name: str, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.name, self.listen, self.target = name, listen, target
        self.address: tuple[str, int] = listen
        self.mode = "pass"
        self.delay_ms = 0.0
        self.bytes_per_s = 0
        self.bytes_forwarded = 0
        self.connections_total = 0
        self.resets = 0
        self.upstream_failures = 0  # the target refused or timed out: the client was reset
        self.connections: set[_Connection] = set()
        self._changed = gevent.event.Event()
        self._server: gevent.server.StreamServer | None = None
        self._stopped = False

    def __repr__(self) -> str:
        return f"FaultProxy({self.name!r}, {self.address} -> {self.target}, {self.mode})"

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    @property
    def queued_bytes(self) -> int:
        """Bytes read but not yet forwarded, over all connections (bounded by
        2 x QUEUE_LIMIT per connection)."""
        return sum(way.queued for conn in self.connections for way in conn.ways)

    def counters(self) -> dict[str, object]:
        """For the run's report."""
        return {"name": self.name, "mode": self.mode, "bytes_forwarded": self.bytes_forwarded,
                "connections_total": self.connections_total, "resets": self.resets,
                "upstream_failures": self.upstream_failures,
                "open_connections": self.open_connections}

    def start(self) -> None:
        self._stopped = False
        listener = gevent.server.StreamServer.get_listener(self.listen, backlog=1024,
                                                           family=gsocket.AF_INET)
        self._server = gevent.server.StreamServer(listener, self._handle)
        self._server.start()
        self.address = listener.getsockname()[:2]

    def stop(self) -> None:
        """Closes the listener and every connection (FIN, as a dying process would)."""
        self._stopped = True
        self._wake()  # handlers held by blackhole see _stopped
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            self._server.stop(timeout=1)  # handlers still connecting upstream
            self._server = None

    def set(self, mode: str, *, delay_ms: float = 0.0, bytes_per_s: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: valid modes are {', '.join(MODES)}")
        if mode == "delay" and delay_ms < 0:
            raise ValueError("delay needs delay_ms >= 0")
        if mode == "throttle" and bytes_per_s <= 0:
            raise ValueError("throttle needs bytes_per_s > 0")
        self.mode, self.delay_ms, self.bytes_per_s = mode, float(delay_ms), int(bytes_per_s)
        if mode == "reset":
            for conn in list(self.connections):
                conn.abort()
        self._wake()

    def _wake(self) -> None:
        """Wake every greenlet waiting on the old mode."""
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def wait_change(self, timeout: float | None = None) -> None:
        """Sleep until set() is called or ``timeout`` passes."""
        self._changed.wait(timeout)

    def _handle(self, client: gsocket.socket, _address: tuple[str, int]) -> None:
        self.connections_total += 1
        conn = None
        try:
            while self.mode == "blackhole" and not self._stopped:  # the SYN is "lost"
                self.wait_change()
            if self._stopped:
                client.close()
                return
            if self.mode == "reset":
                self.resets += 1
                _abort(client)
                return
            try:
                upstream = gevent.socket.create_connection(self.target, CONNECT_TIMEOUT_S)
            except OSError as exc:
                log.debug("%s: upstream %s: %s", self.name, self.target, exc)
                self.upstream_failures += 1
                _abort(client)  # as if the target refused: the client sees a reset
                return
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            conn = _Connection(self, client, upstream)
            self.connections.add(conn)
            if self._stopped:
                conn.close()
                return
            if self.mode == "reset":  # set() ran while we connected
                conn.abort()
                return
            conn.run()
        except Exception:  # one connection's bug must not end the proxy
            log.exception("%s: connection failed", self.name)
            conn.abort() if conn is not None else _abort(client)
