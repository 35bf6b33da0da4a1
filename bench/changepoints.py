"""Change points: our detector (service/domain/changepoints.py) against Apache
Otava on the same generated series, in the same run.

Every series is latency-like: a level near 100 times lognormal noise with a
coefficient of variation of 5, 10 or 15 % (drawn per series), 2,000 points
("5-minute rollups", a period of 288 points = one day). Seeded, so every run
sees the same series. Per scenario (``SCENARIOS``):

- steps of 5, 10, 20 or 50 %, up or down (drawn), 2 per series, at least
  300 points apart and 150 from the ends;
- the same on a multiplicative daily cycle of +-20-40 % (two harmonics);
- the same with 6 single spikes of x2-x6;
- one 20 % step 30 points before the end (what a job sees soon after it);
- null series: noise only, cycle only, spikes only, cycle and spikes, and a
  steady trend (+20-50 % or -10-25 % over the series, as a leak or a decay).

Detectors:
- ``ours``: ``detect(values, period=288)`` with its defaults. A job knows
  its rollup interval, so it passes the period for every series, cycle or not.
- ``otava``: ``otava.analysis.compute_change_points(values)`` of
  apache-otava 0.8.0 with its defaults, the same as ``otava analyze``'s:
  window_len=50, max_pvalue=0.001, min_magnitude=0.0 (E-divisive means on
  sliding windows, then the merge step with a two-sided t-test). It has no
  notion of a period.
- ``otava_min_magnitude_5pct``: Otava with ``min_magnitude=0.05``, the
  same minimum change as ours, to see how much of the gap that closes.
- ``ours_without_period``: ours with ``period=None`` (it then guesses the
  period from the data), for what happens when the caller does not know it.

Scoring: a detection is a hit if it lies within ``--tolerance`` (5) points
of a true change point not already matched (closest pairs first); other
detections are false positives, unmatched true change points are misses.
precision, recall and f1 pool every series; ``*_without_cycle`` pools
the scenarios without a daily cycle, which Otava has no way to model.
``null_false_positives`` counts detections on null series (any is false).
``mean_delay_points`` is the mean of detected index - true index over hits.
``ms_per_1000_points`` is each detector's CPU time per 1,000 points.

Then how soon a 10 % step is seen (``points_after_10pct_step``): 1,000
points of noise (CV 5, 10 or 15 %) with a 10 % step k points before the end,
k = 6 ... 300, 20 seeds each (up for even seeds, down for odd). Found: a
detection within 20 points of the step. The figure is the smallest k from
which it is found in at least 90 % of the seeds (18 of 20) at every k tested,
or null; ``found_after_10pct_step`` gives the counts at each k.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

from service.domain.changepoints import detect

SCENARIOS = {
    # name: (step size, steps, cycle, spikes, late step, trend)
    "steps_5pct": (0.05, 2, False, 0, False, False),
    "steps_10pct": (0.10, 2, False, 0, False, False),
    "steps_20pct": (0.20, 2, False, 0, False, False),
    "steps_50pct": (0.50, 2, False, 0, False, False),
    "cycle_steps_10pct": (0.10, 2, True, 0, False, False),
    "cycle_steps_20pct": (0.20, 2, True, 0, False, False),
    "spikes_steps_10pct": (0.10, 2, False, 6, False, False),
    "spikes_steps_20pct": (0.20, 2, False, 6, False, False),
    "late_step_20pct": (0.20, 1, False, 0, True, False),
    "null_noise": (0.0, 0, False, 0, False, False),
    "null_cycle": (0.0, 0, True, 0, False, False),
    "null_spikes": (0.0, 0, False, 6, False, False),
    "null_cycle_spikes": (0.0, 0, True, 6, False, False),
    "null_trend": (0.0, 0, False, 0, False, True),
}
DETECTORS = ("ours", "otava", "otava_min_magnitude_5pct", "ours_without_period")
AFTER_STEP = (6, 10, 15, 20, 30, 40, 60, 80, 120, 150, 200, 300)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_series(scenario: str, seed: int, n: int, period: int) -> tuple[list[float], list[int]]:
    """(values, true change points) of one seeded series."""
    size, steps, cycle, spikes, late, trend = SCENARIOS[scenario]
    rng = random.Random(f"{scenario}/{seed}")
    cv = rng.choice((0.05, 0.10, 0.15))
    s = math.sqrt(math.log(1 + cv * cv))
    if late:
        truth = [n - 30]
    else:
        truth = []
        while len(truth) < steps:
            t = rng.randrange(150, n - 150)
            if all(abs(t - o) >= 300 for o in truth):
                truth.append(t)
        truth.sort()
    level = [100.0] * n
    for t in truth:
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
    values = [lv * rng.lognormvariate(-s * s / 2, s) for lv in level]
    placed = 0
    while placed < spikes:
        i = rng.randrange(n)
        if all(abs(i - t) > 2 for t in truth):
            values[i] *= rng.uniform(2, 6)
            placed += 1
    return values, truth


def run_otava(values: list[float], _period: int, min_magnitude: float = 0.0) -> list[int]:
    from otava.analysis import compute_change_points

    points, _weak = compute_change_points(values, window_len=50, max_pvalue=0.001,
                                          min_magnitude=min_magnitude)
    return [int(p.index) for p in points]


def run_otava_5pct(values: list[float], period: int) -> list[int]:
    return run_otava(values, period, min_magnitude=0.05)


def run_ours(values: list[float], period: int) -> list[int]:
    return [p.index for p in detect(values, period=period)]


def run_ours_without_period(values: list[float], _period: int) -> list[int]:
    return [p.index for p in detect(values)]


RUNNERS = {"ours": run_ours, "otava": run_otava, "otava_min_magnitude_5pct": run_otava_5pct,
           "ours_without_period": run_ours_without_period}


def match(detected: list[int], truth: list[int], tolerance: int) -> list[tuple[int, int]]:
    """(detected, true) hits, closest pairs first, each point used once."""
    pairs = sorted((abs(d - t), d, t) for d in detected for t in truth if abs(d - t) <= tolerance)
    used_d, used_t, hits = set(), set(), []
    for _dist, d, t in pairs:
        if d not in used_d and t not in used_t:
            used_d.add(d)
            used_t.add(t)
            hits.append((d, t))
    return hits


class Score:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.null_fp = self.null_series = self.points = 0
        self.delays: list[int] = []
        self.cpu_s = 0.0

    def add(self, detected: list[int], truth: list[int], tolerance: int) -> None:
        hits = match(detected, truth, tolerance)
        self.tp += len(hits)
        self.fp += len(detected) - len(hits)
        self.fn += len(truth) - len(hits)
        self.delays += [d - t for d, t in hits]
        if not truth:
            self.null_series += 1
            self.null_fp += len(detected)

    def summary(self) -> dict:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out = {"f1": round(f1, 3), "precision": round(precision, 3), "recall": round(recall, 3),
               "tp": self.tp, "fp": self.fp, "fn": self.fn}
        if self.null_series:
            out["null_false_positives"] = self.null_fp
            out["null_false_positives_per_series"] = round(self.null_fp / self.null_series, 3)
        if self.delays:
            out["mean_delay_points"] = round(sum(self.delays) / len(self.delays), 2)
            out["mean_abs_delay_points"] = round(
                sum(abs(d) for d in self.delays) / len(self.delays), 2)
        if self.points:
            out["ms_per_1000_points"] = round(1000 * self.cpu_s / self.points * 1000, 3)
        return out


def points_after_step(name: str, tolerance: int,
                      seeds: int = 20) -> tuple[dict[str, int | None], dict[str, dict]]:
    """Per CV: the fewest points after a 10 % step from which 90 % of the
    seeds find it at every k tested, and how many seeds find it at each k."""
    needed: dict[str, int | None] = {}
    rates: dict[str, dict] = {}
    for cv in (0.05, 0.10, 0.15):
        s = math.sqrt(math.log(1 + cv * cv))
        key, found = f"cv_{round(cv * 100)}pct", {}
        for k in AFTER_STEP:
            found[k] = 0
            for seed in range(seeds):
                rng = random.Random(f"after/{cv}/{k}/{seed}")
                step = 1.1 if seed % 2 == 0 else 0.9
                values = [(step if i >= 1000 - k else 1.0) * 100 * rng.lognormvariate(-s * s / 2, s)
                          for i in range(1000)]
                found[k] += any(abs(d - (1000 - k)) <= tolerance
                                for d in RUNNERS[name](values, 288))
        good = [k for k in AFTER_STEP if all(found[j] >= 0.9 * seeds for j in AFTER_STEP if j >= k)]
        needed[key] = good[0] if good else None
        rates[key] = {str(k): f"{found[k]}/{seeds}" for k in AFTER_STEP}
    return needed, rates


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench changepoints")
    parser.add_argument("--seeds", type=int, default=30, help="series per scenario")
    parser.add_argument("--points", type=int, default=2000, help="points per series")
    parser.add_argument("--period", type=int, default=288, help="points per daily cycle")
    parser.add_argument("--tolerance", type=int, default=5, help="hit distance, in points")
    args = parser.parse_args(argv)
    try:
        import otava.analysis
    except ImportError:
        raise SystemExit("apache-otava is not installed: .venv/bin/pip install "
                         "-r requirements-bench.lock (make bench does)") from None

    totals = {name: Score() for name in DETECTORS}
    acyclic = {name: Score() for name in DETECTORS}  # the scenarios without a daily cycle
    per_scenario: dict[str, dict] = {}
    for scenario in SCENARIOS:
        scores = {name: Score() for name in DETECTORS}
        for seed in range(args.seeds):
            values, truth = make_series(scenario, seed, args.points, args.period)
            for name in DETECTORS:
                started = time.process_time()
                detected = RUNNERS[name](values, args.period)
                elapsed = time.process_time() - started
                wholes = (scores[name], totals[name])
                for score in wholes + ((acyclic[name],) if not SCENARIOS[scenario][2] else ()):
                    score.add(detected, truth, args.tolerance)
                    score.cpu_s += elapsed
                    score.points += len(values)
        per_scenario[scenario] = {name: scores[name].summary() for name in DETECTORS}
        log(f"changepoints: {scenario:20} " + "  ".join(
            f"{name} f1 {s['f1']:.2f} fp {s['fp']:3}"
            for name, s in per_scenario[scenario].items()))
    after, found_after = {}, {}
    for name in ("ours", "otava"):
        after[name], found_after[name] = points_after_step(name, tolerance=20)
        log(f"changepoints: points after a 10% step to find it, {name}: {after[name]}; "
            f"found in: {found_after[name]}")
    ours, otava = totals["ours"].summary(), totals["otava"].summary()
    keys = ("f1", "precision", "recall", "null_false_positives", "mean_delay_points",
            "mean_abs_delay_points", "ms_per_1000_points")
    return {
        **{key: ours.get(key) for key in keys},
        **{f"otava_{key}": otava.get(key) for key in keys},
        "null_false_positives_per_series": ours.get("null_false_positives_per_series"),
        "otava_null_false_positives_per_series": otava.get("null_false_positives_per_series"),
        "ours": ours,
        "otava": otava,
        "f1_without_cycle": acyclic["ours"].summary()["f1"],
        "otava_f1_without_cycle": acyclic["otava"].summary()["f1"],
        "without_cycle": {name: acyclic[name].summary() for name in DETECTORS},
        "points_after_10pct_step": after["ours"],
        "otava_points_after_10pct_step": after["otava"],
        "found_after_10pct_step": found_after,
        "otava_min_magnitude_5pct": totals["otava_min_magnitude_5pct"].summary(),
        "ours_without_period": totals["ours_without_period"].summary(),
        "by_scenario": per_scenario,
        "targets": {"f1": "> otava_f1"},
        "notes": (f"{len(SCENARIOS)} scenarios x {args.seeds} seeded series of {args.points} "
                  f"points (period {args.period}); hit = within +-{args.tolerance} points; "
                  "otava = apache-otava 0.8.0 compute_change_points(window_len=50, "
                  "max_pvalue=0.001, min_magnitude=0.0); ours = detect(period=...) defaults"),
    }
