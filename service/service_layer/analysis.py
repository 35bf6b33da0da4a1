"""The analysis jobs that act on the control log: component health,
recommendations, and the measured impact of applied changes with automatic
rollback of a clear regression. Plain functions: the scheduler
(``wiring.jobs_factory``) runs each under a cluster-wide lock.

Every append names the actor ``jobs`` and goes in with the seq the job read
(optimistic concurrency): if the log moved meanwhile, nothing is appended and
the next run decides again on the new state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from service.domain import health
from service.domain.advice import propose
from service.domain.changepoints import ChangePoint
from service.domain.control import (
    IMPACT_MEASURED,
    RECOMMENDATION_DISMISSED,
    RECOMMENDATION_ISSUED,
    ROLLBACK,
    ControlEvent,
    EventDraft,
    Recommendation,
    recommendation_states,
)
from service.domain.errors import ConflictError
from service.domain.impact import REGRESSED, impact_payload, judge
from service.domain.job_settings import JobSettings
from service.domain.report import changes_of, compare, effect_windows
from service.service_layer.analysis_points import (
    configs_around,
    emit_impact,
    emit_open_recommendations,
    emit_targets,
    evidence_text,
)
from service.service_layer.live_config import LiveConfig
from service.service_layer.ports import Telemetry

log = logging.getLogger(__name__)
ACTOR = "jobs"
# the production windows (domain/job_settings.py; a run may shorten them)
HEALTH_WINDOW = JobSettings().health_window
ADVICE_WINDOW = JobSettings().advice_window
IMPACT_SPAN = JobSettings().impact_window  # each side of a change
IMPACT_MIN_AFTER = JobSettings().impact_min_after  # a shorter after-window is too short to judge
IMPACT_HORIZON = timedelta(days=7)  # older changes are not measured any more
REISSUE_AFTER = timedelta(hours=24)  # a decided recommendation may come back after this


class HealthInputs(Protocol):
    def health_inputs(self, start: datetime, end: datetime) -> dict[str, float | None]: ...

    def window_summary(self, start: datetime, end: datetime) -> dict[str, float | None]: ...


def limits(values: Mapping[str, Any], spool_max_bytes: int) -> dict[str, float]:
    return {"batch_timeout_ms": values["batch_timeout_ms"],
            "max_connections": values["max_connections"],
            "memory_budget_mb": values["memory_budget_mb"],
            "spool_max_bytes": spool_max_bytes}


def run_health(reader: HealthInputs, telemetry: Telemetry, config: LiveConfig,
               spool_max_bytes: int, now: datetime | None = None,
               window: timedelta = HEALTH_WINDOW) -> int:
    """Write ``analysis_targets`` (first: a run that finds no data, or cannot
    read any, still says what the targets are), then assess every component
    and write ``analysis_health``; returns how many components."""
    now = now or datetime.now(UTC)
    emit_targets(telemetry, config, spool_max_bytes)
    figures = reader.health_inputs(now - window, now)
    components = health.assess(figures, limits(config.values, spool_max_bytes))
    for name, component in components.items():
        telemetry.emit("analysis_health", (("component", name), ("status", component["status"])),
                       {"level": health.LEVEL[component["status"]],
                        "reason": component["reason"]})
    return len(components)


def run_advice(reader: HealthInputs, config: LiveConfig, now: datetime | None = None,
               window: timedelta = ADVICE_WINDOW) -> int:
    """Issue what the rules propose (once), and leave at most one of the
    jobs' recommendations open per rule: the one it proposes now; when it
    proposes nothing, none if the evidence for them is gone, else the newest.
    Returns the events appended."""
    now = now or datetime.now(UTC)
    figures = reader.health_inputs(now - window, now)
    events = config.events()
    states = recommendation_states(events)
    proposals = propose(figures, {"level": config.level, "parameters": config.values})
    drafts = []
    for proposal in proposals:
        state = states.get(proposal.id)
        decided_long_ago = (state is not None and state.status != "issued"
                            and state.decided_at is not None
                            and now - state.decided_at > REISSUE_AFTER)
        if state is None or decided_long_ago:
            drafts.append(EventDraft(RECOMMENDATION_ISSUED, proposal.payload(), ACTOR,
                                     f"rule {proposal.rule}: "
                                     f"{evidence_text(proposal.evidence)}"))
    # silence (no deliveries in the window) is no evidence of anything
    drafts += _closing(states, {p.rule: p.id for p in proposals},
                       evidence_known=figures.get("delivered_per_s") is not None)
    return _append(config, drafts, events)


def _issue_time(state: Recommendation) -> datetime:
    assert state.issued_at is not None  # only issued ones are sorted by it
    return state.issued_at


def _closing(states: Mapping[str, Recommendation], firing: Mapping[str, str], *,
             evidence_known: bool) -> list[EventDraft]:
    """Dismissals of the jobs' open recommendations that must not stay open:
    one whose rule now proposes another change is superseded (two open ones
    of a rule would contradict each other, and the Overview keys them by
    rule); one whose rule is silent expires once the evidence is known."""
    open_ = sorted((s for s in states.values()
                    if s.status == "issued" and s.issued.get("rule") and s.issued_at),
                   key=_issue_time)
    newest = {s.issued["rule"]: s.id for s in open_}
    drafts = []
    for state in open_:
        rule = state.issued["rule"]
        keep = firing.get(rule) or (None if evidence_known else newest[rule])
        if state.id == keep:
            continue
        reason = (f"superseded: rule {rule} now proposes {keep}" if keep
                  else "expired: the evidence for it is gone")
        drafts.append(EventDraft(RECOMMENDATION_DISMISSED, {"id": state.id}, ACTOR, reason))
    return drafts


def run_recommendations(reader: HealthInputs, config: LiveConfig, telemetry: Telemetry,
                        service_url: str, now: datetime | None = None,
                        window: timedelta = ADVICE_WINDOW) -> int:
    """The recommendations job: ``run_advice``, then one
    ``analysis_recommendation`` point per recommendation open after it (also
    when the advice failed: what is open is still worth showing). Returns the
    events appended and points written."""
    appended = 0
    try:
        appended = run_advice(reader, config, now, window)
    finally:
        written = emit_open_recommendations(telemetry, config, service_url)
    return appended + written


def run_impact(reader: HealthInputs, config: LiveConfig, *, auto_rollback: bool,
               now: datetime | None = None, telemetry: Telemetry | None = None,
               span: timedelta = IMPACT_SPAN, min_after: timedelta = IMPACT_MIN_AFTER) -> int:
    """Measure each applied change once its after-window (``span``) has passed; roll a
    clear regression back when it is still the latest change; one
    ``analysis_impact`` point per measurement appended. Returns the events
    appended."""
    now = now or datetime.now(UTC)
    events = config.events()
    changes = changes_of(events)
    measured = {e.payload["seq"] for e in events if e.type == IMPACT_MEASURED}
    states = recommendation_states(events)
    appended = 0
    for index, change in enumerate(changes):
        if change.seq in measured or now - change.at > IMPACT_HORIZON:
            continue
        before, after = effect_windows(changes, index, span, now)
        latest = index == len(changes) - 1
        if latest and after.end - after.start < span:
            continue  # not over yet
        if after.end - after.start < min_after:
            verdict, signs, effect = "inconclusive", ["the next change came too soon"], {}
        else:
            summary_before = reader.window_summary(before.start, before.end)
            summary_after = reader.window_summary(after.start, after.end)
            verdict, signs = judge(summary_before, summary_after,
                                   p99_allowance(events, change, config))
            effect = compare(summary_before, summary_after)
        roll_back = (auto_rollback and verdict == REGRESSED and latest
                     and change.type != ROLLBACK)
        drafts = [EventDraft(IMPACT_MEASURED, impact_payload(
            change.seq, verdict, signs, effect, _expected(change, states), roll_back),
            ACTOR, f"measured {span.total_seconds() / 60:g} min each side of #"
                   f"{change.seq}")]
        if roll_back:
            drafts.append(EventDraft(ROLLBACK, {"to_seq": change.seq - 1}, ACTOR,
                                     f"auto-rollback of #{change.seq}: " + "; ".join(signs)))
            log.warning("auto-rollback of control event #%d: %s", change.seq, "; ".join(signs))
        written = _append(config, drafts, events)
        if not written:
            break  # the log moved: the next run sees the new state
        if telemetry is not None:
            emit_impact(telemetry, events, change, config, verdict, signs, effect, roll_back)
        appended += written
        events = config.events()
    return appended


def p99_allowance(events: list[ControlEvent], change: ControlEvent,
                  config: LiveConfig) -> float:
    """How far ``change`` moved the p99 target (ms; 0 if it lowered it)."""
    before, after = configs_around(events, change, config)
    return max(0.0, health.p99_target_ms(after.values["batch_timeout_ms"])
               - health.p99_target_ms(before.values["batch_timeout_ms"]))


def _expected(change: ControlEvent, states: Mapping[str, Any]) -> str | None:
    """What the recommendation behind a change said it would do."""
    rid = change.payload.get("id") if change.type == "recommendation_applied" else None
    state = states.get(rid) if rid else None
    return state.issued.get("expected_effect") if state is not None else None


def _append(config: LiveConfig, drafts: list[EventDraft], seen: list[ControlEvent]) -> int:
    if not drafts:
        return 0
    try:
        config.append(drafts, expected_seq=seen[-1].seq if seen else 0)
    except ConflictError:
        log.info("control log moved during an analysis run; deciding again next run")
        return 0
    return len(drafts)


# -- regressions ---------------------------------------------------------------

# (resolution, lookback, seasonal period in points): minutes for a quick catch,
# hours for slow shifts. Three days of each, so the detector can divide the
# daily cycle out (it needs three cycles): with 3 hours and no period, the
# steep part of a daily cycle alarmed in a quarter of the windows tried.
REGRESSION_SCANS = (("1m", timedelta(days=3), 1440), ("1h", timedelta(days=7), 24))
REGRESSION_METRICS = ("delivery_p99_ms", "delivery_rate", "drop_rate", "cache_hit_rate",
                      "rss_bytes", "db_query_ms")


class Detector(Protocol):
    def __call__(self, values: list[float], *,
                 period: int | None = None) -> list[ChangePoint]: ...


class SeriesSource(Protocol):
    def series(self, metric: str, start: datetime, end: datetime,
               resolution: str = "1m") -> list[tuple[datetime, float]]: ...


def find_regressions(series: SeriesSource, detect: Detector, now: datetime | None = None,
                     ) -> list[dict[str, Any]]:
    """Change points in each key metric's rollups, as ``analysis_regression``
    rows: ``{at, metric, direction, before_mean, after_mean, magnitude_pct,
    text}``, ``at`` the first bucket of the new regime. Rewriting the same
    rows on the next run overwrites them (same time and tags): idempotent."""
    now = now or datetime.now(UTC)
    found: dict[tuple[str, datetime], dict[str, Any]] = {}
    for resolution, lookback, period in REGRESSION_SCANS:
        for metric in REGRESSION_METRICS:
            points = series.series(metric, now - lookback, now, resolution)
            if len(points) < 8:
                continue
            for cp in detect([v for _t, v in points], period=period):
                at = points[cp.index][0]
                before, after = float(cp.before_mean), float(cp.after_mean)
                magnitude = (after - before) / abs(before) * 100.0 if before else 0.0
                if cp.kind == "variance":  # the level held; its noise grew or shrank
                    magnitude = float(cp.magnitude_pct)
                    text = (f"{metric} {'noisier' if cp.direction == 'up' else 'calmer'}: "
                            f"spread {magnitude:+.0f} % (level {before:.4g} -> {after:.4g}), "
                            f"{resolution} rollups")
                elif cp.kind == "slope":  # the trend bent: before/after are where it leads
                    text = (f"{metric} trend bent {cp.direction}: {abs(magnitude):.0f} % off "
                            f"its old course ({before:.4g} -> {after:.4g}), "
                            f"{resolution} rollups")
                else:
                    text = (f"{metric} {cp.direction} {abs(magnitude):.0f} % "
                            f"({before:.4g} -> {after:.4g}), {resolution} rollups")
                found[(metric, at)] = {
                    "at": at, "metric": metric, "direction": cp.direction, "kind": cp.kind,
                    "confidence": float(cp.confidence),
                    "before_mean": before, "after_mean": after,
                    "magnitude_pct": round(magnitude, 2), "text": text}
    return sorted(found.values(), key=lambda r: r["at"])
