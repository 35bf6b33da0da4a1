"""Generated change-free series of many shapes, seeded, at 1-minute steps:
any change point reported on them is a false alarm. Levels near 100, noise
of 5 % unless said otherwise; cycles are multiplicative sines of +-15 %."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

DAY = 1440


def _noise(rng: random.Random, n: int, phi: float = 0.0, kind: str = "gauss") -> list[float]:
    """Unit-variance noise: Gaussian AR(1) ``phi``, Student t3 or lognormal."""
    out, prev = [], 0.0
    for _ in range(n):
        if kind == "t3":
            e = rng.gauss(0, 1) / math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(3)) / 3)
            e /= math.sqrt(3.0)
        elif kind == "lognormal":
            s = math.sqrt(math.log(1 + 0.15 ** 2))
            e = (rng.lognormvariate(-s * s / 2, s) - 1) / 0.15
        else:
            e = rng.gauss(0, 1)
        prev = phi * prev + math.sqrt(1 - phi * phi) * e
        out.append(prev)
    return out


def _series(rng: random.Random, n: int, periods: tuple[int, ...] = (), phi: float = 0.0,
            kind: str = "gauss", cv: float = 0.05, amp: float = 0.15) -> list[float]:
    phases = [rng.uniform(0, 2 * math.pi) for _ in periods]
    noise = _noise(rng, n, phi, kind)
    out = []
    for i in range(n):
        cycle = 1.0
        for p, ph in zip(periods, phases, strict=True):
            cycle *= 1 + amp * math.sin(2 * math.pi * i / p + ph)
        out.append(100.0 * cycle * (1 + cv * noise[i]))
    return out


def _spiky(values: list[float], rng: random.Random, bursts: bool) -> list[float]:
    values = values[:]
    for _ in range(max(1, len(values) // 200)):
        at, width = rng.randrange(len(values) - 8), rng.randint(2, 3) if bursts else 1
        factor = rng.uniform(1.5, 4.0)
        for i in range(at, at + width):
            values[i] *= factor
    return values


def _drift(values: list[float], rng: random.Random) -> list[float]:
    rise, n = rng.uniform(0.2, 0.5) * rng.choice((1, -0.5)), len(values)
    return [v * (1 + rise * i / n) for i, v in enumerate(values)]


Shape = Callable[[random.Random], list[float]]
SHAPES: dict[str, Shape] = {
    "white": lambda r: _series(r, 2000),
    "ar1_0.3": lambda r: _series(r, 2000, phi=0.3),
    "ar1_0.5": lambda r: _series(r, 2000, phi=0.5),
    "ar1_0.7": lambda r: _series(r, 2000, phi=0.7),
    "student_t3": lambda r: _series(r, 2000, kind="t3"),
    "lognormal_cv15": lambda r: _series(r, 2000, kind="lognormal"),
    "period_8": lambda r: _series(r, 2000, (8,)),
    "period_24": lambda r: _series(r, 2000, (24,)),
    "period_60": lambda r: _series(r, 2000, (60,)),
    "period_288": lambda r: _series(r, 3 * 288, (288,)),
    "period_1440_3days": lambda r: _series(r, 3 * DAY, (DAY,)),
    "period_288_under_2_cycles": lambda r: _series(r, 400, (288,)),
    "period_1440_under_2_cycles": lambda r: _series(r, 2000, (DAY,)),
    "periods_60_1440": lambda r: _series(r, 3 * DAY, (60, DAY)),
    "periods_24_288_ar0.5": lambda r: _series(r, 2000, (24, 288), phi=0.5),
    "issue_480_hourly": lambda r: _series(r, 480, (60,)),
    "spikes": lambda r: _spiky(_series(r, 2000), r, bursts=False),
    "bursts": lambda r: _spiky(_series(r, 2000), r, bursts=True),
    "period_60_spikes_ar0.3": lambda r: _spiky(_series(r, 2000, (60,), phi=0.3), r, False),
    "drift": lambda r: _drift(_series(r, 2000), r),
    "drift_ar0.5_period_24": lambda r: _drift(_series(r, 2000, (24,), phi=0.5), r),
}


def null_series(seeds: int, tag: str = "null") -> list[tuple[str, list[float]]]:
    """(shape, values) for each shape and seed; another ``tag``, other series."""
    return [(shape, make(random.Random(f"{tag}/{shape}/{seed}")))
            for shape, make in SHAPES.items() for seed in range(seeds)]


def false_alarms(series: list[tuple[str, list[float]]],
                 detector: Callable[[list[float]], list[int]]) -> dict[str, dict]:
    """Per shape and overall: alarms, points and alarms per 10,000 points."""
    tally: dict[str, list[int]] = {}
    for shape, values in series:
        alarms, points = tally.setdefault(shape, [0, 0]), len(values)
        alarms[0] += len(detector(values))
        alarms[1] += points
    tally["overall"] = [sum(a for a, _p in tally.values()), sum(p for _a, p in tally.values())]
    return {shape: {"alarms": a, "points": p, "per_10k": round(1e4 * a / p, 2)}
            for shape, (a, p) in tally.items()}
