"""Changing the tunable parameters of the running nodes, without dropping a
connection. The live config is a projection of the control event log: a
change is validated, appended as events, and applied when the log delivers
them, which it does on every node, whichever node appended them. The wiring
decides which component takes which value."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from service.domain.control import (
    LEVEL_SET,
    PARAMETER_OVERRIDDEN,
    ROLLBACK,
    ConfigPoint,
    ControlEvent,
    EventDraft,
    audit,
    config_at,
    describe,
    format_at,
    next_point,
)
from service.domain.errors import ConflictError, InvalidInput
from service.domain.tuning import effective
from service.service_layer.ports import ControlLog, Telemetry

log = logging.getLogger(__name__)
_FIELDS = frozenset({"level", "parameters", "reason"})
HISTORY_DEFAULT, HISTORY_MAX = 100, 1000


class LiveConfig:
    """Without a ``log`` the events stay in this process (unit tests, tools)."""

    def __init__(self, level: str, startup: Mapping[str, Any],
                 apply: Callable[[dict[str, Any]], None], telemetry: Telemetry | None,
                 log: ControlLog | None = None, *, announce: bool = True) -> None:
        self.default_level = level
        self.startup = dict(startup)  # set by environment variables at start-up
        self.seq = 0  # the last event applied, of any type
        # the live layer after each event that changed it: a rollback looks back here
        self._points = [ConfigPoint(0, level, {})]
        self.values = effective(level, self.startup)
        self._apply = apply
        self._telemetry = telemetry
        self._log = log
        self._local: list[ControlEvent] = []
        # config_change is written by every node that applies a change (its
        # annotation per node); a process that applies nothing says announce=False
        self._announces = announce
        self._quiet = False
        if log is not None:
            self._quiet = True  # history already in force: apply it once, announce nothing
            log.subscribe(self._receive)
            log.catch_up()
            self._quiet = False

    @property
    def level(self) -> str:
        return self._points[-1].level

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self._points[-1].overrides)

    def snapshot(self) -> dict[str, Any]:
        return {"seq": self.seq, "level": self.level, "parameters": dict(self.values),
                "overrides": self.overrides, "startup_overrides": dict(self.startup)}

    def change(self, body: Any, actor: str = "admin",
               expected_seq: int | None = None) -> dict[str, Any]:
        """``{level?, parameters?: {name: value | null}, reason?}``: a level
        swaps the presets; a parameter overrides one (null removes the override)."""
        if not isinstance(body, Mapping) or not body or not set(body) & {"level", "parameters"}:
            raise InvalidInput("give level and/or parameters", field="body")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
        reason = reason_text(body.get("reason"))
        drafts = []  # built first: each checks its payload, so a bad one appends nothing
        if "level" in body:
            drafts.append(EventDraft(LEVEL_SET, {"level": body["level"]}, actor, reason))
        if "parameters" in body and body["parameters"] != {}:
            drafts.append(EventDraft(PARAMETER_OVERRIDDEN, body["parameters"], actor, reason))
        if drafts:
            self.append(drafts, expected_seq)
        return self.snapshot()

    def rollback(self, body: Any, actor: str = "admin",
                 expected_seq: int | None = None) -> dict[str, Any]:
        """``{to_seq, reason?}``: the config becomes what it was right after
        event ``to_seq`` (0: before any), by one more event."""
        if not isinstance(body, Mapping) or "to_seq" not in body:
            raise InvalidInput("give to_seq", field="to_seq")
        unknown = sorted(set(body) - {"to_seq", "reason"})
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
        draft = EventDraft(ROLLBACK, {"to_seq": body["to_seq"]}, actor,
                           reason_text(body.get("reason")))
        if draft.payload["to_seq"] > self.seq:
            raise InvalidInput(f"to_seq must be at most the log's seq, {self.seq}",
                               field="to_seq")
        self.append([draft], expected_seq)
        return self.snapshot()

    def history(self, limit: Any = None) -> list[dict[str, Any]]:
        """The audit trail, newest last."""
        return audit(self.recent_events(_limit(limit)))

    def at(self, t: datetime) -> dict[str, Any]:
        """The config that was live at ``t``, on this node's start-up settings."""
        state = config_at(self.events(), t, self.startup, self.default_level)
        return {"t": format_at(t), "seq": state.seq, "level": state.level,
                "parameters": dict(state.values), "overrides": dict(state.overrides),
                "startup_overrides": dict(self.startup)}

    def append(self, drafts: list[EventDraft],
               expected_seq: int | None = None) -> list[ControlEvent]:
        """Append in one transaction (ConflictError if ``expected_seq`` is not
        the log's last), and apply here before returning."""
        if self._log is not None:
            events = self._log.append_many(drafts, expected_seq)  # delivered to _receive
        else:
            if expected_seq is not None and expected_seq != self.seq:
                raise ConflictError(f"the control log is at seq {self.seq}, not "
                                    f"{expected_seq}", field="If-Match")
            events = [d.recorded(self.seq + i + 1) for i, d in enumerate(drafts)]
            self._local.extend(events)
            self._receive(events)
        self._record(events)
        return events

    def _record(self, events: list[ControlEvent]) -> None:
        """``control_event`` for each appended event, once in the cluster:
        by the process that appended it (every node applies it)."""
        if self._telemetry is None:
            return
        for event in events:
            text = describe(event) + (f" ({event.reason[:200]})" if event.reason else "")
            self._telemetry.emit("control_event", (("type", event.type),),
                                 {"seq": event.seq, "actor": event.actor, "text": text})

    def catch_up(self) -> None:
        """Fold in what other nodes appended and this one was not told yet."""
        if self._log is not None:
            self._log.catch_up()

    def events(self) -> list[ControlEvent]:
        return list(self._local) if self._log is None else self._log.read_after(0)

    def recent_events(self, limit: int) -> list[ControlEvent]:
        return self._local[-limit:] if self._log is None else self._log.read_last(limit)

    def _receive(self, events: list[ControlEvent]) -> None:
        """Fold the events in (the log calls this in seq order, once each),
        then hand the new values to the components once."""
        before = self.values
        for event in events:
            if event.seq <= self.seq:
                continue
            self.seq = event.seq
            point = next_point(self._points, event)
            if point is None:
                continue
            previous_level, previous_values = self.level, self.values
            self._points.append(point)
            self.values = effective(point.level, self.startup, point.overrides)
            if not self._quiet and self._announces:
                self._announce(event, previous_level, previous_values)
        if self.values != before:
            self._apply(dict(self.values))

    def _announce(self, event: ControlEvent, previous_level: str,
                  previous_values: Mapping[str, Any]) -> None:
        changed = {k: v for k, v in self.values.items() if previous_values[k] != v}
        parts = [f"level {previous_level} -> {self.level}"] if previous_level != self.level else []
        parts += [f"{k}={v}" for k, v in changed.items()]
        text = "; ".join(parts) or "no change"
        if event.type not in (LEVEL_SET, PARAMETER_OVERRIDDEN):
            text = f"{describe(event)}: {text}"
        if event.reason:
            text = f"{text} ({event.reason[:200]})"
        log.info("config changed by %s (#%d): %s", event.actor, event.seq, text)
        if self._telemetry is not None:
            kind = "level" if self.level != previous_level else "parameter"
            self._telemetry.emit("config_change", (("kind", kind),),
                                 {"level": self.level, "text": text, "actor": event.actor})


def reason_text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("reason must be a string", field="reason")
    return value.strip()


def _limit(value: Any) -> int:
    if value is None:
        return HISTORY_DEFAULT
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= HISTORY_MAX:
        raise InvalidInput(f"limit must be an integer from 1 to {HISTORY_MAX}", field="limit")
    return limit
