"""What an applied change did: its measured effect judged against thresholds,
and whether it is a clear regression that may be rolled back. Pure.

The effect is ``report.compare`` of the key metrics over a window before and
after the change (``report.effect_windows``). The verdict:

- ``regressed``: delivery p99 rose by at least 25 % and 10 ms more than the
  change moved the level's p99 target (a longer batch_timeout_ms lets
  entries wait longer by design: that much of a rise was asked for), or drops,
  connections refused for the limit or publishes refused for backpressure
  rose by at least 1/s and to at least twice what they were (deliveries falling
  by a quarter then is named as a further sign; a fall alone is not one:
  there may just be less to send);
- ``improved``: with no regression sign, p99 fell by at least 10 % and
  5 ms, or drops fell by at least half from at least 1/s, or one of the
  figures a recommendation rule promises to move (``advice.PROMISES``) moved
  past its threshold (``PROMISED``);
- ``neutral`` otherwise, and ``inconclusive`` when either window is too
  short or empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.domain.report import METRICS

REGRESSED, IMPROVED, NEUTRAL, INCONCLUSIVE = "regressed", "improved", "neutral", "inconclusive"
VERDICTS = (REGRESSED, IMPROVED, NEUTRAL, INCONCLUSIVE)

Summary = Mapping[str, float | None]

# Rates that must not climb: (key, words); past 1/s and doubled is a regression.
REFUSALS = (("refused_connections_per_s", "connections refused"),
            ("refused_publishes_per_s", "publishes refused"))
# The rules' promised figures, with how far each must move (report.METRICS)
PROMISED = tuple(m for m in METRICS if m.moved is not None)


def _delta(before: float | None, after: float | None) -> tuple[float, float] | None:
    if before is None or after is None:
        return None
    return after - before, ((after - before) / before * 100.0) if before else float("inf")


def judge(before: Summary, after: Summary, p99_allowance_ms: float = 0.0,
          ) -> tuple[str, list[str]]:
    """The verdict and the signs behind it, in words. ``p99_allowance_ms``:
    how far the change itself moved the p99 target (``health.p99_target_ms``
    of its batch_timeout_ms): a rise of p99 within it is what was asked
    for, and only the rise past it counts."""
    if all(v is None for v in before.values()) or all(v is None for v in after.values()):
        return INCONCLUSIVE, ["no telemetry in one of the windows"]
    bad, good = [], []
    p99 = _delta(before.get("delivery_p99_ms"), after.get("delivery_p99_ms"))
    if p99 is not None:
        absolute, pct = p99
        excess = absolute - max(0.0, p99_allowance_ms)
        if excess >= 10.0 and excess >= 0.25 * (before.get("delivery_p99_ms") or 0.0):
            allowed = f", {p99_allowance_ms:.0f} ms of it allowed" if p99_allowance_ms > 0 else ""
            bad.append(f"delivery p99 +{absolute:.0f} ms (+{pct:.0f} %{allowed})")
        elif absolute <= -5.0 and pct <= -10.0:
            good.append(f"delivery p99 {absolute:.0f} ms ({pct:.0f} %)")
    drops_before, drops_after = before.get("drops_per_s") or 0.0, after.get("drops_per_s") or 0.0
    if drops_after - drops_before >= 1.0 and drops_after >= 2 * drops_before:
        bad.append(f"drops {drops_before:.2f}/s -> {drops_after:.2f}/s")
        rate = _delta(before.get("delivered_per_s"), after.get("delivered_per_s"))
        if rate is not None and (before.get("delivered_per_s") or 0) >= 10 and rate[1] <= -25:
            bad.append(f"deliveries {rate[1]:.0f} %")
    elif drops_before >= 1.0 and drops_after <= drops_before / 2:
        good.append(f"drops {drops_before:.2f}/s -> {drops_after:.2f}/s")
    for key, words in REFUSALS:
        b, a = before.get(key) or 0.0, after.get(key) or 0.0
        if a - b >= 1.0 and a >= 2 * b:
            bad.append(f"{words} {b:.2f}/s -> {a:.2f}/s")
    good += _promised(before, after)
    if bad:
        return REGRESSED, bad
    if good:
        return IMPROVED, good
    return NEUTRAL, ["no change past the thresholds"]


def _promised(before: Summary, after: Summary) -> list[str]:
    """The promised figures that moved the right way past their thresholds:
    by ``least`` at least, and by ``share`` of the value before at least."""
    signs = []
    for metric in PROMISED:
        assert metric.moved is not None
        b, a = before.get(metric.key), after.get(metric.key)
        if b is None or a is None:
            continue
        gain = b - a if metric.better == "down" else a - b
        if gain >= metric.moved.least and gain >= metric.moved.share * abs(b):
            signs.append(f"{metric.label} {b:.3g} -> {a:.3g}")
    return signs


def impact_payload(seq: int, verdict: str, signs: list[str], effect: Mapping[str, Any],
                   expected: str | None, rolled_back: bool) -> dict[str, Any]:
    return {"seq": seq, "verdict": verdict, "signs": signs[:10], "effect": dict(effect),
            "expected": expected, "rolled_back": rolled_back}
