"""What the analysis jobs write for Grafana beside health and trends: the
live level's limits (``analysis_targets``), the recommendations open now
(``analysis_recommendation``) and each measured impact (``analysis_impact``).
The Overview draws its threshold lines, its table of open recommendations
(with the ``curl`` that applies each) and the optimization report from them.

The texts are built here from the control log's events and the effective
config, so that a panel shows what the API would answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from service.domain.control import (
    RECOMMENDATION_APPLIED,
    ConfigState,
    ControlEvent,
    Recommendation,
    fold_config,
    recommendation_states,
)
from service.domain.report import METRIC_KEYS as REPORT_FIGURES
from service.service_layer.live_config import LiveConfig
from service.service_layer.ports import Telemetry
from service.service_layer.trend_job import trend_limits

log = logging.getLogger(__name__)


def emit_targets(telemetry: Telemetry, config: LiveConfig, spool_max_bytes: int) -> None:
    """``analysis_targets``: the limits of the config live now, from
    ``trend_limits`` (the trends job's, so the two never disagree)."""
    limits = trend_limits(config.values, spool_max_bytes)
    telemetry.emit("analysis_targets", (), {
        "level": config.level,
        "delivery_p99_ms": limits["delivery_p99_ms"],
        "connections": limits["connections"],
        "rss_bytes": limits["rss_bytes"],
    })


def evidence_text(evidence: Mapping[str, Any]) -> str:
    """``cpu_node_max=0.72, mean_batch=3.1``: the figures a rule fired on."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, int | float) else f"{k}={v}"
                     for k, v in evidence.items())


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def proposed_change(issued: Mapping[str, Any], level: str, values: Mapping[str, Any]) -> str:
    """``batch_timeout_ms 50 -> 75`` (or ``level balanced -> aggressive``):
    from the value live now to the one the recommendation carries."""
    parts = [f"level {level} -> {issued['level']}"] if "level" in issued else []
    parameters = issued.get("parameters")
    if isinstance(parameters, Mapping):
        parts += [f"{name} {_shown(values.get(name, '?'))} -> {_shown(to)}"
                  for name, to in parameters.items()]
    return "; ".join(parts) or "no change"


def apply_command(service_url: str, recommendation_id: str) -> str:
    """The exact command that applies it (the id escaped for the path)."""
    path = quote(recommendation_id, safe=":=,")
    return (f'curl -X POST -H "Authorization: Bearer $ADMIN_TOKEN" '
            f"{service_url.rstrip('/')}/api/v1/recommendations/{path}/apply")


def open_by_rule(states: Mapping[str, Recommendation]) -> dict[str, Recommendation]:
    """The open recommendation of each rule (issued, not decided). The advice
    job leaves at most one per rule; of a log from before it did, the newest."""
    found: dict[str, Recommendation] = {}
    for state in states.values():
        rule = state.issued.get("rule")
        if state.status != "issued" or state.issued_at is None or not rule:
            continue
        kept = found.get(rule)
        if kept is not None:
            log.warning("recommendations %s and %s of rule %s are both open",
                        kept.id, state.id, rule)
        if kept is None or kept.issued_at is None or state.issued_at >= kept.issued_at:
            found[rule] = state
    return found


def emit_open_recommendations(telemetry: Telemetry, config: LiveConfig,
                              service_url: str) -> int:
    """One ``analysis_recommendation`` point per open recommendation, in one
    step (no yield: the points are of one moment); returns how many."""
    states = recommendation_states(config.events())
    level, values = config.level, config.values
    points = [(rule, {"id": r.id,
                      "change": proposed_change(r.issued, level, values),
                      "evidence": evidence_text(r.issued.get("evidence") or {}),
                      "expected": str(r.issued.get("expected_effect") or ""),
                      "apply": apply_command(service_url, r.id)})
              for rule, r in open_by_rule(states).items()]
    for rule, fields in points:
        telemetry.emit("analysis_recommendation", (("rule", rule),), fields)
    return len(points)


def config_diff(before: ConfigState, after: ConfigState) -> str:
    """What a change did to the effective config: ``level a -> b; name x -> y``."""
    parts = [f"level {before.level} -> {after.level}"] if before.level != after.level else []
    parts += [f"{name} {_shown(before.values.get(name))} -> {_shown(value)}"
              for name, value in after.values.items() if before.values.get(name) != value]
    return "; ".join(parts)


def configs_around(events: Sequence[ControlEvent], change: ControlEvent,
                   config: LiveConfig) -> tuple[ConfigState, ConfigState]:
    """The config in force just before ``change`` and just after it (on the
    jobs' start-up settings)."""
    earlier = [e for e in events if e.seq < change.seq]
    before, after = (fold_config(folded, config.startup, config.default_level)
                     for folded in (earlier, [*earlier, change]))
    return before, after


def change_text(events: Sequence[ControlEvent], change: ControlEvent,
                config: LiveConfig) -> str:
    """``#12 batch_timeout_ms 50 -> 75``: the change's seq and its effect on
    the config."""
    diff = config_diff(*configs_around(events, change, config))
    return f"#{change.seq} {diff or 'no effective change'}"


def emit_impact(telemetry: Telemetry, events: Sequence[ControlEvent], change: ControlEvent,
                config: LiveConfig, verdict: str, signs: Sequence[str],
                effect: Mapping[str, Mapping[str, float | None]], rolled_back: bool) -> None:
    """``analysis_impact`` for one measured change; a figure not known (no
    telemetry in its window, or not measured) is left out."""
    recommendation = (change.payload.get("id") if change.type == RECOMMENDATION_APPLIED
                      else None)
    fields: dict[str, Any] = {"recommendation": str(recommendation or ""),
                              "change": change_text(events, change, config),
                              "text": "; ".join(signs), "rolled_back": int(rolled_back)}
    for figure in REPORT_FIGURES:
        for side in ("before", "after"):
            value = (effect.get(figure) or {}).get(side)
            if value is not None:
                fields[f"{figure}_{side}"] = float(value)
    telemetry.emit("analysis_impact", (("verdict", verdict),), fields)
