"""The soak benchmark's set-up and clean-up: the open-files limit, a scratch
PostgreSQL database, and what a run leaves in InfluxDB and Redis."""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import uuid
from collections.abc import Callable, Iterator

import gevent
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from service.adapters.influx import InfluxClient

NODES = ("a", "b")
REDIS_URL = "redis://127.0.0.1:6379/0"
FD_MARGIN = 200  # a process's own files beside its sockets


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_fd_limit(args: argparse.Namespace) -> dict:
    """Lift the soft open-files limit to the hard one (children inherit it),
    and check that a node's share fits (a client process holds at most that)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    per_node = -(-args.connections // len(NODES))
    if per_node + FD_MARGIN > now:
        raise SystemExit(f"open-files limit {now} (hard {hard}) is too low for {per_node} "
                         "connections a node")
    return {"soft_before": soft, "soft": now, "hard": hard}


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped on exit: each statement on a new
    connection, retried, as a long run may outlive the server's connections
    (a restart of PostgreSQL during a run was seen here)."""
    name = f"bench_soak_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        for attempt in range(5):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except SQLAlchemyError as exc:
                if attempt == 4:
                    log(f"soak: could not drop database {name}, drop it by hand: {exc}")
                gevent.sleep(2.0)
        admin.dispose()


def quietly(action: Callable[[], object]) -> None:
    """A cleanup step whose failure is told, not raised: the others still run
    and the result is still printed."""
    try:
        action()
    except Exception as exc:
        log(f"soak: cleanup step {getattr(action, '__qualname__', action)} failed: {exc!r}")


def drop_influx(client: InfluxClient) -> None:
    client.query(f'DROP DATABASE "{client.settings.database}"', method="POST", db=None)


def drop_redis_keys(channel: str) -> None:
    """Whatever the nodes left in Redis under this run's channel name."""
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"*{channel}*", count=1000))
        if keys:
            client.delete(*keys)
