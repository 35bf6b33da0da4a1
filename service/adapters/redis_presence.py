"""Presence in Redis: each node reports its users and connection counts.

Keys, under the cluster's channel name ``C``:

* ``C:presence:nodes``: a set of the node ids that reported;
* ``C:presence:node:<id>``: a hash of ``connections``, ``users``, ``updated_at``;
* ``C:presence:users:<id>``: a set of the user ids connected to that node.

A node's keys expire after ``ttl_s``, so a node that died (``kill -9``) leaves
the totals within that time; readers drop it from the node set then.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

import redis

from service.domain.errors import PresenceUnavailable, new_error_id
from service.domain.presence import NodePresence, Presence

log = logging.getLogger(__name__)

SADD_CHUNK = 1_000


class RedisPresence:
    def __init__(self, url: str, *, channel: str, node_id: str, ttl_s: float) -> None:
        # connects on first command, with a short connect timeout: a dead
        # host must not hold the presence task, or an API request, for long
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=2.0,
                                           socket_timeout=5.0)
        self._prefix = f"{channel}:presence"
        self.node_id = node_id
        self.ttl_s = max(1, int(ttl_s))

    def _node_key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}"

    def _users_key(self, node: str) -> str:
        return f"{self._prefix}:users:{node}"

    def _node_names(self) -> list[str]:
        """The ids of the nodes that reported, sorted."""
        members = self._redis.smembers(f"{self._prefix}:nodes")
        return sorted(n.decode() if isinstance(n, bytes) else n for n in members)

    def report(self, connections: int, user_ids: Iterable[str]) -> None:
        """Replace this node's report (the user set is swapped in at once)."""
        users = list(user_ids)
        scratch = f"{self._prefix}:scratch:{uuid.uuid4().hex}"
        target = self._users_key(self.node_id)
        with _redis_errors():
            pipe = self._redis.pipeline(transaction=True)
            for start in range(0, len(users), SADD_CHUNK):
                pipe.sadd(scratch, *users[start:start + SADD_CHUNK])
            if users:
                pipe.rename(scratch, target)
                pipe.expire(target, self.ttl_s)
            else:
                pipe.delete(target)
            node_key = self._node_key(self.node_id)
            pipe.hset(node_key, mapping={"connections": connections, "users": len(users),
                                         "updated_at": f"{time.time():.3f}"})
            pipe.expire(node_key, self.ttl_s)
            pipe.sadd(f"{self._prefix}:nodes", self.node_id)
            pipe.execute()

    def read(self) -> Presence:
        with _redis_errors():
            nodes_key = f"{self._prefix}:nodes"
            names = self._node_names()
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._node_key(name))
            reports = pipe.execute()
            alive: list[NodePresence] = []
            gone = []
            for name, fields in zip(names, reports, strict=True):
                if not fields:
                    gone.append(name)  # its keys expired: it stopped reporting
                    continue
                alive.append(NodePresence(name, int(fields[b"connections"]),
                                          int(fields[b"users"]),
                                          float(fields[b"updated_at"])))
            if gone:
                self._redis.srem(nodes_key, *gone)
            users = self._distinct_users([n.node for n in alive])
        return Presence(tuple(alive), users, "redis")

    def _distinct_users(self, nodes: list[str]) -> int:
        if not nodes:
            return 0
        scratch = f"{self._prefix}:scratch:{uuid.uuid4().hex}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.sunionstore(scratch, [self._users_key(n) for n in nodes])
        pipe.delete(scratch)
        count, _ = pipe.execute()
        return int(count)

    def nodes_of(self, user_id: str) -> list[str]:
        """The nodes that last reported this user connected."""
        with _redis_errors():
            names = self._node_names()
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.sismember(self._users_key(name), user_id)
            return [n for n, member in zip(names, pipe.execute(), strict=True) if member]

    def withdraw(self) -> None:
        """A clean stop: this node's report goes at once."""
        with _redis_errors():
            self._redis.delete(self._node_key(self.node_id), self._users_key(self.node_id))
            self._redis.srem(f"{self._prefix}:nodes", self.node_id)


class _redis_errors:
    """Redis errors become PresenceUnavailable (a 503 on the API)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and isinstance(exc, redis.RedisError):
            error_id = new_error_id()
            log.warning("presence: Redis did not answer [%s]: %r", error_id, exc)
            raise PresenceUnavailable("Redis did not answer; retry",
                                      error_id=error_id) from exc
