import json
import zlib

import pytest

from service.domain.batching import BatchPolicy
from service.domain.compression import CompressionPolicy, parse_scheme
from service.domain.errors import InvalidInput, OffsetOutOfRange
from service.domain.model import PublishRequest, utcnow
from service.service_layer.delivery import DeliveryHub
from service.service_layer.recent import RecentEntries
from tests.support.fakes import (
    InMemoryNotificationLog,
    ManualSpawner,
    RecordingSender,
    RecordingTelemetry,
)


@pytest.fixture
def parts():
    log = InMemoryNotificationLog()
    sender = RecordingSender()
    telemetry = RecordingTelemetry()
    spawn = ManualSpawner()
    # batches of one go out at once: these tests are about order and replay
    hub = DeliveryHub(log, sender, telemetry, spawn, replay_page=3,
                      batching=BatchPolicy(max_size=1))
    return log, sender, telemetry, spawn, hub


def append(log, user="alice", n=1):
    out = []
    for i in range(n):
        request = PublishRequest.from_body({"user_id": user, "category": "c", "payload": {"i": i}})
        out.append(log.append(request, f"m{user}{i}{len(log.entries)}", utcnow()))
    return out


def deliver(hub, appended):
    for one in appended:
        hub.deliver(one)


def test_replay_sends_everything_after_last_offset_in_pages(parts):
    log, sender, _, spawn, hub = parts
    append(log, n=7)
    hub.connect("s1", "alice", last_offset=2)
    spawn.run_all()
    assert sender.offsets("s1") == [3, 4, 5, 6, 7]
    assert [len(batch) for batch in sender.batches("s1")] == [3, 2]


def test_without_last_offset_replay_starts_after_the_acknowledged_offset(parts):
    log, sender, _, spawn, hub = parts
    append(log, n=4)
    log.ack_many({"alice": 3})
    hub.connect("s1", "alice", last_offset=None)
    spawn.run_all()
    assert sender.offsets("s1") == [4]


def test_live_entries_during_replay_are_sent_once_and_in_order(parts):
    log, sender, _, spawn, hub = parts
    append(log, n=2)
    hub.connect("s1", "alice", last_offset=0)
    live = append(log, n=2)  # committed while the replay has not run yet
    deliver(hub, live)
    assert sender.sent == []  # held back: the connection is catching up
    spawn.run_all()
    deliver(hub, live)  # a late duplicate offer changes nothing
    assert sender.offsets("s1") == [1, 2, 3, 4]


def test_an_entry_handed_early_waits_for_the_one_before_it(parts):
    log, sender, _, spawn, hub = parts
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    first, second = append(log, n=2)
    hub.deliver(second)  # offset 2 arrives before offset 1 was handed over
    assert sender.offsets("s1") == []
    hub.deliver(first)
    assert sender.offsets("s1") == [1, 2]
    hub.deliver(second)  # a late duplicate changes nothing
    assert sender.offsets("s1") == [1, 2]


def test_an_entry_that_is_never_handed_over_is_read_from_the_log(parts):
    log, sender, _, spawn, hub = parts
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    _lost, second, third = append(log, n=3)
    hub.deliver(second)
    hub.deliver(third)
    assert sender.offsets("s1") == []
    spawn.run_all()  # the gap filler waits a moment, then reads the log
    assert sender.offsets("s1") == [1, 2, 3]
    assert hub.head == 3


def test_a_user_never_receives_another_users_entries(parts):
    log, sender, _, spawn, hub = parts
    hub.connect("a", "alice", None)
    hub.connect("b", "bob", None)
    spawn.run_all()
    deliver(hub, append(log, "alice", 2))
    assert sender.offsets("a") == [1, 2]
    assert sender.offsets("b") == []


def test_last_offset_beyond_the_head_is_refused(parts):
    log, _, _, _, hub = parts
    append(log, n=1)
    with pytest.raises(OffsetOutOfRange):
        hub.connect("s1", "alice", last_offset=5)
    assert hub.connection_count == 0


def test_ack_beyond_what_was_delivered_is_refused(parts):
    log, _, telemetry, spawn, hub = parts
    append(log, n=2)
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    with pytest.raises(OffsetOutOfRange):
        hub.ack("s1", 3)
    hub.ack("s1", 1)
    hub.ack("s1", 2)
    hub.ack("s1", 1)  # acks only move forward
    assert log.acked["alice"] == 0  # not yet: acks are written in batches
    assert hub.acks.flush() == 2
    assert log.acked["alice"] == 2
    assert telemetry.records[-1] == ("notify_ack", {}, {"count": 2, "acks": 2})


def test_a_reconnect_sees_acks_not_yet_written(parts):
    log, sender, _, spawn, hub = parts
    append(log, n=3)
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    hub.ack("s1", 3)
    hub.connect("s2", "alice", last_offset=None)  # before the ack batch is written
    spawn.run_all()
    assert sender.offsets("s2") == []


def test_the_last_connection_leaving_writes_its_acks(parts):
    log, _, _, spawn, hub = parts
    append(log, n=2)
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    hub.ack("s1", 2)
    hub.disconnect("s1")
    spawn.run_all()
    assert log.acked["alice"] == 2


def test_delivery_telemetry_counts_every_entry(parts):
    log, _, telemetry, spawn, hub = parts
    append(log, n=4)
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    deliver(hub, append(log, n=1))
    assert telemetry.total("notify_delivery") == 5
    modes = [tags["mode"] for m, tags, _ in telemetry.records if m == "notify_delivery"]
    assert modes == ["replay", "replay", "live"]
    latencies = [v for _, _, name, values in telemetry.observed if name == "latency_ms"
                 for v in values]
    assert len(latencies) == 5 and all(v >= 0 for v in latencies)
    waits = [v for _, _, name, values in telemetry.observed if name == "wait_ms" for v in values]
    assert len(waits) == 1  # only live entries wait in a batch


def test_live_entries_wait_for_their_batch_and_keep_their_order():
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()

    class Clock:
        now = 10.0

        def __call__(self):
            return self.now

    clock = Clock()
    hub = DeliveryHub(log, sender, None, spawn, clock=clock,
                      batching=BatchPolicy(max_size=3, max_wait_s=0.05))
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    deliver(hub, append(log, n=2))
    assert sender.sent == []  # waiting for the size or the timeout trigger
    deliver(hub, append(log, n=2))  # the third fills a batch; the fourth waits
    assert [len(b) for b in sender.batches("s1")] == [3]
    clock.now += 0.06
    for sid in hub.batch_timers.pop_due(clock.now):
        hub.flush_due(sid, clock.now)
    assert sender.offsets("s1") == [1, 2, 3, 4]
    critical = PublishRequest.from_body({"user_id": "alice", "category": "c",
                                         "priority": "critical"})
    hub.deliver(log.append(critical, "crit", utcnow()))
    assert sender.offsets("s1") == [1, 2, 3, 4, 5]  # critical bypasses the wait


def test_disconnected_connections_get_nothing(parts):
    log, sender, _, spawn, hub = parts
    hub.connect("s1", "alice", None)
    spawn.run_all()
    hub.disconnect("s1")
    deliver(hub, append(log, n=1))
    assert sender.sent == []
    assert hub.user_count == 0


def test_a_client_whose_missed_entries_were_trimmed_is_told_to_reload(parts):
    log, sender, telemetry, spawn, hub = parts
    append(log, n=6)
    log.trim("alice", 4)  # 1..4 gone, never acknowledged: the epoch moves on
    hub.connect("s1", "alice", last_offset=1)
    spawn.run_all()
    events = [(event, data) for sid, event, data in sender.sent if sid == "s1"]
    assert events[0] == ("reload", {"reason": "trimmed", "epoch": 2, "first_offset": 5})
    assert sender.offsets("s1") == [5, 6]  # what follows the gap, after the reload


def test_a_client_that_missed_nothing_trimmed_is_not_told_to_reload(parts):
    log, sender, _, spawn, hub = parts
    append(log, n=6)
    log.acked["alice"] = 4
    log.trim("alice", 4)  # acknowledged history only
    hub.connect("s1", "alice", last_offset=None)
    spawn.run_all()
    assert [event for _, event, _ in sender.sent] == ["notifications"]
    assert sender.offsets("s1") == [5, 6]


def test_a_trim_while_connected_is_found_at_the_next_read(parts):
    log, sender, _, spawn, hub = parts
    append(log, n=2)
    hub.connect("s1", "alice", last_offset=None)
    spawn.run_all()
    hub._connections["s1"].catching_up = True  # as when the client fell behind
    hub.recent = RecentEntries(max_entries=1)  # ...further than memory reaches
    deliver(hub, append(log, n=5))
    log.trim("alice", 5)
    hub._spawn(hub.replay.catch_up, hub._connections["s1"])
    spawn.run_all()
    reloads = [data for _, event, data in sender.sent if event == "reload"]
    assert reloads == [{"reason": "trimmed", "epoch": 2, "first_offset": 6}]
    assert sender.offsets("s1") == [1, 2, 6, 7]


def test_a_fully_trimmed_stream_still_tells_the_client(parts):
    log, sender, _, spawn, hub = parts
    append(log, n=3)
    log.trim("alice", 3)
    hub.connect("s1", "alice", last_offset=None)
    spawn.run_all()
    assert [(e, d["first_offset"]) for _, e, d in sender.sent] == [("reload", 4)]


def test_large_batches_go_compressed_only_to_clients_that_asked():
    log, sender, telemetry, spawn = (InMemoryNotificationLog(), RecordingSender(),
                                     RecordingTelemetry(), ManualSpawner())
    hub = DeliveryHub(log, sender, telemetry, spawn, replay_page=100,
                      compression=CompressionPolicy(min_bytes=500))
    append(log, "zed", n=20)  # about 2.5 KB as one replayed batch
    hub.connect("plain", "zed", last_offset=None)
    hub.connect("packed", "zed", last_offset=None, accepts_deflate=True)
    spawn.run_all()
    [(_, _, plain)] = [x for x in sender.sent if x[0] == "plain"]
    [(_, _, packed)] = [x for x in sender.sent if x[0] == "packed"]
    assert isinstance(plain, str) and isinstance(packed, bytes)
    assert json.loads(zlib.decompress(packed)) == json.loads(plain)  # the same batch
    [plain_point, packed_point] = [f for m, _, f in telemetry.records if m == "notify_delivery"]
    assert plain_point["wire_bytes"] == plain_point["bytes"] == len(plain)
    assert packed_point["wire_bytes"] == len(packed) < packed_point["bytes"] / 2


def test_small_batches_and_a_zero_threshold_stay_plain():
    policy = CompressionPolicy(min_bytes=500)
    assert not policy.wants(True, 499) and policy.wants(True, 500)
    assert not policy.wants(False, 10_000)
    assert not CompressionPolicy(min_bytes=0).wants(True, 10_000)


@pytest.mark.parametrize("value", ["gzip", "", 1, True, ["deflate"]])
def test_an_unknown_compression_scheme_is_refused_by_name(value):
    with pytest.raises(InvalidInput) as caught:
        parse_scheme(value)
    assert caught.value.field == "compression"


def broadcast(log, n=1):
    request = PublishRequest.from_body({"broadcast": True, "category": "c", "payload": {}})
    return [log.append(request, f"b{len(log.entries)}", utcnow()) for _ in range(n)]


def test_a_broadcast_batch_is_encoded_once_for_every_connection_that_takes_it(parts):
    log, sender, telemetry, spawn, hub = parts
    for user in ("ann", "bob", "cy"):
        hub.connect(user, user, None)
    spawn.run_all()
    deliver(hub, broadcast(log, 2))
    hub.deliver(append(log, "bob", 1)[0])
    texts = [data for sid, event, data in sender.sent if event == "notifications"]
    assert [sender.offsets(u) for u in ("ann", "bob", "cy")] == [[1, 2], [1, 2, 3], [1, 2]]
    assert texts[0] is texts[1] is texts[2]  # offset 1: one str for all three
    assert ("notify_dispatch", {"outcome": "live"}, {"count": 3}) in telemetry.records


def test_a_shared_batch_is_measured_once_for_all_its_connections_and_adds_up(parts):
    log, sender, telemetry, spawn, hub = parts
    for user in ("ann", "bob", "cy", "dee"):
        hub.connect(user, user, None)
    spawn.run_all()
    deliver(hub, broadcast(log, 3))
    sent = sum(len(sender.offsets(u)) for u in ("ann", "bob", "cy", "dee"))
    deliveries = [f for m, t, f in telemetry.records
                  if m == "notify_delivery" and t["mode"] == "live"]
    assert len(deliveries) == 3  # one per shared batch, not one per connection and batch
    assert sum(f["count"] for f in deliveries) == 12 == sent  # 3 broadcasts x 4 connections
    assert all(f["batches"] == 4 for f in deliveries)
    latencies = [v for m, _, name, values in telemetry.observed
                 if m == "notify_delivery" and name == "latency_ms" for v in values]
    waits = [v for m, _, name, values in telemetry.observed
             if m == "notify_delivery" and name == "wait_ms" for v in values]
    assert len(latencies) == len(waits) == 12  # each entry once per connection it reached


def test_a_new_stream_holds_the_broadcasts_after_it_began_only(parts):
    log, sender, telemetry, spawn, hub = parts
    deliver(hub, broadcast(log, 2))  # before anyone connected: in no stream
    hub.connect("s1", "ann", last_offset=0)
    spawn.run_all()
    hub.connect("s2", "bob", None)
    spawn.run_all()
    hub.disconnect("s2")
    deliver(hub, broadcast(log, 1))
    assert sender.offsets("s1") == [3]
    assert ("notify_dispatch", {"outcome": "queued"}, {"count": 1}) in telemetry.records
    assert [n.offset for n in log.read("bob", 0, 10)[0]] == [3]


def test_an_ack_counts_the_entries_it_covers_not_the_offsets(parts):
    log, _, telemetry, spawn, hub = parts
    hub.connect("s1", "ann", None)
    spawn.run_all()
    deliver(hub, append(log, "bob", 5))  # offsets 1-5 are bob's
    deliver(hub, append(log, "ann", 2))  # ann's stream: 6, 7
    hub.ack("s1", 7)
    hub.acks.flush()
    assert telemetry.records[-1] == ("notify_ack", {}, {"count": 2, "acks": 1})


def test_a_replay_larger_than_the_send_queue_goes_in_chunks_at_the_clients_pace():
    from service.service_layer.replay import REPLAY_CHUNK_BYTES

    class PacedSender(RecordingSender):
        """Its socket takes two looks to write each batch."""

        def __init__(self) -> None:
            super().__init__()
            self.looks = 0

        def waiting(self, sid: str) -> int:
            if self.looks < 2 * len(self.sent):
                self.looks += 1
                return 1
            return 0

    log, sender, spawn = InMemoryNotificationLog(), PacedSender(), ManualSpawner()
    hub = DeliveryHub(log, sender, None, spawn)
    big = "x" * 30_000
    for i in range(20):  # 600 KB: more than two chunks
        request = PublishRequest.from_body({"user_id": "alice", "category": "c",
                                            "payload": {"i": i, "text": big}})
        log.append(request, f"m{i}", utcnow())
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    batches = sender.batches("s1")
    assert [n["offset"] for b in batches for n in b] == list(range(1, 21))
    assert len(batches) == 3 and all(len(json.dumps(b)) <= REPLAY_CHUNK_BYTES + 31_000
                                     for b in batches)
    assert sender.looks == 2 * (len(batches) - 1), "each batch waited for the one before"


def test_a_replay_to_a_client_that_reads_nothing_closes_it_as_a_slow_consumer():
    from service.service_layer.replay import REPLAY_STALL_S

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            self.now += 0.5  # each look at the clock is half a second later
            return self.now

    class StuckSender(RecordingSender):
        def waiting(self, sid: str) -> int:
            return 100_000 if self.sent else 0  # the first batch is never read

    log, sender, spawn = InMemoryNotificationLog(), StuckSender(), ManualSpawner()
    hub = DeliveryHub(log, sender, None, spawn, clock=Clock())
    for i in range(20):
        request = PublishRequest.from_body({"user_id": "alice", "category": "c",
                                            "payload": {"i": i, "text": "x" * 30_000}})
        log.append(request, f"m{i}", utcnow())
    hub.connect("s1", "alice", last_offset=0)
    spawn.run_all()
    assert len(sender.batches("s1")) == 1, "nothing more while the first is unread"
    assert sender.closed == ["s1"], f"closed after {REPLAY_STALL_S} s without progress"
    assert hub.disconnect("s1").close_reason == "slow_consumer"
