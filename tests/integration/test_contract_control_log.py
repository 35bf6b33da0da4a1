"""The ControlLog port's promises (service/service_layer/ports.py), held by
the in-memory fake the unit tests use and by the SQL log on SQLite and on
PostgreSQL alike: seqs from 1 in order, the optimistic check, reads by seq,
time that never goes back, and subscribers fed each new run once.

What only the SQL log does (the database refusing changes, propagation
between nodes) is in test_control_log.py. Where the fake and the SQL log
disagree, the fake is what gets fixed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.adapters.control_log import SqlControlLog
from service.domain.control import ALERT_RECEIVED, LEVEL_SET, EventDraft
from service.domain.errors import ConflictError
from service.service_layer.ports import ControlLog
from tests.support.fakes import InMemoryControlLog
from tests.support.storage_backends import fresh_engine


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
def control_log(request) -> ControlLog:
    if request.param == "fake":
        return InMemoryControlLog()
    return SqlControlLog(fresh_engine(request, request.param))


def level(name: str, actor: str = "ops", reason: str = "test", **at) -> EventDraft:
    return EventDraft(LEVEL_SET, {"level": name}, actor, reason, **at)


def levels(log: ControlLog) -> list[str]:
    return [e.payload["level"] for e in log.read_after(0)]


def test_an_empty_log_reads_nothing(control_log):
    assert control_log.read_after(0) == [] and control_log.read_last(5) == []


def test_events_get_seqs_from_one_in_order_and_read_back_as_appended(control_log):
    draft = EventDraft(ALERT_RECEIVED, {"name": "p99", "labels": {"a": "b"}}, "grafana", "x")
    first = control_log.append(draft)
    rest = control_log.append_many([level("aggressive"), level("maximum", reason="")])
    assert [e.seq for e in [first, *rest]] == [1, 2, 3]
    assert (first.type, first.payload, first.actor, first.reason) == (
        ALERT_RECEIVED, {"name": "p99", "labels": {"a": "b"}}, "grafana", "x")
    assert abs(first.at - draft.at) < timedelta(microseconds=2)
    assert control_log.read_after(0) == [first, *rest]


def test_reads_after_a_seq_and_the_newest_are_in_seq_order(control_log):
    for name in ("aggressive", "maximum", "balanced", "conservative"):
        control_log.append(level(name))
    assert [e.seq for e in control_log.read_after(1)] == [2, 3, 4]
    assert [e.seq for e in control_log.read_after(1, limit=2)] == [2, 3]
    assert control_log.read_after(4) == []
    assert [e.seq for e in control_log.read_last(2)] == [3, 4]
    assert [e.seq for e in control_log.read_last(10)] == [1, 2, 3, 4]
    assert control_log.read_last(0) == []


def test_a_stale_expected_seq_is_a_conflict_and_appends_nothing(control_log):
    control_log.append(level("aggressive"), expected_seq=0)
    control_log.append(level("maximum"), expected_seq=1)
    with pytest.raises(ConflictError) as conflict:
        control_log.append_many([level("balanced"), level("conservative")], expected_seq=1)
    assert conflict.value.field == "If-Match"
    assert levels(control_log) == ["aggressive", "maximum"]
    assert control_log.append(level("balanced"), expected_seq=2).seq == 3


def test_nothing_to_append_is_refused(control_log):
    with pytest.raises(ValueError):
        control_log.append_many([])
    assert control_log.read_after(0) == []


def test_time_never_goes_back_in_seq_order(control_log):
    first = control_log.append(level("aggressive"))
    late = level("maximum", actor="slow-clock", at=first.at - timedelta(seconds=30))
    assert control_log.append(late).at == first.at
    later = control_log.append(level("balanced", at=first.at + timedelta(seconds=1)))
    assert later.at == first.at + timedelta(seconds=1)
    assert [e.at for e in control_log.read_after(0)] == [first.at, first.at, later.at]


def test_subscribers_get_each_new_run_once_in_order_from_where_they_start(control_log):
    control_log.append(level("aggressive"))
    everything, later = [], []
    control_log.subscribe(lambda events: everything.append([e.seq for e in events]))
    control_log.subscribe(lambda events: later.append([e.seq for e in events]), after=1)
    control_log.append_many([level("maximum"), level("balanced")])
    control_log.append(level("conservative"))
    control_log.catch_up()  # nothing new: nobody is fed again
    assert everything == [[1, 2, 3], [4]] and later == [[2, 3], [4]]


def test_a_failing_subscriber_does_not_stop_the_others_nor_the_append(control_log):
    seen = []

    def broken(events):
        raise RuntimeError("a bad subscriber")

    control_log.subscribe(broken)
    control_log.subscribe(lambda events: seen.extend(e.seq for e in events))
    assert control_log.append(level("aggressive")).seq == 1
    control_log.append(level("maximum"))
    assert seen == [1, 2] and levels(control_log) == ["aggressive", "maximum"]
