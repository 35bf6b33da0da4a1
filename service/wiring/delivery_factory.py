"""Delivery in a ``serve`` process: the Socket.IO server, the hub that fans
entries out to its connections, backpressure, and, with REDIS_URL, the
cluster relay and presence.

Two cycles are closed here by a callable handed to a constructor: the
cluster manager (which the Socket.IO server is built on) hands a peer's
entries to the hub, and backpressure (which the hub consults) tells the hub
to resume. Neither calls before the app starts (``App.start_background``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import socketio

from service.adapters.patches import PatchesInForce
from service.adapters.redis_cluster import ClusterHandlers, ClusterManager
from service.adapters.redis_presence import RedisPresence
from service.adapters.runtime_metrics import rss_bytes
from service.adapters.socketio_server import SocketIOSender, make_socketio_server
from service.config import Settings
from service.domain.model import Appended
from service.service_layer.backpressure import Backpressure
from service.service_layer.cached_log import CachedNotificationLog
from service.service_layer.cluster import AckRelayingLog
from service.service_layer.delivery import DeliveryHub
from service.service_layer.leaks import LeakTracker
from service.service_layer.ports import NotificationLog
from service.service_layer.telemetry import TelemetryRing
from service.wiring.storage_factory import Storage
from service.wiring.tuning_factory import (
    backpressure_policy,
    batch_policy,
    compression_policy,
    connection_policy,
)


@dataclass(frozen=True)
class Delivery:
    cluster: ClusterManager | None  # REDIS_URL set
    sio: socketio.Server
    sender: SocketIOSender
    backpressure: Backpressure
    hub: DeliveryHub
    ack_log: NotificationLog  # where acks are written: the cache, told to the other nodes
    presence: RedisPresence | None  # a cluster node that delivers


def build_cluster(settings: Settings, log: CachedNotificationLog,
                  committed: Callable[[list[Appended]], None],
                  patches: PatchesInForce) -> ClusterManager | None:
    """The relay between nodes (REDIS_URL): a peer's entries go to
    ``committed``; its acks and trims drop what this node's cache holds."""
    if not settings.redis_url:
        return None
    return ClusterManager(settings.redis_url, channel=settings.redis_channel,
                          node_id=settings.node_id, write_only=settings.write_only,
                          patches=patches, handlers=ClusterHandlers(committed=committed,
                                                   acked=log.acked_elsewhere,
                                                   trimmed=log.invalidate_all))


def build_delivery(settings: Settings, storage: Storage, recorder: TelemetryRing | None,
                   patches: PatchesInForce) -> Delivery:
    start = settings.tunables()
    cluster = build_cluster(settings, storage.log, lambda entries: hub.deliver_many(entries),
                            patches)
    sio = make_socketio_server(ping_interval=settings.ping_interval,
                               ping_timeout=settings.ping_timeout,
                               cors_allowed_origins=settings.cors_allowed_origins,
                               client_manager=cluster, patches=patches)
    sender = SocketIOSender(sio, max_queued_bytes=settings.send_queue_max_bytes)
    backpressure = Backpressure(backpressure_policy(settings, start),
                                queued_bytes=sender.queued_bytes, rss_bytes=rss_bytes,
                                telemetry=recorder, on_release=lambda: hub.resume_deferred())
    # Engine.IO's ping task holds its session for up to a ping interval after
    # the close: only past that is a session still alive a leak.
    leak_grace = max(settings.leak_grace_s, settings.ping_interval + settings.ping_timeout)
    ack_log = AckRelayingLog(storage.log, cluster) if cluster else storage.log
    hub = DeliveryHub(ack_log, sender, recorder, sio.start_background_task,
                      policy=connection_policy(settings, start, patches.connection_bytes),
                      batching=batch_policy(start),
                      compression=compression_policy(start), pressure=backpressure,
                      leaks=LeakTracker(grace_s=leak_grace),
                      replay_reads_at_once=max(1, settings.db_pool.size // 2),
                      on_foreign=storage.log.changed_elsewhere if cluster else None)
    presence = (RedisPresence(settings.redis_url, channel=settings.redis_channel,
                              node_id=settings.node_id, ttl_s=3 * settings.presence_interval)
                if settings.redis_url and not settings.write_only else None)
    return Delivery(cluster=cluster, sio=sio, sender=sender, backpressure=backpressure,
                    hub=hub, ack_log=ack_log, presence=presence)


def delivery_sink(hub: DeliveryHub, cluster: ClusterManager | None) -> Callable[[Appended], None]:
    """Where a committed entry goes: this node's connections, and the other
    nodes. (A publish-only node's hub has no connections: it counts the
    entry as queued, as a node whose users are elsewhere does.)"""
    if cluster is None:
        return hub.deliver

    def deliver_and_announce(entry: Appended) -> None:
        hub.deliver(entry)
        cluster.announce(entry)

    return deliver_and_announce
