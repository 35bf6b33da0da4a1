"""``serve --workers N``: one node on N processes sharing its port.

The workers of a node are the nodes of a cluster that happen to share a port:
each is a whole ``serve`` process with its own node id (``<NODE_ID>-w<k>``,
so its telemetry, spool and presence are its own), and they meet through
Redis and the shared log exactly as nodes on different ports do
(``service/adapters/redis_cluster.py``). Nothing here carries notifications
between them; there is no broker of our own.

The supervisor (this module, in the process ``python -m service serve``
started) binds N listening sockets to HOST:PORT with SO_REUSEPORT, so the
kernel spreads new connections over them, and hands one to each worker it
starts (``serve --worker K/N --listen-fd FD``, not for people). Binding them
all before any worker starts means a client that connects while a worker is
still starting waits in that worker's accept queue rather than being refused,
and a taken port is refused once, here (exit 5).

Stopping: SIGTERM or SIGINT to the supervisor goes to every worker, which
stops as ``serve`` does; the supervisor waits for them (``STOP_TIMEOUT_S``,
then SIGKILL) and exits 0 if they all did. A worker that exits on its own
stops the others, and the supervisor exits with that worker's status (1 if
it had none): as ``make run`` does, restarting is left to what runs the node
(systemd, Docker), which sees one failed service rather than a node quietly
short of a worker. A worker whose supervisor disappears (``kill -9``) stops
itself within a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import gevent
from gevent.event import Event
from gevent.server import StreamServer

from service.config import MAX_WORKERS, Settings

log = logging.getLogger("service.workers")

STOP_TIMEOUT_S = 30.0  # a worker's own stop takes about 1 s, at most about 7 s
SUPERVISOR_POLL_S = 1.0


class WorkersRefused(Exception):
    """The number of workers asked for cannot work with these settings."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=_worker_count, default=None, metavar="N",
        help="processes sharing the port (default: WORKERS if set, else the number of "
             "cores with REDIS_URL and PostgreSQL, else 1)")
    # set by the supervisor for each worker it starts
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)


def _worker_count(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a number of processes, 1-{MAX_WORKERS}")
    return int(raw)


def cpu_count() -> int:
    """The cores this process may run on (its affinity, as taskset or a
    cpuset sets it), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(settings: Settings) -> int:
    """Every core with Redis and PostgreSQL, else 1: the embedded default
    (``make run``) stays one process. Workers do run on one SQLite file (its
    file lock serialises their writes), but a worker waiting for that lock
    waits inside sqlite3, where gevent cannot switch: asked for, not default."""
    if settings.redis_url and settings.storage_kind == "postgresql":
        return cpu_count()
    return 1


def resolve_workers(requested: int | None, settings: Settings) -> int:
    """How many workers to start: ``--workers``, else WORKERS, else the default."""
    count = requested or settings.workers or default_workers(settings)
    if count == 1:
        return 1
    asked = f"--workers {count}" if requested else f"WORKERS={count}"
    if not settings.redis_url:
        # python-socketio's other managers (Kombu, ZeroMQ, Kafka, AioPika)
        # each need a broker set up too: none fits with no set-up.
        raise WorkersRefused(
            f"{asked} needs REDIS_URL: a node's workers meet through Redis, as nodes do. "
            "Set REDIS_URL, or run --workers 1")
    return count


def parse_worker(spec: str) -> tuple[int, int]:
    """``K/N`` -> (K, N), 1 <= K <= N."""
    index, _, count = spec.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise ValueError(f"--worker takes K/N, 1 <= K <= N, not {spec!r}")
    return int(index), int(count)


def as_worker(settings: Settings, index: int, count: int) -> Settings:
    """Worker ``index`` of ``count``: a node id of its own (the ``node`` tag of
    its telemetry, its spool directory, its presence in Redis), and the
    node's connection limit divided (``Settings.per_worker``)."""
    return dataclasses.replace(settings, node_id=f"{settings.node_id}-w{index}",
                               workers=count, worker_index=index)


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    """``python -m service serve [--workers N]``."""
    from service.entrypoints.runtime import migrate_database
    from service.entrypoints.server import serve

    if args.worker is not None:  # started by a supervisor below
        try:
            index, count = parse_worker(args.worker)
        except ValueError as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 2
        if args.listen_fd is None:
            print("refusing to start: --worker needs --listen-fd", file=sys.stderr)
            return 2
        listener = socket.socket(fileno=args.listen_fd)
        return serve(as_worker(settings, index, count), listener=listener,
                     supervisor=args.supervisor)
    try:
        count = resolve_workers(args.workers, settings)
    except WorkersRefused as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    refused = migrate_database(settings, starting=True)  # the schema first, explicitly
    if refused:
        return refused
    return serve(settings) if count == 1 else supervise(settings, count)


def reuseport_listeners(host: str, port: int, count: int,
                        backlog: int = StreamServer.backlog) -> list[socket.socket]:
    """``count`` listening sockets on one address, with SO_REUSEPORT."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    # Bound once without SO_REUSEPORT first: a port someone holds (another
    # `serve --workers` on it too) is refused, not silently shared with them.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    listeners: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(backlog)
            address = sock.getsockname()  # PORT=0: the others on the port the first got
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def supervise(settings: Settings, count: int) -> int:
    """Start ``count`` workers on the port; return when they have all exited."""
    from service.entrypoints.runtime import start_process
    from service.entrypoints.server import LISTEN_BACKLOG

    refused = start_process()
    if refused is not None:
        return refused
    try:
        listeners = reuseport_listeners(settings.host, settings.port, count, LISTEN_BACKLOG)
    except OSError as exc:
        print(f"refusing to start: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 5
    port = listeners[0].getsockname()[1]
    children: list[subprocess.Popen] = []
    try:
        for index, listener in enumerate(listeners, 1):
            fd = listener.fileno()
            children.append(subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--worker", f"{index}/{count}",
                 "--listen-fd", str(fd), "--supervisor", str(os.getpid())],
                pass_fds=(fd,)))
    except OSError as exc:
        print(f"refusing to start: cannot start a worker: {exc}", file=sys.stderr)
        _signal(children, signal.SIGTERM)
        return 1
    finally:
        # The workers hold their own copies: a worker's socket must close
        # with it, or the kernel would keep routing connections to a socket
        # nobody accepts from.
        for listener in listeners:
            listener.close()
    print(f"notify node {settings.node_id}: {count} workers on http://{settings.host}:{port} "
          f"(pids {', '.join(str(c.pid) for c in children)})", flush=True)
    return wait_for_workers(children)


def wait_for_workers(children: list[subprocess.Popen], timeout: float = STOP_TIMEOUT_S) -> int:
    """Until every worker has exited: on SIGTERM or SIGINT, stop them all;
    when one exits on its own, stop the others. The exit status: 0 when asked
    to stop and every worker stopped cleanly, else the first failure's."""
    woke, asked = Event(), Event()

    def stop() -> None:
        if not asked.is_set():
            log.info("stopping %d workers", len(children))
        asked.set()
        woke.set()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    handlers = [gevent.signal_handler(sig, stop) for sig in previous]
    waiters = [gevent.spawn(child.wait) for child in children]
    for waiter in waiters:
        waiter.link(lambda _: woke.set())
    woke.wait()
    failed = None if asked.is_set() else next(c for c in children if c.poll() is not None)
    if failed is not None:
        log.error("worker %s (pid %d) exited with status %s: stopping the others",
                  children.index(failed) + 1, failed.pid, failed.returncode)
    _signal(children, signal.SIGTERM)
    gevent.joinall(waiters, timeout=timeout)
    for child in children:
        if child.poll() is None:
            log.error("worker pid %d did not stop within %.0f s: killing it", child.pid, timeout)
            child.kill()
            child.wait()
    for handler in handlers:
        handler.cancel()
    for sig, before in previous.items():  # libev leaves SIG_DFL behind, not Python's
        if before is not None:
            signal.signal(sig, before)
    if failed is not None:  # a worker that stops unasked has failed, whatever its status
        return failed.returncode if failed.returncode > 0 else 1
    # asked to stop: a worker still starting may die of the SIGTERM itself
    bad = next((c.returncode for c in children if c.returncode not in (0, -signal.SIGTERM)),
               None)
    return 0 if bad is None else (bad if bad > 0 else 1)


def _signal(children: list[subprocess.Popen], sig: int) -> None:
    for child in children:
        if child.poll() is None:
            try:
                child.send_signal(sig)
            except ProcessLookupError:  # exited since poll()
                pass


def watch_supervisor(pid: int, stop: Callable[[], None],
                     interval: float = SUPERVISOR_POLL_S) -> None:
    """In a worker: stop once the supervisor is gone (killed with SIGKILL,
    say), rather than serve on as an orphan nobody will stop."""
    while os.getppid() == pid:
        gevent.sleep(interval)
    log.warning("the supervisor (pid %d) is gone: stopping", pid)
    stop()
