"""Component health from the cluster's recent telemetry. Pure: the inputs are
the window's figures (``InfluxAnalysisReader.health_inputs``) and the live
config's limits; the thresholds are the table ``RULES`` (docs/operations.md
lists the same, and a test checks they agree).

Each component is ``healthy``, ``warning`` or ``critical`` with a reason
that names the figure and its threshold. A component whose figures are all
missing (nothing was reported in the window) is ``healthy`` with the reason
"no data", except delivery and telemetry, whose silence is itself a sign.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.batching import longest_wait_ms

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
MIN_LOOKUPS = 100  # a hit rate of fewer lookups in the window says nothing
LEVEL = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}
COMPONENTS = ("delivery", "connections", "storage", "cache", "telemetry", "scheduler")

Figures = Mapping[str, float | None]
Limits = Mapping[str, float]
P99_MARGIN_MS = 20.0  # over the longest batch wait: sending, and the loop's other work


def p99_target_ms(batch_timeout_ms: float) -> float:
    """The delivery p99 a level is held to: the longest a live entry is meant
    to wait in its batch (``low`` waits twice the timeout by design) plus
    ``P99_MARGIN_MS``. Health, the advice rules and ``analysis_targets`` all
    read it here."""
    return longest_wait_ms(batch_timeout_ms) + P99_MARGIN_MS


@dataclass(frozen=True)
class Rule:
    component: str
    figure: str  # a key of the inputs, or of the derived ratios below
    warning: float
    critical: float
    text: str  # what the figure is, for the reason
    lower_is_worse: bool = False
    # judged only on enough samples: (the inputs' count, at least)
    needs: tuple[str, float] | None = None


RULES: tuple[Rule, ...] = (
    Rule("delivery", "p99_over_target", 1.0, 3.0,
         "delivery p99 / (longest batch wait + 20 ms)"),
    Rule("delivery", "drops_per_s", 0.0, 10.0, "notifications dropped per second"),
    Rule("connections", "connections_share", 0.8, 0.95,
         "the busiest node's connections / max_connections"),
    Rule("connections", "memory_share", 0.8, 0.9,
         "the largest node's RSS / memory budget"),
    Rule("storage", "db_query_ms", 20.0, 100.0, "mean statement time, ms"),
    Rule("cache", "cache_hit_rate", 0.7, 0.5, "query cache hit rate", lower_is_worse=True,
         needs=("cache_lookups", MIN_LOOKUPS)),
    Rule("telemetry", "telemetry_dropped", 0.0, 1000.0, "telemetry records dropped"),
    Rule("telemetry", "spool_share", 0.5, 0.9, "telemetry spool / its bound"),
    Rule("scheduler", "job_errors", 0.0, 3.0, "analysis job runs that failed"),
)

_DERIVED: dict[str, Callable[[Figures, Limits], float | None]] = {
    "p99_over_target": lambda f, lim: _ratio(f.get("delivery_p99_ms"),
                                             p99_target_ms(lim["batch_timeout_ms"])),
    "connections_share": lambda f, lim: _ratio(f.get("connections_node_max"),
                                               lim["max_connections"]),
    "memory_share": lambda f, lim: _ratio(f.get("rss_node_max"),
                                          lim["memory_budget_mb"] * 2**20),
    "spool_share": lambda f, lim: _ratio(f.get("spool_bytes"), lim["spool_max_bytes"]),
}


def _ratio(value: float | None, limit: float) -> float | None:
    return None if value is None or limit <= 0 else value / limit


def figure(name: str, figures: Figures, limits: Limits) -> float | None:
    derive = _DERIVED.get(name)
    return derive(figures, limits) if derive else figures.get(name)


def _grade(rule: Rule, value: float) -> str:
    if rule.lower_is_worse:
        return CRITICAL if value < rule.critical else WARNING if value < rule.warning else HEALTHY
    return CRITICAL if value > rule.critical else WARNING if value > rule.warning else HEALTHY


def assess(figures: Figures, limits: Limits) -> dict[str, dict[str, Any]]:
    """``{component: {status, reason, figures}}`` for every component."""
    out: dict[str, dict[str, Any]] = {}
    for component in COMPONENTS:
        worst, reasons, seen = HEALTHY, [], {}
        for rule in (r for r in RULES if r.component == component):
            value = figure(rule.figure, figures, limits)
            if value is None or (rule.needs is not None
                                 and (figures.get(rule.needs[0]) or 0) < rule.needs[1]):
                continue
            seen[rule.figure] = round(value, 4)
            status = _grade(rule, value)
            if status != HEALTHY:
                bound = rule.critical if status == CRITICAL else rule.warning
                sign = "<" if rule.lower_is_worse else ">"
                reasons.append(f"{rule.text} is {value:.3g} ({sign} {bound:g})")
            if LEVEL[status] > LEVEL[worst]:
                worst = status
        if not seen:
            silent = component == "delivery" and figures.get("published_per_s")
            reason = ("published but nothing delivered" if silent else "no data")
            out[component] = {"status": WARNING if silent else HEALTHY, "reason": reason,
                              "figures": {}}
            continue
        out[component] = {"status": worst,
                          "reason": "; ".join(reasons) or "within thresholds",
                          "figures": seen}
    return out


def overall(components: Mapping[str, Mapping[str, Any]]) -> str:
    return max((c["status"] for c in components.values()), key=LEVEL.__getitem__,
               default=HEALTHY)
