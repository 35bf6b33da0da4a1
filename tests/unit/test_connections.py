import pytest

from service.domain.connections import ConnectionLimitReached, ConnectionPolicy
from service.service_layer.delivery import DeliveryHub
from tests.support.fakes import InMemoryNotificationLog, ManualSpawner, RecordingSender


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_hub(**policy):
    sender, clock = RecordingSender(), Clock()
    hub = DeliveryHub(InMemoryNotificationLog(), sender, None, ManualSpawner(),
                      policy=ConnectionPolicy(**policy), clock=clock)
    return hub, sender, clock


def test_the_per_user_limit_refuses_one_more_and_names_it():
    hub, *_ = make_hub(max_per_user=2)
    hub.connect("a1", "alice", None)
    hub.connect("a2", "alice", None)
    with pytest.raises(ConnectionLimitReached) as caught:
        hub.connect("a3", "alice", None)
    assert caught.value.field == "user" and "2" in caught.value.message
    hub.connect("b1", "bob", None)  # other users are not affected
    hub.disconnect("a1")
    hub.connect("a3", "alice", None)  # room again once one left


def test_the_node_limit_refuses_anyone_past_it():
    hub, *_ = make_hub(max_per_node=2)
    hub.connect("a", "alice", None)
    hub.connect("b", "bob", None)
    with pytest.raises(ConnectionLimitReached) as caught:
        hub.connect("c", "carol", None)
    assert caught.value.field == "node"
    assert hub.connection_count == 2


def test_idle_connections_are_closed_and_active_ones_kept():
    hub, sender, clock = make_hub(idle_timeout_s=60)
    hub.connect("quiet", "alice", None)
    hub.connect("busy", "bob", None)
    clock.now += 50
    hub.touch("busy")
    clock.now += 20  # quiet: 70 s without a word; busy: 20 s
    assert hub.close_idle() == ["quiet"]
    assert sender.closed == ["quiet"]
    assert hub.disconnect("quiet").close_reason == "idle"
    assert hub.close_idle() == []  # closing is asked once


def test_an_ack_counts_as_activity():
    hub, _, clock = make_hub(idle_timeout_s=60)
    hub.connect("s", "alice", None)
    clock.now += 59
    hub.ack("s", 0)
    clock.now += 59
    assert hub.close_idle() == []


def test_a_slow_consumer_is_closed_and_its_entries_stay_in_the_log():
    from service.domain.connections import SlowConsumer
    from service.domain.model import PublishRequest, utcnow
    from tests.support.fakes import RecordingTelemetry

    class FullSender(RecordingSender):
        def send(self, sid, event, data):
            raise SlowConsumer("full", field="connection")

    log, sender = InMemoryNotificationLog(), FullSender()
    telemetry, spawn = RecordingTelemetry(), ManualSpawner()
    hub = DeliveryHub(log, sender, telemetry, spawn)
    hub.connect("s", "alice", None)
    spawn.run_all()
    request = PublishRequest.from_body({"user_id": "alice", "category": "c",
                                        "priority": "critical"})
    hub.deliver(log.append(request, "m1", utcnow()))
    assert sender.closed == ["s"]
    assert hub.disconnect("s").close_reason == "slow_consumer"
    assert ("notify_drop", {"reason": "slow_consumer"}, {"count": 1}) in telemetry.records
    assert [n.offset for n in log.read("alice", 0, 10)[0]] == [1]
    assert sender.released == ["s"]


def test_a_batch_left_waiting_at_disconnect_is_counted():
    from service.domain.batching import BatchPolicy
    from service.domain.model import PublishRequest, utcnow
    from tests.support.fakes import RecordingTelemetry

    log, telemetry, spawn = InMemoryNotificationLog(), RecordingTelemetry(), ManualSpawner()
    hub = DeliveryHub(log, RecordingSender(), telemetry, spawn,
                      batching=BatchPolicy(max_size=10, max_wait_s=1.0))
    hub.connect("s", "alice", None)
    spawn.run_all()
    request = PublishRequest.from_body({"user_id": "alice", "category": "c"})
    hub.deliver(log.append(request, "m1", utcnow()))
    hub.deliver(log.append(request, "m2", utcnow()))
    hub.disconnect("s")
    assert ("notify_drop", {"reason": "disconnected"}, {"count": 2}) in telemetry.records
    assert telemetry.total("notify_dispatch") == 2
    assert all(tags == {"outcome": "live"} for m, tags, _ in telemetry.records
               if m == "notify_dispatch")
