"""Grafana's alert notifications, and the mitigations they may trigger. Pure.

Grafana's webhook contact point POSTs a group of alerts (its documented
shape: ``{receiver, status, alerts: [{status, labels, annotations,
startsAt, endsAt, fingerprint, values, ...}], ...}``). Each alert becomes an
``alert_received`` event; the fields kept are bounded, so a noisy rule
cannot bloat the control log. Grafana owns that shape and adds fields in new
versions, so fields this service does not read are ignored, not refused.

A mitigation is a documented rule (``MITIGATIONS``, docs/operations.md):
when an alert named there fires, the config moves to a safer level. It is
one more control event, so it is audited and undone by a rollback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.errors import InvalidInput

MAX_ALERTS = 100  # Grafana truncates a group past its own limit too (truncatedAlerts)
MAX_TEXT = 200  # per label value and name: the event's payload stays small
MAX_SUMMARY = 500
MAX_LABELS = 20
MAX_MARK = 64  # fingerprint and startsAt: what tells a repeat from a new alert
STATES = ("firing", "resolved")


@dataclass(frozen=True)
class Mitigation:
    alertname: str
    level: str  # the level the config moves to while it fires
    why: str
    # parameters pinned at their value of the moment, so the new level's
    # preset does not change them: a lower memory budget, reached at once by
    # a node already near its own, would refuse every connection
    keep: tuple[str, ...] = ()


MITIGATIONS: tuple[Mitigation, ...] = (
    Mitigation("NotifyMemoryCritical", "conservative",
               "memory is near the budget: smaller batches, caches and limits, same budget",
               keep=("memory_budget_mb",)),
)


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # firing | resolved
    fingerprint: str
    starts_at: str
    labels: Mapping[str, str]
    summary: str
    values: Mapping[str, float]

    def event_payload(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "fingerprint": self.fingerprint,
                "starts_at": self.starts_at, "labels": dict(self.labels),
                "summary": self.summary, "values": dict(self.values)}

    def same_as(self, payload: Mapping[str, Any]) -> bool:
        """A repeat of an alert already recorded (Grafana re-sends a firing
        group every repeat interval, and retries a failed delivery)."""
        return (payload.get("fingerprint") == self.fingerprint
                and payload.get("state") == self.state
                and payload.get("starts_at") == self.starts_at)


def mitigation_for(alert: Alert) -> Mitigation | None:
    if alert.state != "firing":
        return None
    return next((m for m in MITIGATIONS if m.alertname == alert.name), None)


def parse_grafana(body: Any) -> list[Alert]:
    """The alerts of one webhook notification, or InvalidInput naming the field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be Grafana's webhook JSON object", field="body")
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise InvalidInput("alerts must be a non-empty list", field="alerts")
    if len(alerts) > MAX_ALERTS:
        raise InvalidInput(f"at most {MAX_ALERTS} alerts in one notification", field="alerts")
    return [_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts)]


def _alert(raw: Any, where: str) -> Alert:
    if not isinstance(raw, Mapping):
        raise InvalidInput("each alert must be an object", field=where)
    labels = _strings(raw.get("labels"), f"{where}.labels", MAX_TEXT)
    name = labels.get("alertname")
    if not name:
        raise InvalidInput("labels.alertname is required", field=f"{where}.labels.alertname")
    state = raw.get("status")
    if state not in STATES:
        raise InvalidInput(f"status must be one of {', '.join(STATES)}", field=f"{where}.status")
    fingerprint = raw.get("fingerprint", "")
    starts_at = raw.get("startsAt", "")
    for key, value in (("fingerprint", fingerprint), ("startsAt", starts_at)):
        if not isinstance(value, str) or len(value) > MAX_MARK:
            raise InvalidInput(f"{key} must be a string of at most {MAX_MARK} characters",
                               field=f"{where}.{key}")
    annotations = _strings(raw.get("annotations"), f"{where}.annotations", MAX_SUMMARY)
    values = raw.get("values") or {}
    if not isinstance(values, Mapping):
        raise InvalidInput("values must be an object", field=f"{where}.values")
    numbers = {str(k)[:64]: float(v) for k, v in list(values.items())[:MAX_LABELS]
               if isinstance(v, int | float) and not isinstance(v, bool)}
    kept = dict(list(sorted(labels.items()))[:MAX_LABELS])
    return Alert(name[:MAX_TEXT], state, fingerprint, starts_at, kept,
                 annotations.get("summary", "")[:MAX_SUMMARY], numbers)


def _strings(raw: Any, where: str, limit: int) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise InvalidInput("must be an object of strings", field=where)
    return {str(k)[:64]: v[:limit] for k, v in raw.items()}
