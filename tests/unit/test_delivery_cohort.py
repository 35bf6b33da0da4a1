"""Connections in step share one batch of broadcasts (the cohort): whatever
mix of broadcasts, entries for one user, deadlines, acks, backpressure and
reconnects, each connection gets its stream after where it started, in
order, once (hypothesis), and a broadcast costs no per-connection queueing."""

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.batching import BatchPolicy
from service.domain.model import PublishRequest, utcnow
from service.service_layer.delivery import DeliveryHub
from tests.support.fakes import InMemoryNotificationLog, ManualSpawner, RecordingSender

USERS = ("ann", "bob", "cy")


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class Pressure:
    """Holds back ``low`` entries while ``on``."""

    on = False
    deferred = 0

    def defers(self, priority) -> bool:
        return self.on and priority.value == "low"

    def admit_connection(self) -> None:
        return None


def publish(log, hub, body):
    request = PublishRequest.from_body({"category": "c", **body})
    hub.deliver(log.append(request, f"m{len(log.entries)}", utcnow()))


def fire_timers(hub, clock):
    for sid in hub.batch_timers.pop_due(clock.now):
        hub.flush_due(sid, clock.now)


ops = st.lists(st.one_of(
    st.tuples(st.just("broadcast"), st.sampled_from(["low", "normal", "high", "critical"])),
    st.tuples(st.just("to"), st.sampled_from(USERS)),
    st.tuples(st.just("tick"), st.floats(0.001, 0.2)),
    st.tuples(st.just("ack"), st.integers(0, 5)),
    st.tuples(st.just("pressure"), st.booleans()),
    st.tuples(st.just("reconnect"), st.integers(0, 5)),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(1, 5))
def test_every_connection_gets_its_stream_in_order_once(steps, batch_size):
    log, sender, spawn, clock = (InMemoryNotificationLog(), RecordingSender(), ManualSpawner(),
                                 Clock())
    pressure = Pressure()
    hub = DeliveryHub(log, sender, None, spawn, clock=clock, pressure=pressure,
                      batching=BatchPolicy(max_size=batch_size, max_wait_s=0.05))
    sids = [f"{u}-{i}" for u in USERS for i in (1, 2)]
    for sid in sids:
        hub.connect(sid, sid.split("-")[0], last_offset=None)
    spawn.run_all()
    generation = {sid: sid for sid in sids}  # a reconnect opens a new sid for the same slot
    started = dict.fromkeys(sids, 0)  # sid -> the offset it connected after
    for kind, arg in steps:
        if kind == "broadcast":
            publish(log, hub, {"broadcast": True, "priority": arg})
        elif kind == "to":
            publish(log, hub, {"user_id": arg})
        elif kind == "tick":
            clock.now += arg
            fire_timers(hub, clock)
        elif kind == "ack":
            slot = sids[arg % len(sids)]
            sent = sender.offsets(generation[slot])
            if sent:
                hub.ack(generation[slot], sent[-1])
        elif kind == "pressure":
            pressure.on = arg
            if not arg:
                hub.resume_deferred()
        else:  # a connection drops and comes back from what it saw last
            slot = sids[arg % len(sids)]
            old = generation[slot]
            seen = sender.offsets(old)
            hub.disconnect(old)
            new = f"{old}+"
            generation[slot] = new
            started[new] = seen[-1] if seen else started[old]
            hub.connect(new, slot.split("-")[0], last_offset=started[new])
        spawn.run_all()
    pressure.on = False
    hub.resume_deferred()
    spawn.run_all()
    clock.now += 1.0
    fire_timers(hub, clock)
    spawn.run_all()

    streams = {u: [n.offset for n in log.stream(u)] for u in USERS}
    for sid in generation.values():
        user = sid.split("-")[0]
        expected = [o for o in streams[user] if o > started[sid]]
        assert sender.offsets(sid) == expected, (sid, started[sid], streams[user])


def test_a_broadcast_to_connections_in_step_is_queued_once():
    log, sender, spawn, clock = (InMemoryNotificationLog(), RecordingSender(), ManualSpawner(),
                                 Clock())
    hub = DeliveryHub(log, sender, None, spawn, clock=clock,
                      batching=BatchPolicy(max_size=10, max_wait_s=0.05))
    for i in range(50):
        hub.connect(f"s{i}", f"u{i}", last_offset=None)
    spawn.run_all()
    assert len(hub.cohort.members) == 50
    for _ in range(3):
        publish(log, hub, {"broadcast": True})
    assert len(hub.cohort.queue.items) == 3
    assert all(not hub._connections[f"s{i}"].queue.items for i in range(50))
    publish(log, hub, {"user_id": "u7"})  # u7's own entry: it leaves, with the shared three
    assert "s7" not in hub.cohort and len(hub._connections["s7"].queue.items) == 4
    clock.now += 0.06
    fire_timers(hub, clock)
    assert sender.offsets("s0") == [1, 2, 3] and sender.offsets("s7") == [1, 2, 3, 4]
    assert "s7" in hub.cohort  # nothing waits for it any more: back in step


def test_each_batch_says_what_sent_it():
    from tests.support.fakes import RecordingTelemetry

    log, sender, spawn, clock = (InMemoryNotificationLog(), RecordingSender(), ManualSpawner(),
                                 Clock())
    telemetry = RecordingTelemetry()
    hub = DeliveryHub(log, sender, telemetry, spawn, clock=clock,
                      batching=BatchPolicy(max_size=2, max_wait_s=0.05))
    publish(log, hub, {"user_id": "ann"})  # before anyone connects: read back by the replay
    hub.connect("a", "ann", last_offset=0)
    hub.connect("b", "bob", last_offset=None)
    spawn.run_all()
    publish(log, hub, {"broadcast": True})
    publish(log, hub, {"broadcast": True})  # the shared batch is full
    publish(log, hub, {"user_id": "bob"})
    clock.now += 0.06
    fire_timers(hub, clock)  # bob's own entry, by its deadline
    publish(log, hub, {"broadcast": True, "priority": "critical"})

    def batches(trigger):
        return sum(f.get("batches", 0) for m, t, f in telemetry.records
                   if m == "notify_delivery" and t.get("trigger") == trigger)

    assert (batches("replay"), batches("size"), batches("timeout"),
            batches("immediate")) == (1, 2, 1, 2)


def test_a_shared_batch_goes_compressed_only_to_the_members_that_asked():
    import json
    import zlib

    from service.domain.compression import CompressionPolicy

    log, sender, spawn, clock = (InMemoryNotificationLog(), RecordingSender(), ManualSpawner(),
                                 Clock())
    hub = DeliveryHub(log, sender, None, spawn, clock=clock,
                      batching=BatchPolicy(max_size=4, max_wait_s=0.05),
                      compression=CompressionPolicy(min_bytes=500))
    for sid, deflate in (("p1", False), ("z1", True), ("p2", False), ("z2", True)):
        hub.connect(sid, sid, last_offset=None, accepts_deflate=deflate)
    spawn.run_all()
    assert len(hub.cohort.members) == 4
    for i in range(4):  # a full shared batch, over 500 bytes
        publish(log, hub, {"broadcast": True, "payload": {"text": "x" * 200, "i": i}})
    sent = {sid: data for sid, event, data in sender.sent if event == "notifications"}
    assert isinstance(sent["p1"], str) and isinstance(sent["z1"], bytes)
    assert sent["p1"] is sent["p2"] and sent["z1"] is sent["z2"]  # each made once
    assert json.loads(zlib.decompress(sent["z1"])) == json.loads(sent["p1"])
    assert [n["offset"] for n in json.loads(sent["p1"])] == [1, 2, 3, 4]
