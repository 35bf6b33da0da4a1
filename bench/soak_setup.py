"""The soak benchmark's set-up and clean-up: the open-files limit, and what
a run leaves in InfluxDB and Redis (its scratch PostgreSQL database is
bench.storage.ScratchDatabase)."""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
from collections.abc import Callable

import redis

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
