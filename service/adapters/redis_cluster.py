"""Several nodes through Redis, with python-socketio's RedisManager.

The manager carries Socket.IO's own messages between nodes. This subclass
adds ours on the same channel and connection: the entries a node committed,
the users whose acks it wrote, and trims of the offline queue. How they
share python-socketio's channel is an override of its internals, fenced in
service/adapters/patches/cluster_channel.py.

Redis is the fast path only. The log in the database is the truth: a lost
message (Redis down or restarting) delays delivery on the other nodes by
at most the log follower's interval, it loses nothing
(service_layer.cluster).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gevent
from gevent.event import Event

from service.adapters.patches import CLUSTER_CHANNEL, PatchesInForce, in_force
from service.adapters.patches.cluster_channel import PeerMessagesManager
from service.domain.model import Appended, Notification, Priority

log = logging.getLogger(__name__)

CLUSTER_NAMESPACE = "/_notify_cluster"  # never a client's: "/" is the only one served
COMMITTED, ACKED, TRIMMED = "committed", "acked", "trimmed"
MAX_PENDING = 20_000  # entries waiting to be announced; past it the oldest are left to the log
MAX_PER_MESSAGE = 500
QUIET_AFTER_FAILURE_S = 1.0
REDIS_OPTIONS = {"socket_connect_timeout": 2.0}  # a dead host must not hold a publish


@dataclass
class RelayStats:
    sent: int = 0  # entries announced to the other nodes
    unsent: int = 0  # entries not announced (Redis down, or too many waiting): the log has them
    received: int = 0  # entries other nodes announced
    failures: int = 0  # publishes to Redis that failed
    redis_up: bool = True  # the last publish went through


@dataclass
class ClusterHandlers:
    """What this node does with its peers' messages."""

    committed: Callable[[list[Appended]], None]
    acked: Callable[[list[str]], None]
    trimmed: Callable[[], None]


def encode_entry(appended: Appended) -> list:
    n = appended.notification
    return [n.offset, n.id, n.category, n.priority.value, n.payload_json,
            n.created_at.isoformat(), None if appended.user_ids is None
            else list(appended.user_ids), appended.recipients]


def decode_entry(row: list, origin: str) -> Appended:
    offset, id_, category, priority, payload_json, created, user_ids, recipients = row
    if not isinstance(offset, int) or not isinstance(payload_json, str):
        raise ValueError("an entry's offset is an integer and its payload a string")
    notification = Notification(str(id_), offset, str(category), Priority(priority),
                                payload_json, datetime.fromisoformat(created))
    users = None if user_ids is None else tuple(str(u) for u in user_ids)
    return Appended(notification, users, int(recipients), origin=origin)


class ClusterManager(PeerMessagesManager):
    """RedisManager, and this node's relay of its writes to the others.
    With the cluster_channel patch left out (``patches``), it is python-socketio's
    RedisManager only: nothing is relayed, the log follower delivers."""

    peer_namespace = CLUSTER_NAMESPACE

    def __init__(self, url: str, *, channel: str, node_id: str, write_only: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 patches: PatchesInForce | None = None,
                 handlers: ClusterHandlers | None = None) -> None:
        super().__init__(url, channel=channel, write_only=write_only,
                         redis_options=dict(REDIS_OPTIONS))
        self.relay_in_force = in_force(patches, CLUSTER_CHANNEL)
        self.node_id = node_id
        self.handlers = handlers  # what this node does with its peers' messages
        self.stats = RelayStats()
        self._pending: deque[list] = deque()
        self._wake = Event()
        self._clock = clock
        self._quiet_until = 0.0  # after a failed publish, none is tried for a moment

    # -- sending ----------------------------------------------------------------
    def announce(self, appended: Appended) -> None:
        """Queue a committed entry for the other nodes; never blocks, never
        does I/O (the publisher's answer does not wait for Redis)."""
        if not self.relay_in_force:  # the other nodes read it from the log
            self.stats.unsent += 1
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.stats.unsent += 1
        self._pending.append(encode_entry(appended))
        self._wake.set()

    def announce_acks(self, user_ids: Iterable[str]) -> None:
        if self.relay_in_force:
            self._send(ACKED, sorted(user_ids))

    def announce_trim(self) -> None:
        if self.relay_in_force:
            self._send(TRIMMED, None)

    def run_announcer(self) -> None:
        """For sio.start_background_task: publish what waits, in order, many
        entries to a message."""
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                count = min(MAX_PER_MESSAGE, len(self._pending))
                rows = [self._pending.popleft() for _ in range(count)]
                if self._send(COMMITTED, rows):
                    self.stats.sent += count
                    continue
                # the other nodes read these from the log; so do the rest for a moment
                self.stats.unsent += count + len(self._pending)
                self._pending.clear()
                gevent.sleep(max(0.0, self._quiet_until - self._clock()))

    def _send(self, kind: str, data: Any) -> bool:
        """Publish one message; False if Redis failed now or a moment ago
        (an outage costs a log line a second, not two per message)."""
        if self._clock() < self._quiet_until:
            return False
        sent = self.publish_peer_message(kind, data, node=self.node_id)
        if not sent:
            self.stats.failures += 1
            self._quiet_until = self._clock() + QUIET_AFTER_FAILURE_S
        self.stats.redis_up = sent
        return sent

    # -- receiving --------------------------------------------------------------
    def take_peer_message(self, message: dict[str, Any]) -> None:
        handlers = self.handlers
        if handlers is None:
            return
        kind = message.get("event")
        data: Any = message.get("data")  # a peer's JSON: a bad shape raises below
        try:
            if kind == COMMITTED:
                origin = str(message.get("node") or "peer")
                entries = [decode_entry(row, origin) for row in data]
                self.stats.received += len(entries)
                handlers.committed(entries)
            elif kind == ACKED:
                handlers.acked([str(u) for u in data])
            elif kind == TRIMMED:
                handlers.trimmed()
        except (TypeError, ValueError, KeyError) as exc:
            # a peer on another version, or a stranger on the channel: the log has the truth
            log.warning("ignored a %r message on the cluster channel: %s", kind, exc)
