"""Grafana's webhook: record each alert in the control log, and apply the
documented mitigation when one fires (service.domain.alerts).

A repeat of an alert already recorded (same fingerprint, state and start:
Grafana re-sends firing groups and retries failed deliveries) appends
nothing. A mitigation that is already in force appends nothing either. The
answer says, for each mitigation, the event to roll back to.
"""

from __future__ import annotations

import logging
from typing import Any

from service.domain.alerts import Alert, Mitigation, mitigation_for, parse_grafana
from service.domain.control import (
    ALERT_RECEIVED,
    LEVEL_SET,
    PARAMETER_OVERRIDDEN,
    ControlEvent,
    EventDraft,
)
from service.domain.errors import ConflictError
from service.service_layer.live_config import LiveConfig

log = logging.getLogger(__name__)
RECENT_EVENTS = 1000  # how far back a repeat is looked for
ATTEMPTS = 5


def receive_grafana(config: LiveConfig, body: Any, actor: str) -> dict[str, Any]:
    alerts = parse_grafana(body)  # all checked before anything is appended
    recent = [e for e in config.recent_events(RECENT_EVENTS) if e.type == ALERT_RECEIVED]
    new = [a for a in alerts if not any(a.same_as(e.payload) for e in recent)]
    recorded = []
    if new:
        drafts = [EventDraft(ALERT_RECEIVED, a.event_payload(), actor,
                             a.summary or f"grafana alert {a.state}") for a in new]
        recorded = config.append(drafts)
    mitigations = [_mitigate(config, alert, rule, event, actor)
                   for alert, event in zip(new, recorded, strict=True)
                   if (rule := mitigation_for(alert)) is not None]
    return {"received": len(alerts), "recorded": len(recorded),
            "repeats": len(alerts) - len(new),
            "events": [e.seq for e in recorded], "mitigations": mitigations}


def _mitigate(config: LiveConfig, alert: Alert, rule: Mitigation, event: ControlEvent,
              actor: str) -> dict[str, Any]:
    answer = {"alert": alert.name, "action": "level_set", "level": rule.level}
    reason = f"mitigation for alert {alert.name} (event #{event.seq}): {rule.why}"
    for _attempt in range(ATTEMPTS):
        if config.level == rule.level:
            return {**answer, "applied": False, "why": f"the level is already {rule.level}"}
        before = config.seq
        drafts = [EventDraft(LEVEL_SET, {"level": rule.level}, actor, reason)]
        if rule.keep:
            drafts.append(EventDraft(PARAMETER_OVERRIDDEN,
                                     {name: config.values[name] for name in rule.keep},
                                     actor, reason))
        try:  # only onto the config it looked at: the undo must restore exactly that
            applied = config.append(drafts, expected_seq=before)[-1]
            break
        except ConflictError:
            config.catch_up()
    else:
        return {**answer, "applied": False, "why": "the control log kept moving"}
    log.warning("alert %s: level set to %s by mitigation (event #%d); undo with a rollback "
                "to #%d", alert.name, rule.level, applied.seq, before)
    return {**answer, "applied": True, "seq": applied.seq, "undo": {"to_seq": before}}
