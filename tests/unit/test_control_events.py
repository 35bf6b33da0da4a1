"""The control log's events and projections (pure), and the live config
folded from them."""

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.control import (
    ControlEvent,
    EventDraft,
    audit,
    config_at,
    fold_config,
    parse_time,
    recommendation_states,
)
from service.domain.errors import ConflictError, InvalidInput
from service.domain.levels import LEVELS
from service.domain.tuning import effective
from service.service_layer.live_config import LiveConfig
from tests.support.fakes import InMemoryControlLog, RecordingTelemetry

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def log_of(*specs):
    """Events at seq 1, 2, ... one minute apart from T0."""
    return [EventDraft(kind, payload, "ops", "why", T0 + timedelta(minutes=i)).recorded(i + 1)
            for i, (kind, payload) in enumerate(specs)]


EVENTS = log_of(
    ("level_set", {"level": "aggressive"}),                        # 1  12:00
    ("parameter_overridden", {"batch_size": 20}),                  # 2  12:01
    ("alert_received", {"name": "p99 high", "state": "firing"}),   # 3  12:02
    ("level_set", {"level": "conservative"}),                      # 4  12:03
    ("parameter_overridden", {"batch_size": None, "batch_timeout_ms": 40}),  # 5  12:04
)


@pytest.mark.parametrize(("minute", "level", "overrides", "seq"), [
    (-1, "balanced", {}, 0),  # before anything
    (0, "aggressive", {}, 1),  # at an event's own time: it is in
    (1.5, "aggressive", {"batch_size": 20}, 2),
    (2, "aggressive", {"batch_size": 20}, 3),  # an alert changes nothing
    (3.99, "conservative", {"batch_size": 20}, 4),  # a level keeps the overrides
    (60, "conservative", {"batch_timeout_ms": 40.0}, 5),  # null removed one
])
def test_config_at_t_is_the_fold_of_what_was_recorded_by_t(minute, level, overrides, seq):
    state = config_at(EVENTS, T0 + timedelta(minutes=minute), {"idle_timeout": 60.0}, "balanced")
    assert (state.level, dict(state.overrides), state.seq) == (level, overrides, seq)
    assert state.values == effective(level, {"idle_timeout": 60.0}, overrides)
    assert state.values["idle_timeout"] == 60.0  # the node's start-up override stays below


def test_a_rollback_restores_the_level_and_overrides_in_force_after_its_target():
    events = EVENTS + log_of(*[("level_set", {"level": "balanced"})] * 5)[5:]  # 6 balanced
    events += [EventDraft("rollback", {"to_seq": 2}, "ops", "bad idea", T0).recorded(7)]
    state = fold_config(events, {}, "balanced")
    assert (state.level, dict(state.overrides), state.seq) == ("aggressive", {"batch_size": 20}, 7)
    # to the alert: what was in force after it, which is what seq 2 left
    to_alert = ControlEvent(5, "rollback", {"to_seq": 3}, "ops", "", T0)
    assert fold_config(EVENTS[:4] + [to_alert], {}, "balanced").level == "aggressive"
    # to 0: the start; and a rollback of the rollback is the state before it
    again = events + [EventDraft("rollback", {"to_seq": 0}, "ops", "", T0).recorded(8)]
    state = fold_config(again, {}, "maximum")
    assert (state.level, state.overrides) == ("maximum", {})
    undo = again + [EventDraft("rollback", {"to_seq": 7}, "ops", "", T0).recorded(9)]
    assert fold_config(undo, {}, "balanced").level == "aggressive"


def test_an_applied_recommendation_changes_the_config_it_carries():
    events = log_of(
        ("recommendation_issued", {"id": "r1", "parameters": {"batch_size": 50}, "text": "x"}),
        ("recommendation_issued", {"id": "r2", "level": "maximum"}),
        ("recommendation_applied", {"id": "r1", "parameters": {"batch_size": 50}}),
        ("recommendation_dismissed", {"id": "r2"}),
        ("recommendation_issued", {"id": "r3"}),
    )
    states = recommendation_states(events)
    assert [(r.id, r.status) for r in states.values()] == [
        ("r1", "applied"), ("r2", "dismissed"), ("r3", "issued")]
    assert states["r1"].issued["text"] == "x" and states["r1"].decided_by == "ops"
    assert states["r1"].issued_at == T0 and states["r1"].decided_at == T0 + timedelta(minutes=2)
    state = fold_config(events, {}, "balanced")
    assert (state.level, state.overrides["batch_size"]) == ("balanced", 50)


@pytest.mark.parametrize(("kind", "payload", "field"), [
    ("level_set", {"level": "warp"}, "level"),
    ("level_set", {}, "level"),
    ("parameter_overridden", {}, "parameters"),
    ("parameter_overridden", {"batch_size": 0}, "parameters.batch_size"),
    ("parameter_overridden", ["batch_size"], "parameters"),
    ("rollback", {"to_seq": -1}, "to_seq"),
    ("rollback", {"to_seq": True}, "to_seq"),
    ("rollback", {}, "to_seq"),
    ("recommendation_issued", {"id": ""}, "payload.id"),
    ("recommendation_issued", {"id": "r", "parameters": {"colour": 1}}, "parameters.colour"),
    ("recommendation_applied", {}, "payload.id"),
    ("alert_received", {"state": "firing"}, "payload.name"),
    ("alert_received", {"name": "a", "blob": "x" * 20_000}, "payload"),
    ("alert_received", {"name": "a", "when": T0}, "payload"),
    ("teleported", {}, "type"),
])
def test_payloads_are_checked_when_an_event_is_made(kind, payload, field):
    with pytest.raises(InvalidInput) as refused:
        EventDraft(kind, payload, "ops")
    assert refused.value.field == field


def test_an_event_needs_an_actor_an_aware_time_and_a_short_reason():
    with pytest.raises(InvalidInput):
        EventDraft("level_set", {"level": "balanced"}, "")
    with pytest.raises(InvalidInput):
        EventDraft("level_set", {"level": "balanced"}, "ops", reason="x" * 1001)
    with pytest.raises(ValueError):
        EventDraft("level_set", {"level": "balanced"}, "ops", at=datetime(2026, 1, 1))
    draft = EventDraft("parameter_overridden", {"batch_size": 7.0}, "ops")
    assert draft.payload == {"batch_size": 7} and draft.at.tzinfo is UTC


def test_the_audit_says_who_when_why_and_what():
    [first, second, third] = audit(EVENTS[:3])
    assert first == {"seq": 1, "at": "2026-01-01T12:00:00.000000Z", "actor": "ops",
                     "type": "level_set", "reason": "why", "what": "level -> aggressive",
                     "payload": {"level": "aggressive"}}
    assert second["what"] == "batch_size=20"
    assert third["what"] == "alert p99 high (firing)"


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", None,
                                  "0001-01-01T00:00:00+01:00"])
def test_a_bad_time_is_refused_by_name(text):
    with pytest.raises(InvalidInput) as refused:
        parse_time(text)
    assert refused.value.field == "t"


def test_times_with_an_offset_or_none_are_utc():
    assert parse_time("2026-01-01T13:00:00+01:00") == T0
    assert parse_time("2026-01-01T12:00:00") == T0


# -- the live config over a log ------------------------------------------


def test_each_change_is_one_or_two_events_with_actor_and_reason():
    log, applied = InMemoryControlLog(), []
    config = LiveConfig("balanced", {}, applied.append, None, log=log)
    snapshot = config.change({"level": "aggressive", "parameters": {"batch_size": 9},
                              "reason": "peak"}, actor="alice")
    assert [(e.seq, e.type, e.actor, e.reason) for e in log.events] == [
        (1, "level_set", "alice", "peak"), (2, "parameter_overridden", "alice", "peak")]
    assert (snapshot["seq"], snapshot["level"], snapshot["parameters"]["batch_size"]) == (
        2, "aggressive", 9)
    assert len(applied) == 1  # both events, one retune
    assert [e["what"] for e in config.history(limit="1")] == ["batch_size=9"]


def test_a_stale_expected_seq_is_a_conflict_and_changes_nothing():
    log = InMemoryControlLog()
    config = LiveConfig("balanced", {}, lambda values: None, None, log=log)
    config.change({"level": "aggressive"}, expected_seq=0)
    with pytest.raises(ConflictError):
        config.change({"level": "maximum"}, expected_seq=0)
    assert config.level == "aggressive" and len(log.events) == 1


def test_events_from_another_node_apply_here_and_a_new_node_starts_from_the_log():
    log, applied, telemetry = InMemoryControlLog(), [], RecordingTelemetry()
    here = LiveConfig("balanced", {}, applied.append, telemetry, log=log)
    log.append(EventDraft("parameter_overridden", {"batch_size": 33}, "node-b", "tuning"))
    assert here.values["batch_size"] == 33 and applied[-1]["batch_size"] == 33
    assert telemetry.records[-1][2]["actor"] == "node-b"
    late_applied, late_telemetry = [], RecordingTelemetry()
    late = LiveConfig("balanced", {}, late_applied.append, late_telemetry, log=log)
    assert late.snapshot() == here.snapshot()
    assert len(late_applied) == 1 and late_telemetry.records == []  # history: applied, quietly


def test_rollback_through_the_live_config_and_its_limits():
    log, telemetry = InMemoryControlLog(), RecordingTelemetry()
    config = LiveConfig("balanced", {}, lambda values: None, telemetry, log=log)
    config.change({"parameters": {"batch_size": 5}})
    config.change({"level": "maximum", "parameters": {"batch_size": 500}})
    after = config.rollback({"to_seq": 1, "reason": "too hot"})
    assert (after["seq"], after["level"], after["overrides"]) == (4, "balanced", {"batch_size": 5})
    assert after["parameters"]["batch_timeout_ms"] == LEVELS["balanced"].batch_timeout_ms
    [change] = [f for m, _t, f in telemetry.records if m == "config_change"][-1:]
    assert "rollback to #1: level maximum -> balanced" in change["text"]
    [event] = [(dict(t), f) for m, t, f in telemetry.records if m == "control_event"][-1:]
    assert event == ({"type": "rollback"},
                     {"seq": 4, "actor": "admin", "text": "rollback to #1 (too hot)"})
    for body in ({"to_seq": 5}, {"to_seq": "1"}, {}, {"to_seq": 1, "force": True}):
        with pytest.raises(InvalidInput):
            config.rollback(body)
    at = config.at(datetime.now(UTC) + timedelta(seconds=1))
    assert (at["seq"], at["level"]) == (4, "balanced")


def test_without_a_log_the_live_config_keeps_its_events_itself():
    config = LiveConfig("balanced", {}, lambda values: None, None)
    config.change({"level": "maximum"})
    assert config.rollback({"to_seq": 0})["level"] == "balanced"
    assert [e["type"] for e in config.history()] == ["level_set", "rollback"]
    with pytest.raises(InvalidInput):
        config.history(limit=1001)


def test_stored_events_are_not_checked_again():
    """A range narrowed later must not make history unreadable."""
    old = ControlEvent(1, "parameter_overridden", {"batch_size": 5000}, "ops", "", T0)
    assert fold_config([old], {}, "balanced").overrides == {"batch_size": 5000}
