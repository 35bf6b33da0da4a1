import pytest

from service.domain.backpressure_policy import (
    DEFAULT_ACTIONS,
    Action,
    BackpressurePolicy,
    Overloaded,
    parse_actions,
)
from service.domain.connections import ConnectionLimitReached
from service.domain.model import Priority, PublishRequest
from service.service_layer.backpressure import Backpressure
from service.service_layer.delivery import DeliveryHub
from service.service_layer.publishing import publish
from tests.support.fakes import (
    InMemoryNotificationLog,
    ManualSpawner,
    RecordingSender,
    RecordingTelemetry,
    appending,
)

MB = 1 << 20
POLICY = BackpressurePolicy.for_budget(100 * MB)  # high water 25 MB, low water 6.25 MB


def test_pressure_engages_at_the_high_water_mark_and_releases_below_the_low_one():
    assert not POLICY.engaged(False, 25 * MB - 1, 10 * MB)
    assert POLICY.engaged(False, 25 * MB, 10 * MB)
    assert POLICY.engaged(True, 10 * MB, 10 * MB)  # between the marks: stays engaged
    assert not POLICY.engaged(True, 6 * MB, 10 * MB)
    assert POLICY.engaged(False, 0, 100 * MB)  # over the memory budget
    assert POLICY.engaged(True, 0, 95 * MB)  # released only under 90 % of it
    assert not POLICY.engaged(True, 0, 89 * MB)


def test_actions_are_configurable_per_priority_and_bad_ones_are_named():
    actions = parse_actions("normal=refuse, critical=deliver")
    assert actions[Priority.NORMAL] is Action.REFUSE
    assert actions[Priority.LOW] is DEFAULT_ACTIONS[Priority.LOW]
    for bad in ("normal=drop", "urgent=defer", "normal"):
        with pytest.raises(ValueError, match="BACKPRESSURE"):
            parse_actions(bad)


def request(priority: str, user: str = "ann") -> PublishRequest:
    return PublishRequest.from_body({"user_id": user, "category": "c", "priority": priority})


class Pressure:
    def __init__(self) -> None:
        self.queued, self.rss = 0, 10 * MB
        self.telemetry = RecordingTelemetry()
        self.released = 0
        self.gate = Backpressure(POLICY, queued_bytes=lambda: (self.queued, 3),
                                 rss_bytes=lambda: self.rss, telemetry=self.telemetry,
                                 on_release=self.release)

    def release(self) -> None:
        self.released += 1


def test_engaged_pressure_refuses_low_defers_normal_and_high_and_lets_critical_through():
    p = Pressure()
    p.queued = 30 * MB
    p.gate.sample()
    with pytest.raises(Overloaded) as refused:
        p.gate.admit(request("low"))
    assert refused.value.retry_after > 0 and refused.value.field == "priority"
    for priority in ("normal", "high", "critical"):
        p.gate.admit(request(priority))  # stored: not refused
    assert p.gate.defers(Priority.NORMAL) and p.gate.defers(Priority.HIGH)
    assert not p.gate.defers(Priority.CRITICAL)
    p.queued = 1 * MB
    p.gate.sample()
    assert not p.gate.engaged and p.released == 1
    p.gate.admit(request("low"))
    events = [f for m, t, f in p.telemetry.records if m == "notify_backpressure"]
    assert [e["refused"] for e in events] == [0, 1]  # counted over the episode


def test_over_the_memory_budget_new_connections_are_refused():
    p = Pressure()
    p.rss = 120 * MB
    p.gate.sample()
    with pytest.raises(ConnectionLimitReached) as refused:
        p.gate.admit_connection()
    assert refused.value.field == "memory"


def test_deferred_entries_reach_connected_users_in_order_once_released():
    p = Pressure()
    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    hub = DeliveryHub(log, sender, p.telemetry, spawn, pressure=p.gate)
    p.gate.on_release = hub.resume_deferred
    hub.connect("s1", "ann", last_offset=None)
    spawn.run_all()

    def send(priority: str) -> None:
        publish({"user_id": "ann", "category": "c", "priority": priority},
                append=appending(log, hub.deliver), telemetry=p.telemetry)

    p.queued = 30 * MB
    p.gate.sample()
    send("normal")
    send("high")
    hub.flush_due("s1", float("inf"))
    assert sender.offsets("s1") == []  # held back
    assert p.telemetry.total("notify_dispatch") == 2 and p.gate.deferred == 2
    send("critical")  # goes at once, with what was held back before it
    spawn.run_all()
    assert sender.offsets("s1") == [1, 2, 3]
    send("normal")
    p.queued = 0
    p.gate.sample()
    spawn.run_all()
    assert sender.offsets("s1") == [1, 2, 3, 4]
    outcomes = {t["outcome"] for m, t, _ in p.telemetry.records if m == "notify_dispatch"}
    assert "deferred" in outcomes
