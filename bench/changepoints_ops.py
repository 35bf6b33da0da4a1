"""Labelled ops-like series: latency-like, a level near 100 times lognormal
noise of a coefficient of variation of 5, 10 or 15 % (drawn per series),
2,000 points ("5-minute rollups", a day = 288 points). Seeded. Scenarios:

- steps of 5-50 %, up or down (drawn), 2 per series, at least 300 points
  apart and 150 from the ends; on a daily cycle of +-20-40 % (two
  harmonics); with 6 single spikes of x2-x6; one 20 % step 30 points
  before the end;
- the noise's scale growing x2 or x3 (latency jitter), 2 per series;
- null series: noise only, cycle only, spikes only, cycle and spikes, and a
  steady trend (+20-50 % or -10-25 % over the series).

A detection is a hit within ``tolerance`` (5) points of a true change point
not already matched (closest pairs first); the others are false positives.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

SCENARIOS = {
    # name: (step size, steps, cycle, spikes, late step, trend, jitter factor)
    "steps_5pct": (0.05, 2, False, 0, False, False, 1.0),
    "steps_10pct": (0.10, 2, False, 0, False, False, 1.0),
    "steps_20pct": (0.20, 2, False, 0, False, False, 1.0),
    "steps_50pct": (0.50, 2, False, 0, False, False, 1.0),
    "cycle_steps_10pct": (0.10, 2, True, 0, False, False, 1.0),
    "cycle_steps_20pct": (0.20, 2, True, 0, False, False, 1.0),
    "spikes_steps_10pct": (0.10, 2, False, 6, False, False, 1.0),
    "spikes_steps_20pct": (0.20, 2, False, 6, False, False, 1.0),
    "late_step_20pct": (0.20, 1, False, 0, True, False, 1.0),
    "jitter_x2": (0.0, 2, False, 0, False, False, 2.0),
    "jitter_x3": (0.0, 2, False, 0, False, False, 3.0),
    "cycle_jitter_x3": (0.0, 2, True, 0, False, False, 3.0),
    "null_noise": (0.0, 0, False, 0, False, False, 1.0),
    "null_cycle": (0.0, 0, True, 0, False, False, 1.0),
    "null_spikes": (0.0, 0, False, 6, False, False, 1.0),
    "null_cycle_spikes": (0.0, 0, True, 6, False, False, 1.0),
    "null_trend": (0.0, 0, False, 0, False, True, 1.0),
}


def make_series(scenario: str, seed: int, n: int = 2000,
                period: int = 288) -> tuple[list[float], list[int]]:
    """(values, true change points) of one seeded series."""
    size, steps, cycle, spikes, late, trend, jitter = SCENARIOS[scenario]
    rng = random.Random(f"{scenario}/{seed}")
    cv = rng.choice((0.05, 0.10, 0.15))
    if late:
        truth = [n - 30]
    else:
        truth = []
        while len(truth) < steps:
            t = rng.randrange(150, n - 150)
            if all(abs(t - o) >= 300 for o in truth):
                truth.append(t)
        truth.sort()
    level, spread = [100.0] * n, [1.0] * n
    for k, t in enumerate(truth):
        if jitter > 1:  # noisier from t: x jitter for the first, back for the second
            for i in range(t, n):
                spread[i] = jitter if k % 2 == 0 else 1.0
            continue
        factor = 1 + size if rng.random() < 0.5 else 1 - size
        for i in range(t, n):
            level[i] *= factor
    if trend:  # a steady rise (or fall) of 20-50 % over the series, as a leak
        rise = rng.uniform(0.2, 0.5) * rng.choice((1, -0.5))
        level = [lv * (1 + rise * i / n) for i, lv in enumerate(level)]
    if cycle:
        amp, phase, phase2 = rng.uniform(0.2, 0.4), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
        for i in range(n):
            x = 2 * math.pi * i / period
            level[i] *= 1 + amp * math.sin(x + phase) + 0.3 * amp * math.sin(2 * x + phase2)
    values = []
    for i in range(n):
        s = math.sqrt(math.log(1 + (cv * spread[i]) ** 2))
        values.append(level[i] * rng.lognormvariate(-s * s / 2, s))
    placed = 0
    while placed < spikes:
        i = rng.randrange(n)
        if all(abs(i - t) > 2 for t in truth):
            values[i] *= rng.uniform(2, 6)
            placed += 1
    return values, truth


def match(detected: list[int], truth: list[int], tolerance: int) -> int:
    """Hits: (detected, true) pairs within ``tolerance``, closest first, each used once."""
    pairs = sorted((abs(d - t), d, t) for d in detected for t in truth if abs(d - t) <= tolerance)
    used_d, used_t = set(), set()
    for _dist, d, t in pairs:
        if d not in used_d and t not in used_t:
            used_d.add(d)
            used_t.add(t)
    return len(used_t)


def score(detector: Callable[[list[float], int], list[int]], seeds: int,
          tolerance: int = 5) -> dict:
    """Precision, recall and F1 pooled over every scenario and seed, over the
    scenarios without a daily cycle (``without_cycle``), and per scenario."""
    total, acyclic, per = [0, 0, 0], [0, 0, 0], {}
    for scenario in SCENARIOS:
        tp = fp = fn = 0
        for seed in range(seeds):
            values, truth = make_series(scenario, seed)
            detected = detector(values, 288)
            hits = match(detected, truth, tolerance)
            tp, fp, fn = tp + hits, fp + len(detected) - hits, fn + len(truth) - hits
        per[scenario] = _figures(tp, fp, fn)
        total = [total[0] + tp, total[1] + fp, total[2] + fn]
        if not SCENARIOS[scenario][2]:
            acyclic = [acyclic[0] + tp, acyclic[1] + fp, acyclic[2] + fn]
    return {**_figures(*total), "without_cycle": _figures(*acyclic), "by_scenario": per}


def _figures(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": round(f1, 3), "precision": round(precision, 3), "recall": round(recall, 3),
            "tp": tp, "fp": fp, "fn": fn}
