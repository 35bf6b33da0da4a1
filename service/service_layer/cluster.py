"""Several nodes on one log: following it, relaying writes, reporting presence.

A node learns of entries committed elsewhere in two ways. Redis brings them
within milliseconds (adapters.redis_cluster). The log follower reads the log's head
every ``LOG_FOLLOW_INTERVAL`` and has the hub read from the log whatever did
not come, so a lost message (Redis down, restarting, or a peer killed between
its commit and its announcement) delays delivery and loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import gevent

from service.domain.errors import PresenceUnavailable, StorageUnavailable
from service.domain.presence import NodePresence, Presence
from service.service_layer.ports import NotificationLog, Telemetry

log = logging.getLogger(__name__)


class Hub(Protocol):
    @property
    def head(self) -> int | None: ...

    def follow(self, log_head: int) -> None: ...

    @property
    def connection_count(self) -> int: ...

    def online_users(self) -> Iterable[str]: ...


class PresenceStore(Protocol):
    node_id: str

    def report(self, connections: int, user_ids: Iterable[str]) -> None: ...

    def read(self) -> Presence: ...

    def nodes_of(self, user_id: str) -> list[str]: ...


class Relay(Protocol):
    def announce_acks(self, user_ids: Iterable[str]) -> None: ...


def run_log_follower(log_head: Callable[[], int], hub: Hub, *, interval: float) -> None:
    """For sio.start_background_task: read the log's head (uncached) and let
    the hub take what it was not handed."""
    failing = False
    while True:
        try:
            hub.follow(log_head())
            if failing:
                log.info("the log follower reads the log again")
            failing = False
        except StorageUnavailable as exc:
            if not failing:  # once per outage, not once per interval
                log.warning("the log follower cannot read the log's head: %s", exc)
            failing = True
        gevent.sleep(interval)


class AckRelayingLog:
    """The hub's log, telling the other nodes whose acks it wrote (their
    caches hold those users' positions). Everything else passes through."""

    def __init__(self, inner: NotificationLog, relay: Relay) -> None:
        self._inner = inner
        self._relay = relay

    def ack_many(self, acks: Mapping[str, int]) -> int:
        try:
            return self._inner.ack_many(acks)
        finally:
            self._relay.announce_acks(acks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def local_presence(node_id: str, hub: Hub) -> Presence:
    users = sum(1 for _ in hub.online_users())
    return Presence((NodePresence(node_id, hub.connection_count, users, time.time()),),
                    users, "local")


def run_presence(store: PresenceStore, hub: Hub, *, interval: float,
                 telemetry: Telemetry | None, relay_stats: Any = None) -> None:
    """For sio.start_background_task: report this node, then record what the
    cluster looks like from here (``cluster`` measurement)."""
    failing = False
    while True:
        fields: dict[str, Any] = {"connections": hub.connection_count}
        try:
            users = list(hub.online_users())
            fields["users"] = len(users)
            store.report(hub.connection_count, users)
            cluster = store.read()
            fields.update(cluster_nodes=len(cluster.nodes),
                          cluster_connections=cluster.connections,
                          cluster_users=cluster.users, redis_up=1)
            if failing:
                log.info("presence reaches Redis again")
            failing = False
        except PresenceUnavailable as exc:
            if not failing:
                log.warning("presence cannot reach Redis: %s", exc.message)
            failing = True
            fields["redis_up"] = 0
        if relay_stats is not None:
            fields.update(relay_sent=relay_stats.sent, relay_unsent=relay_stats.unsent,
                          relay_received=relay_stats.received)
        if telemetry is not None:
            telemetry.emit("cluster", (), fields)
        gevent.sleep(interval)
