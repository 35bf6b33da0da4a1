"""The data behind ``GET /admin/api/performance/trends`` and
``GET /admin/api/performance/optimization-report``: plain dicts, ready for
JSON, and the report as Markdown. InfluxDB is read through ``AnalysisReader``;
the control events come from the caller. Everything is bounded: the number
of changes, regressions and recommendations reported, and each query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.control import ControlEvent, Recommendation, format_at, utc
from service.domain.errors import InvalidInput
from service.domain.measurements import ANALYSIS_METRICS, TREND_WINDOWS
from service.domain.report import (
    METRIC_KEYS,
    METRICS,
    Window,
    change_entry,
    changes_of,
    effect_windows,
    open_recommendations,
    render_markdown,
)
from service.service_layer.ports import AnalysisReader

__all__ = ["optimization_report", "render_markdown", "trends"]

DEFAULT_PERIOD = timedelta(hours=24)
MAX_PERIOD = timedelta(days=366)
TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2262, 1, 1, tzinfo=UTC))
EFFECT_SPAN = timedelta(minutes=15)  # each side of a change
MIN_WINDOW = timedelta(seconds=60)  # shorter: too few samples (process: every 10 s)
MAX_CHANGES = 200
MAX_REGRESSIONS = 200
MAX_RECOMMENDATIONS = 200
P99_NOTE = ("Delivery p99 is the 99th percentile of the per-interval p99 latencies "
            "of live deliveries (one per node and second), not of every notification; "
            "replays, whose latency includes the time a user was away, are left out.")


def _order(values: tuple[str, ...], value: Any) -> int:
    return values.index(value) if value in values else len(values)


def trends(reader: AnalysisReader) -> dict[str, Any]:
    """``{"trends": [...], "count": n}``, by metric then window as the
    catalogue lists them."""
    found = sorted(reader.latest_trends(), key=lambda t: (
        _order(ANALYSIS_METRICS, t.get("metric")), str(t.get("metric")),
        _order(TREND_WINDOWS, t.get("window")), str(t.get("node"))))
    return {"trends": found, "count": len(found)}


def period(since: datetime | None, until: datetime | None,
           now: datetime) -> tuple[datetime, datetime]:
    """[since, until): by default the 24 h up to now; at most 366 days."""
    until = utc(until) if until is not None else now
    since = utc(since) if since is not None else until - DEFAULT_PERIOD
    for name, moment in (("until", until), ("since", since)):
        if not TIME_RANGE[0] <= moment < TIME_RANGE[1]:
            raise InvalidInput(f"{name} must lie in 1970-2261, the times InfluxDB can "
                               "store", field=name)
    if since >= until:
        raise InvalidInput("since must be before until", field="since")
    if until - since > MAX_PERIOD:
        raise InvalidInput(f"the period may be at most {MAX_PERIOD.days} days", field="since")
    return since, until


def optimization_report(events: Iterable[ControlEvent],
                        states: Mapping[str, Recommendation],
                        reader: AnalysisReader,
                        since: datetime | None = None,
                        until: datetime | None = None,
                        *,
                        now: datetime | None = None,
                        max_changes: int = MAX_CHANGES) -> dict[str, Any]:
    """The config changes applied in [since, until) with their measured
    effect, the regressions found in it and the recommendations still open.

    ``events`` is the control log in seq order; pass all of it (or at least
    from the change before ``since``), so the first change's window stops at
    the one before it. ``states`` is ``recommendation_states`` of the log.
    """
    now = utc(now) if now is not None else datetime.now(UTC)
    since, until = period(since, until, now)
    changes = changes_of(events)
    picked = [i for i, e in enumerate(changes) if since <= e.at < until]
    shown = picked[-max_changes:] if max_changes > 0 else []
    measured: dict[Window, dict[str, float | None]] = {}

    def summary(window: Window) -> dict[str, float | None]:
        if window.seconds < MIN_WINDOW.total_seconds():
            return dict.fromkeys(METRIC_KEYS)
        if window not in measured:  # a window between two changes serves both
            measured[window] = reader.window_summary(window.start, window.end)
        return measured[window]

    entries = []
    for index in shown:
        windows = effect_windows(changes, index, EFFECT_SPAN, now)
        entries.append(change_entry(changes[index], windows, summary(windows[0]),
                                    summary(windows[1])))
    found = reader.regressions(since, until, MAX_REGRESSIONS + 1)
    recommendations, open_total = open_recommendations(states, MAX_RECOMMENDATIONS)
    return {
        "period": {"since": format_at(since), "until": format_at(until)},
        "generated_at": format_at(now),
        "window_s": EFFECT_SPAN.total_seconds(),
        "min_window_s": MIN_WINDOW.total_seconds(),
        "p99_note": P99_NOTE,
        "metrics": [{"key": m.key, "label": m.label, "unit": m.unit} for m in METRICS],
        "changes": entries,
        "changes_total": len(picked),
        "changes_truncated": len(shown) < len(picked),
        "regressions": found[-MAX_REGRESSIONS:],
        "regressions_truncated": len(found) > MAX_REGRESSIONS,
        "open_recommendations": recommendations,
        "open_recommendations_total": open_total,
    }
