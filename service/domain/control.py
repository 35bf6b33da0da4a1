"""The control event log's events and what is folded from them. Pure: no I/O.

Every change to the control state is one appended event that says who made
it, when and why. The effective config, the recommendations' states and the
audit trail are projections: pure functions of the events in ``seq`` order.
So "what was live at time T" is a fold of a prefix, and a rollback is one
more event that the fold resolves against the states it has already seen.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import takewhile
from typing import Any

from service.domain.errors import InvalidInput
from service.domain.tuning import check_level, check_parameters, effective

LEVEL_SET = "level_set"
PARAMETER_OVERRIDDEN = "parameter_overridden"
RECOMMENDATION_ISSUED = "recommendation_issued"
RECOMMENDATION_APPLIED = "recommendation_applied"
RECOMMENDATION_DISMISSED = "recommendation_dismissed"
ROLLBACK = "rollback"
ALERT_RECEIVED = "alert_received"
IMPACT_MEASURED = "impact_measured"  # what a change did, measured after it (analysis jobs)
EVENT_TYPES = (LEVEL_SET, PARAMETER_OVERRIDDEN, RECOMMENDATION_ISSUED, RECOMMENDATION_APPLIED,
               RECOMMENDATION_DISMISSED, ROLLBACK, ALERT_RECEIVED, IMPACT_MEASURED)

MAX_PAYLOAD_BYTES = 16 * 1024  # an event is a decision, not a data dump
MAX_ACTOR = 128
MAX_REASON = 1000
MAX_TEXT = 200  # an id, a verdict or an alert's name in an event's payload


def _text(payload: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise InvalidInput(f"{key} must be a string of 1-{MAX_TEXT} characters",
                           field=f"payload.{key}")
    return value.strip()


def _recommendation(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``{id, level?, parameters?, ...}``: a level or parameters it carries are
    checked now, so that applying it later cannot fail on them."""
    out = dict(payload)
    out["id"] = _text(payload, "id")
    if "level" in payload:
        out["level"] = check_level(payload["level"])
    if "parameters" in payload:
        out["parameters"] = check_parameters(payload["parameters"])
    return out


def _rollback(payload: Mapping[str, Any]) -> dict[str, Any]:
    to_seq = payload.get("to_seq")
    if isinstance(to_seq, bool) or not isinstance(to_seq, int) or to_seq < 0:
        raise InvalidInput("to_seq must be a non-negative integer", field="to_seq")
    return {"to_seq": to_seq}


def _impact(payload: Mapping[str, Any]) -> dict[str, Any]:
    seq = payload.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InvalidInput("seq must be the measured change's seq", field="payload.seq")
    _text(payload, "verdict")
    return dict(payload)


def _parameters(payload: Mapping[str, Any]) -> dict[str, Any]:
    if not payload:
        raise InvalidInput("name at least one parameter", field="parameters")
    return check_parameters(payload)


_CHECKS = {
    LEVEL_SET: lambda p: {"level": check_level(p.get("level"))},
    PARAMETER_OVERRIDDEN: _parameters,
    RECOMMENDATION_ISSUED: _recommendation,
    RECOMMENDATION_APPLIED: _recommendation,
    RECOMMENDATION_DISMISSED: lambda p: {**p, "id": _text(p, "id")},
    ROLLBACK: _rollback,
    ALERT_RECEIVED: lambda p: {**p, "name": _text(p, "name")},
    IMPACT_MEASURED: _impact,
}


def check_payload(kind: str, payload: Any) -> dict[str, Any]:
    """The payload, normalised, or InvalidInput naming what is wrong."""
    if kind not in _CHECKS:
        raise InvalidInput(f"type must be one of {', '.join(EVENT_TYPES)}", field="type")
    if not isinstance(payload, Mapping):
        name = "parameters" if kind == PARAMETER_OVERRIDDEN else "payload"
        raise InvalidInput(f"{name} must be an object", field=name)
    checked = _CHECKS[kind](payload)
    try:
        size = len(json.dumps(checked, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        raise InvalidInput("payload must be plain JSON", field="payload") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"payload is over {MAX_PAYLOAD_BYTES} bytes", field="payload")
    return checked


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class EventDraft:
    """An event not yet appended: the log gives it its ``seq``."""

    type: str
    payload: Mapping[str, Any]
    actor: str
    reason: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", check_payload(self.type, self.payload))
        if not isinstance(self.actor, str) or not 0 < len(self.actor) <= MAX_ACTOR:
            raise InvalidInput(f"actor must be 1-{MAX_ACTOR} characters", field="actor")
        if not isinstance(self.reason, str) or len(self.reason) > MAX_REASON:
            raise InvalidInput(f"reason must be a string of at most {MAX_REASON} characters",
                               field="reason")
        object.__setattr__(self, "at", utc(self.at))

    def recorded(self, seq: int, at: datetime | None = None) -> ControlEvent:
        return ControlEvent(seq, self.type, self.payload, self.actor, self.reason, at or self.at)


@dataclass(frozen=True)
class ControlEvent:
    """An appended event. Not validated again: the log holds facts, and a
    range that has since narrowed must not make history unreadable."""

    seq: int
    type: str
    payload: Mapping[str, Any]
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class ConfigPoint:
    """The live layer of the config right after event ``seq`` (0: before any)."""

    seq: int
    level: str
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class ConfigState:
    seq: int  # the last event folded, of any type
    level: str
    overrides: Mapping[str, Any]  # the live ones; start-up overrides sit below them
    values: Mapping[str, Any]  # the effective value of every tunable


def next_point(points: Sequence[ConfigPoint], event: ControlEvent) -> ConfigPoint | None:
    """The live layer after ``event`` given the points before it (oldest
    first, the first one the start), or None when the event leaves the config
    alone. A rollback to k takes the point in force after event k."""
    last = points[-1]
    payload = event.payload
    if event.type == ROLLBACK:
        index = bisect_right([p.seq for p in points], payload["to_seq"]) - 1
        target = points[max(index, 0)]
        return ConfigPoint(event.seq, target.level, target.overrides)
    if event.type not in (LEVEL_SET, PARAMETER_OVERRIDDEN, RECOMMENDATION_APPLIED):
        return None
    parameters = payload if event.type == PARAMETER_OVERRIDDEN else payload.get("parameters", {})
    level = payload.get("level", last.level) if event.type != PARAMETER_OVERRIDDEN else last.level
    if level == last.level and not parameters:
        return None
    overrides = {**last.overrides, **parameters}
    return ConfigPoint(event.seq, level,
                       {k: v for k, v in overrides.items() if v is not None})


def config_points(events: Iterable[ControlEvent], default_level: str) -> list[ConfigPoint]:
    points = [ConfigPoint(0, default_level, {})]
    for event in events:
        point = next_point(points, event)
        if point is not None:
            points.append(point)
    return points


def fold_config(events: Iterable[ControlEvent], startup_overrides: Mapping[str, Any],
                default_level: str) -> ConfigState:
    """The effective config after ``events`` (in seq order). Start-up
    overrides (this node's environment) sit between the level and the live
    overrides, as ``effective`` layers them."""
    events = list(events)
    point = config_points(events, default_level)[-1]
    return ConfigState(events[-1].seq if events else 0, point.level, dict(point.overrides),
                       effective(point.level, startup_overrides, point.overrides))


def config_at(events: Iterable[ControlEvent], t: datetime, startup_overrides: Mapping[str, Any],
              default_level: str) -> ConfigState:
    """The config live at ``t``: the fold of the events recorded at or before
    it. The log keeps ``at`` non-decreasing in seq order, so this is a prefix."""
    t = utc(t)
    return fold_config(takewhile(lambda e: e.at <= t, events), startup_overrides, default_level)


@dataclass(frozen=True)
class Recommendation:
    id: str
    status: str  # issued | applied | dismissed
    issued: Mapping[str, Any]  # the issuing event's payload ({} if never issued here)
    issued_at: datetime | None
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str = ""


def recommendation_states(events: Iterable[ControlEvent]) -> dict[str, Recommendation]:
    """Each recommendation's latest state, by id, in the order first seen. A
    decision on an id never issued is kept too: the log is the record."""
    states: dict[str, Recommendation] = {}
    for e in events:
        if e.type == RECOMMENDATION_ISSUED:
            states[e.payload["id"]] = Recommendation(e.payload["id"], "issued", e.payload, e.at)
        elif e.type in (RECOMMENDATION_APPLIED, RECOMMENDATION_DISMISSED):
            rid = e.payload["id"]
            before = states.get(rid) or Recommendation(rid, "issued", {}, None)
            status = "applied" if e.type == RECOMMENDATION_APPLIED else "dismissed"
            states[rid] = Recommendation(rid, status, before.issued, before.issued_at,
                                         e.at, e.actor, e.reason)
    return states


def format_at(moment: datetime) -> str:
    """Microseconds, so a time copied from the history finds its own event."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: Any, field_name: str = "t") -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field_name} must be an ISO 8601 time", field=field_name)
    try:
        moment = datetime.fromisoformat(value.strip())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: year 1 with a positive offset
        raise InvalidInput(f"{field_name} must be an ISO 8601 time, e.g. "
                           "2026-01-31T12:00:00Z", field=field_name) from None


def describe(event: ControlEvent) -> str:
    """What the event did, in a few words."""
    p = event.payload
    if event.type == LEVEL_SET:
        return f"level -> {p['level']}"
    if event.type == PARAMETER_OVERRIDDEN:
        return "; ".join(f"{k}={'default' if v is None else v}" for k, v in p.items())
    if event.type == ROLLBACK:
        return f"rollback to #{p['to_seq']}"
    if event.type == IMPACT_MEASURED:
        return f"impact of #{p['seq']}: {p['verdict']}"
    if event.type == ALERT_RECEIVED:
        state = p.get("state")
        return f"alert {p['name']}" + (f" ({state})" if isinstance(state, str) else "")
    verb = event.type.removeprefix("recommendation_")
    return f"recommendation {p['id']} {verb}"


def audit(events: Iterable[ControlEvent]) -> list[dict[str, Any]]:
    """Who did what, when and why, in seq order."""
    return [{"seq": e.seq, "at": format_at(e.at), "actor": e.actor, "type": e.type,
             "reason": e.reason, "what": describe(e), "payload": dict(e.payload)}
            for e in events]
