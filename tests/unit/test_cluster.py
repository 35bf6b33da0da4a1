"""Entries committed on other nodes: the relay's messages, and the hub taking
them (from Redis or, when a message is lost, from the log) in log order."""

from __future__ import annotations

from dataclasses import replace
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.adapters.redis_cluster import (
    CLUSTER_NAMESPACE,
    MAX_PENDING,
    ClusterHandlers,
    ClusterManager,
    decode_entry,
    encode_entry,
)
from service.domain.batching import BatchPolicy
from service.domain.model import Appended, Notification, Priority, PublishRequest, utcnow
from service.service_layer.cluster import AckRelayingLog, local_presence
from service.service_layer.delivery import DeliveryHub
from tests.support.fakes import (
    InMemoryNotificationLog,
    ManualSpawner,
    RecordingSender,
    RecordingTelemetry,
)


@pytest.fixture
def parts():
    log = InMemoryNotificationLog()
    sender, telemetry, spawn = RecordingSender(), RecordingTelemetry(), ManualSpawner()
    foreign: list[int] = []
    hub = DeliveryHub(log, sender, telemetry, spawn, replay_page=3,
                      batching=BatchPolicy(max_size=1),
                      on_foreign=lambda appended: foreign.append(appended.offset))
    return log, sender, telemetry, spawn, hub, foreign


def commit(log, user="alice", n=1, origin="node-2"):
    """Entries another node committed, as its message brings them."""
    out = []
    for i in range(n):
        request = PublishRequest.from_body({"user_id": user, "category": "c", "payload": {"i": i}})
        out.append(replace(log.append(request, f"m{len(log.entries)}", utcnow()),
                           origin=origin))
    return out


def dispatched(telemetry, outcome):
    return sum(fields["count"] for m, tags, fields in telemetry.records
               if m == "notify_dispatch" and tags.get("outcome") == outcome)


def test_entries_from_another_node_are_sent_and_counted_as_relayed(parts):
    log, sender, telemetry, spawn, hub, foreign = parts
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    hub.deliver_many(commit(log, n=3) + commit(log, "bob"))
    assert sender.offsets("s1") == [1, 2, 3]
    assert foreign == [1, 2, 3, 4], "the cache hears of every one, in order"
    assert dispatched(telemetry, "relayed") == 3
    assert dispatched(telemetry, "queued") == 0, "bob's entry is its own node's to count"


def test_the_log_follower_fills_in_what_no_message_brought(parts):
    log, sender, _, spawn, hub, foreign = parts
    hub.follow(log.head())  # a node starting: it knows where the log stands
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    commit(log, n=4)  # committed elsewhere; every message was lost
    assert sender.offsets("s1") == []
    hub.follow(log.head())
    spawn.run_all()  # waits a moment for late messages, then reads the log
    assert sender.offsets("s1") == [1, 2, 3, 4]
    assert foreign == [1, 2, 3, 4]
    hub.follow(log.head())  # nothing new: nothing read, nothing sent twice
    spawn.run_all()
    assert sender.offsets("s1") == [1, 2, 3, 4]


def test_a_message_and_a_local_commit_interleave_in_log_order(parts):
    log, sender, _, spawn, hub, _ = parts
    hub.follow(log.head())
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    remote = commit(log, n=2)
    local = commit(log, n=1, origin=None)
    hub.deliver(local[0])  # offset 3, committed here, handed before the message came
    assert sender.offsets("s1") == []
    hub.deliver_many(remote)
    assert sender.offsets("s1") == [1, 2, 3]


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=30),
       st.randoms(use_true_random=False))
def test_whatever_order_messages_come_in_each_user_gets_its_stream_in_order(users, rnd):
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    hub = DeliveryHub(log, sender, None, spawn, batching=BatchPolicy(max_size=1),
                      on_foreign=lambda _: None)
    hub.follow(0)
    for user in "abc":
        hub.connect(user, user, last_offset=0)
    spawn.run_all()
    entries = [commit(log, user)[0] for user in users]
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    lost = set(rnd.sample(range(len(entries)), k=len(entries) // 3))
    hub.deliver_many([e for i, e in enumerate(shuffled) if i not in lost])
    hub.follow(log.head())
    with patch("service.service_layer.sequencer.GAP_WAIT_S", 0):  # no waiting for late ones
        spawn.run_all()
    for user in "abc":
        assert sender.offsets(user) == [e.offset for e in entries if e.user_ids == (user,)]


@given(st.text(min_size=0, max_size=50), st.sampled_from(list(Priority)),
       st.none() | st.lists(st.from_regex(r"[a-z0-9@.]{1,12}", fullmatch=True), max_size=4))
def test_an_entry_survives_the_wire_exactly(payload_text, priority, users):
    notification = Notification("abc123", 41, "cat.x", priority,
                                f'{{"t":{payload_text!r:}}}'.replace("'", '"'), utcnow())
    appended = Appended(notification, None if users is None else tuple(users), 7)
    back = decode_entry(encode_entry(appended), "node-9")
    assert back.notification.wire_json == notification.wire_json
    assert (back.user_ids, back.recipients, back.origin) == (appended.user_ids, 7, "node-9")


def make_manager() -> ClusterManager:
    # no I/O: RedisManager connects on first use, and these tests never use it
    return ClusterManager("redis://127.0.0.1:1/0", channel="c", node_id="here")


def test_messages_on_the_cluster_namespace_go_to_the_handlers_and_bad_ones_are_ignored():
    manager = make_manager()
    got: dict[str, list] = {"committed": [], "acked": [], "trimmed": []}
    manager.handlers = ClusterHandlers(
        committed=got["committed"].extend, acked=got["acked"].extend,
        trimmed=lambda: got["trimmed"].append(True))
    entry = Appended(Notification("i", 5, "c", Priority.HIGH, "{}", utcnow()), ("u",), 1)
    message = {"method": "emit", "namespace": CLUSTER_NAMESPACE, "node": "there"}
    manager._handle_emit({**message, "event": "committed", "data": [encode_entry(entry)]})
    manager._handle_emit({**message, "event": "acked", "data": ["u", "v"]})
    manager._handle_emit({**message, "event": "trimmed", "data": None})
    manager._handle_emit({**message, "event": "committed", "data": [[1, 2]]})  # malformed
    manager._handle_emit({**message, "event": "committed", "data": 7})  # malformed
    assert [(e.offset, e.origin) for e in got["committed"]] == [(5, "there")]
    assert got["acked"] == ["u", "v"] and got["trimmed"] == [True]
    assert manager.stats.received == 1


def test_announcing_never_waits_and_what_waits_is_bounded():
    manager = make_manager()
    entry = Appended(Notification("i", 1, "c", Priority.LOW, "{}", utcnow()), None, 0)
    for _ in range(MAX_PENDING + 5):
        manager.announce(entry)
    assert len(manager._pending) == MAX_PENDING
    assert manager.stats.unsent == 5, "what was left out is counted: the log has it"


def test_a_failed_publish_leaves_the_entries_to_the_log_and_counts_them(monkeypatch):
    import gevent

    manager = make_manager()
    monkeypatch.setattr(manager, "_publish", lambda message: None)  # Redis down
    entry = Appended(Notification("i", 1, "c", Priority.LOW, "{}", utcnow()), None, 0)
    for _ in range(3):
        manager.announce(entry)
    announcer = gevent.spawn(manager.run_announcer)
    gevent.sleep(0.05)
    announcer.kill()
    assert (manager.stats.sent, manager.stats.unsent, manager.stats.failures) == (0, 3, 1)
    assert manager.stats.redis_up is False


def test_acks_written_here_are_announced_to_the_other_nodes():
    log, told = InMemoryNotificationLog(), []

    class Relay:
        def announce_acks(self, users):
            told.append(sorted(users))

    relaying = AckRelayingLog(log, Relay())
    relaying.open_stream("alice")
    relaying.ack_many({"alice": 0})
    assert told == [["alice"]]
    assert relaying.head() == log.head(), "everything else passes through"


def test_local_presence_counts_this_nodes_users(parts):
    _, _, _, spawn, hub, _ = parts
    hub.connect("s1", "alice", None)
    hub.connect("s2", "alice", None)
    hub.connect("s3", "bob", None)
    presence = local_presence("n1", hub)
    assert (presence.connections, presence.users, presence.source) == (3, 2, "local")
