"""How often the analysis jobs run and which windows they look at, from
configuration (JOB_INTERVALS, HEALTH_WINDOW_S, ADVICE_WINDOW_S,
IMPACT_WINDOW_S). Pure: ``service.config`` reads the variables and turns a
``ValueError`` from here into a ``ConfigError``.

The defaults are the production ones (docs/operations.md, "Analysis jobs");
shorter ones let a test or ``bench tuning`` watch the whole loop in minutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from service.domain.job_names import JOB_NAMES

DEFAULT_INTERVALS: Mapping[str, float] = {
    "rollups": 60.0, "trends": 300.0, "regressions": 300.0,
    "health": 60.0, "recommendations": 300.0, "impact": 60.0,
}
assert set(DEFAULT_INTERVALS) == set(JOB_NAMES)
MIN_INTERVAL_S = 1.0  # a job every second or less would only load InfluxDB
MAX_INTERVAL_S = 86_400.0
MIN_WINDOW_S = 10.0  # below a few telemetry flushes a window holds almost nothing
MAX_WINDOW_S = 7 * 86_400.0


@dataclass(frozen=True)
class JobSettings:
    """Each job's interval in seconds, and the analysis windows: health
    judges the last ``health_window``, the recommendation rules read the last
    ``advice_window``, the impact job measures ``impact_window`` each side of
    a change (once it has passed) and calls an after-window shorter than a
    third of it (cut short by the next change) too short to judge."""

    intervals: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_INTERVALS))
    health_window: timedelta = timedelta(minutes=5)
    advice_window: timedelta = timedelta(minutes=30)
    impact_window: timedelta = timedelta(minutes=15)

    @property
    def impact_min_after(self) -> timedelta:
        return self.impact_window / 3

    def interval(self, job: str) -> float:
        return self.intervals[job]


def parse_intervals(raw: str) -> dict[str, float]:
    """JOB_INTERVALS: ``name=seconds`` pairs, comma-separated, e.g.
    ``health=5,recommendations=10``; jobs not named keep their default. An
    unknown name, a repeated one or a number out of range raises
    ``ValueError`` naming it."""
    intervals = dict(DEFAULT_INTERVALS)
    seen: set[str] = set()
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or name not in DEFAULT_INTERVALS:
            raise ValueError(f"JOB_INTERVALS: {pair[:40]!r} is not job=seconds with a job of "
                             f"{', '.join(DEFAULT_INTERVALS)}")
        if name in seen:
            raise ValueError(f"JOB_INTERVALS: {name} is given twice")
        seen.add(name)
        intervals[name] = _seconds(f"JOB_INTERVALS: {name}", value, MIN_INTERVAL_S,
                                   MAX_INTERVAL_S)
    return intervals


def parse_window(variable: str, raw: str | None, default: timedelta) -> timedelta:
    """A window in seconds (HEALTH_WINDOW_S, ADVICE_WINDOW_S, IMPACT_WINDOW_S);
    unset or empty: ``default``."""
    if raw is None or raw.strip() == "":
        return default
    return timedelta(seconds=_seconds(variable, raw.strip(), MIN_WINDOW_S, MAX_WINDOW_S))


def _seconds(what: str, value: str, minimum: float, maximum: float) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number of seconds, not {value[:40]!r}") from None
    if not math.isfinite(seconds) or not minimum <= seconds <= maximum:
        raise ValueError(f"{what} must be {minimum:g}-{maximum:g} seconds, not {value[:40]}")
    return seconds


def job_settings_from(env: Mapping[str, str]) -> JobSettings:
    """The jobs' settings from these variables (``ValueError`` on a bad one)."""
    defaults = JobSettings()
    return JobSettings(
        intervals=parse_intervals(env.get("JOB_INTERVALS", "")),
        health_window=parse_window("HEALTH_WINDOW_S", env.get("HEALTH_WINDOW_S"),
                                   defaults.health_window),
        advice_window=parse_window("ADVICE_WINDOW_S", env.get("ADVICE_WINDOW_S"),
                                   defaults.advice_window),
        impact_window=parse_window("IMPACT_WINDOW_S", env.get("IMPACT_WINDOW_S"),
                                   defaults.impact_window),
    )
