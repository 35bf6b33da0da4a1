"""The cluster channel patch (service/adapters/patches/cluster_channel.py)
held to python-socketio's RedisManager on a real Redis: Socket.IO's own
messages between nodes reach a node's clients as they do through upstream's
manager; ours are picked out for the relay's handlers and never reach
upstream's emit; left out, the manager is upstream's only.

Threading mode: redis-py's sockets are not gevent's in an unpatched test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import socketio

from service.adapters.patches import PatchesInForce
from service.adapters.redis_cluster import ClusterHandlers, ClusterManager
from tests.support.backing_services import REDIS_URL, unique


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class _Node:
    """A server on ``manager``, with one client connected to "/" and in a
    room, recording what the server sends it and what the relay hears."""

    def __init__(self, manager: socketio.RedisManager) -> None:
        self.manager = manager
        self.stopping = threading.Event()
        listen = manager._listen

        def listen_until_stopped() -> Iterator:  # upstream's listener thread ends with it
            for message in listen():
                if self.stopping.is_set():
                    return
                yield message

        manager._listen = listen_until_stopped
        self.sio = socketio.Server(async_mode="threading", client_manager=manager,
                                   logger=False, engineio_logger=False)
        self.sent: list = []
        self.heard: list = []
        self.sio.eio.send = lambda eio_sid, data: self.sent.append((eio_sid, data))
        self.sio.eio.send_packet = lambda eio_sid, pkt: self.sent.append((eio_sid, pkt.encode()))
        if isinstance(manager, ClusterManager):
            manager.handlers = ClusterHandlers(
                committed=lambda entries: self.heard.append(("committed", len(entries))),
                acked=lambda users: self.heard.append(("acked", users)),
                trimmed=lambda: self.heard.append(("trimmed",)))
        self.sio.manager_initialized = True
        manager.initialize()
        self.sid = manager.connect("eio1", "/")
        manager.enter_room(self.sid, "/", "room1")


@pytest.fixture
def channel():
    name = unique("patch_channel")
    client = redis.Redis.from_url(REDIS_URL)
    nodes: list[_Node] = []

    def start(manager: socketio.RedisManager) -> _Node:
        node = _Node(manager)
        nodes.append(node)
        _wait_for(lambda: client.pubsub_numsub(name)[0][1] >= len(nodes))  # listening
        return node

    yield name, start
    for node in nodes:
        node.stopping.set()
    client.publish(name, "{}")  # wakes the listeners, which end
    client.close()


def test_socketio_messages_between_nodes_reach_clients_as_through_upstreams_manager(channel):
    name, start = channel
    theirs = start(socketio.RedisManager(REDIS_URL, channel=name))
    ours = start(ClusterManager(REDIS_URL, channel=name, node_id="ours"))
    publisher = socketio.RedisManager(REDIS_URL, channel=name, write_only=True)
    publisher.emit("news", {"a": 1}, namespace="/")
    publisher.emit("two", ("x", 2), namespace="/", room="room1")
    publisher.emit("elsewhere", 1, namespace="/", room="nobody")
    publisher.emit("bytes", b"\x00\x01", namespace="/")
    publisher.emit("last", None, namespace="/")
    _wait_for(lambda: len(theirs.sent) >= 5 and len(ours.sent) >= 5)  # "bytes" is two
    assert ours.sent == theirs.sent
    assert ours.sent[0] == ("eio1", "42[\"news\",{\"a\":1}]")
    assert ours.heard == []


def test_our_messages_are_picked_out_for_the_relay_and_never_reach_upstreams_emit(channel):
    name, start = channel
    theirs = start(socketio.RedisManager(REDIS_URL, channel=name))
    ours = start(ClusterManager(REDIS_URL, channel=name, node_id="ours"))
    left_out = start(ClusterManager(REDIS_URL, channel=name, node_id="plain",
                                    patches=PatchesInForce(frozenset())))
    sender = ClusterManager(REDIS_URL, channel=name, node_id="sender", write_only=True)
    sender.announce_acks(["u1", "u2"])
    sender.announce_trim()
    assert sender.stats.failures == 0
    _wait_for(lambda: len(ours.heard) >= 2)
    time.sleep(0.2)  # time for anything else to arrive
    assert ours.heard == [("acked", ["u1", "u2"]), ("trimmed",)]
    assert ours.sent == [] and theirs.sent == []  # no client is sent them
    assert left_out.heard == [] and left_out.sent == []  # upstream's manager only


def test_left_out_the_relay_publishes_nothing_and_counts_entries_for_the_log(channel):
    name, start = channel
    ours = start(ClusterManager(REDIS_URL, channel=name, node_id="ours"))
    left_out = ClusterManager(REDIS_URL, channel=name, node_id="plain",
                              patches=PatchesInForce(frozenset()))
    left_out.announce_acks(["u1"])
    left_out.announce_trim()
    assert left_out.publish_peer_message("acked", ["u1"]) is False
    time.sleep(0.2)
    assert ours.heard == []
    assert (left_out.stats.sent, left_out.stats.failures) == (0, 0)
