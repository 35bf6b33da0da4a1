"""The optimization report, pure: which config changes fall in a period, the
windows before and after each in which its effect is measured, the relative
change of each key metric, and the report rendered as Markdown. No I/O: the
measurements come in as plain dicts (``service_layer.reports`` reads them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.domain.control import (
    LEVEL_SET,
    PARAMETER_OVERRIDDEN,
    RECOMMENDATION_APPLIED,
    ROLLBACK,
    ControlEvent,
    Recommendation,
    describe,
    format_at,
)

CHANGE_TYPES = (LEVEL_SET, PARAMETER_OVERRIDDEN, RECOMMENDATION_APPLIED, ROLLBACK)


@dataclass(frozen=True)
class Moved:
    """How far a figure a rule promises to move must move for the impact
    judge to count it (service.domain.impact): by ``least`` at least, and by
    ``share`` of its value before at least."""

    least: float
    share: float


@dataclass(frozen=True)
class Metric:
    key: str  # in a window summary
    label: str
    unit: str  # of the JSON value
    shown_unit: str = ""  # in Markdown, after multiplying by ``scale``
    scale: float = 1.0
    digits: int = 1
    better: str = ""  # "up" or "down": which way is better, for a figure a rule moves
    moved: Moved | None = None  # a promised move the impact judge counts as a sign


METRICS = (
    Metric("delivered_per_s", "delivered", "1/s", "/s"),
    Metric("delivery_p99_ms", "delivery p99", "ms", "ms", better="down"),
    Metric("drops_per_s", "dropped", "1/s", "/s", digits=3),
    Metric("cache_hit_rate", "cache hit rate", "ratio 0-1", "%", 100.0, better="up",
           moved=Moved(0.05, 0.0)),
    Metric("rss_bytes", "RSS, serving nodes", "bytes", "MiB", 1 / 2**20),
    # what the lever rules (domain.advice_levers) promise to move
    Metric("refused_connections_per_s", "connections refused (limit)", "1/s", "/s", digits=3,
           better="down", moved=Moved(0.1, 0.5)),
    Metric("refused_publishes_per_s", "publishes refused (backpressure)", "1/s", "/s",
           digits=3, better="down", moved=Moved(0.1, 0.5)),
    Metric("pool_waiting", "database checkouts waiting (mean)", "s/s", digits=3,
           better="down", moved=Moved(0.05, 0.3)),
    Metric("wire_ratio", "bytes on the wire / JSON bytes", "ratio 0-1", "%", 100.0,
           better="down", moved=Moved(0.05, 0.1)),
    Metric("slow_consumer_drops_per_s", "dropped, slow consumers", "1/s", "/s", digits=3,
           better="down", moved=Moved(0.1, 0.5)),
)
METRIC_KEYS = tuple(m.key for m in METRICS)
METRIC = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {"start": format_at(self.start), "end": format_at(self.end),
                "seconds": self.seconds}


def changes_of(events: Iterable[ControlEvent]) -> list[ControlEvent]:
    """The events that change the config, in seq order."""
    return [e for e in events if e.type in CHANGE_TYPES]


def effect_windows(changes: Sequence[ControlEvent], index: int, span: timedelta,
                   now: datetime) -> tuple[Window, Window]:
    """``span`` before and after ``changes[index]``, each clipped to the
    neighbouring change (so a window sees one config only) and to ``now``."""
    at = changes[index].at
    start = at - span
    if index > 0:
        start = max(start, changes[index - 1].at)
    end = min(at + span, now)
    if index + 1 < len(changes):
        end = min(end, changes[index + 1].at)
    return Window(min(start, at), at), Window(at, max(end, at))


def relative_change(before: float | None, after: float | None) -> float | None:
    """(after - before) / |before| in %, or None without both or from 0."""
    if before is None or after is None or before == 0:
        return None
    return (after - before) / abs(before) * 100.0


def compare(before: Mapping[str, float | None],
            after: Mapping[str, float | None]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for key in METRIC_KEYS:
        b, a = before.get(key), after.get(key)
        delta = relative_change(b, a)
        out[key] = {"before": b, "after": a,
                    "delta_pct": None if delta is None else round(delta, 2)}
    return out


def change_entry(event: ControlEvent, windows: tuple[Window, Window],
                 before: Mapping[str, float | None],
                 after: Mapping[str, float | None]) -> dict[str, Any]:
    return {
        "seq": event.seq, "at": format_at(event.at), "type": event.type,
        "actor": event.actor, "reason": event.reason, "what": describe(event),
        "payload": dict(event.payload),
        "windows": {"before": windows[0].as_dict(), "after": windows[1].as_dict()},
        "effect": compare(before, after),
    }


def open_recommendations(states: Mapping[str, Recommendation],
                         limit: int) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` recommendations still ``issued``, oldest first,
    and how many are open in all."""
    open_ = [r for r in states.values() if r.status == "issued"]
    open_.sort(key=lambda r: (r.issued_at is None, r.issued_at))
    shown = open_[-limit:] if limit > 0 else []
    return [{"id": r.id, "status": r.status,
             "issued_at": format_at(r.issued_at) if r.issued_at else None,
             **{k: v for k, v in r.issued.items() if k != "id"}} for r in shown], len(open_)


# -- Markdown -----------------------------------------------------------------

def _cell(value: Any, limit: int = 120) -> str:
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: float | None, metric: Metric) -> str:
    if value is None:
        return "–"
    return f"{value * metric.scale:,.{metric.digits}f} {metric.shown_unit}".strip()


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f} %"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _change_section(change: Mapping[str, Any]) -> list[str]:
    before, after = change["windows"]["before"], change["windows"]["after"]
    reason = f": {_cell(change['reason'], 300)}" if change.get("reason") else ""
    out = [f"### #{change['seq']} {_cell(change['what'])}", "",
           f"{change['at']} by {_cell(change['actor'])} ({change['type']}){reason}", "",
           f"Measured over {_duration(before['seconds'])} before and "
           f"{_duration(after['seconds'])} after.", "",
           "| metric | before | after | Δ% |", "| --- | ---: | ---: | ---: |"]
    for metric in METRICS:
        effect = change["effect"][metric.key]
        out.append(f"| {metric.label} | {_number(effect['before'], metric)} | "
                   f"{_number(effect['after'], metric)} | {_pct(effect['delta_pct'])} |")
    return out + [""]


def _recommendation_text(rec: Mapping[str, Any]) -> str:
    parts = [f"level -> {rec['level']}"] if rec.get("level") else []
    parameters = rec.get("parameters")
    if isinstance(parameters, Mapping):
        parts += [f"{k}={v}" for k, v in parameters.items()]
    why = next((rec[k] for k in ("summary", "title", "reason", "evidence")
                if isinstance(rec.get(k), str)), "")
    return _cell("; ".join(parts) + (f" ({why})" if why else "") or "–")


def render_markdown(report: Mapping[str, Any]) -> str:
    """A readable report: the period, each change with its measured effect,
    the regressions, the open recommendations; a sentence for an empty one."""
    period = report["period"]
    changes, regressions = report["changes"], report["regressions"]
    out = [f"# Optimization report: {period['since']} to {period['until']}", "",
           f"Each change's effect compares {_duration(report['window_s'])} before it with "
           f"{_duration(report['window_s'])} after it, cut short at the neighbouring "
           "changes and at the report's time; windows under "
           f"{_duration(report['min_window_s'])} are not measured (–). {report['p99_note']}",
           "", f"## Config changes ({report['changes_total']})", ""]
    if not changes:
        out += ["No config changes in this period.", ""]
    elif report["changes_truncated"]:
        out += [f"Showing the newest {len(changes)} of {report['changes_total']} changes.", ""]
    for change in changes:
        out += _change_section(change)
    out += [f"## Regressions ({len(regressions)}{'+' if report['regressions_truncated'] else ''})",
            ""]
    if not regressions:
        out += ["No regressions were found in this period.", ""]
    else:
        if report["regressions_truncated"]:
            out += [f"Showing the newest {len(regressions)}.", ""]
        out += ["| time | metric | direction | before | after | Δ% | note |",
                "| --- | --- | --- | ---: | ---: | ---: | --- |"]
        for r in regressions:
            mean = Metric(r["metric"], "", "", digits=2)
            out.append(f"| {r['at']} | {_cell(r['metric'])} | {_cell(r['direction'])} | "
                       f"{_number(r['before_mean'], mean)} | {_number(r['after_mean'], mean)} | "
                       f"{_pct(r['magnitude_pct'])} | {_cell(r['text'] or '')} |")
        out.append("")
    recommendations = report["open_recommendations"]
    out += [f"## Open recommendations ({report['open_recommendations_total']})", ""]
    if not recommendations:
        out += ["No recommendations are waiting for a decision.", ""]
    else:
        if len(recommendations) < report["open_recommendations_total"]:
            out += [f"Showing the newest {len(recommendations)}.", ""]
        out += ["| id | issued | proposes |", "| --- | --- | --- |"]
        out += [f"| {_cell(r['id'])} | {r['issued_at'] or '–'} | {_recommendation_text(r)} |"
                for r in recommendations]
        out.append("")
    return "\n".join(out)
