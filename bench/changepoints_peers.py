"""Same-run peers of the changepoints benchmark: Apache Otava (apache-otava
0.8.0, requirements-bench.lock), scored on the very series ours is scored on.

- ``otava``: ``otava.analysis.compute_change_points(values)`` with the
  defaults of ``otava analyze``: window_len=50, max_pvalue=0.001,
  min_magnitude=0.0 (E-divisive means on sliding windows, then the merge
  step with a two-sided t-test). It has no notion of a period.
- ``otava_min_magnitude_5pct``: the same with ``min_magnitude=0.05``, the
  smallest change ours reports by default.

Each peer gets the TCPD mean F1, false alarms per 10,000 change-free points
and the ops-like F1 (also without the daily-cycle scenarios: Otava has no
notion of a period), and its CPU seconds for each of the three.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench import changepoints_null, changepoints_ops, changepoints_tcpd

PEERS = {"otava": 0.0, "otava_min_magnitude_5pct": 0.05}  # name: min_magnitude
SHORT = {"otava": "otava", "otava_min_magnitude_5pct": "otava 5%"}
NOTE = ("otava = apache-otava 0.8.0 compute_change_points(window_len=50, max_pvalue=0.001, "
        "min_magnitude=0.0); otava_min_magnitude_5pct = the same with min_magnitude=0.05; "
        "both on the same TCPD, null and ops series as ours, no period given")


def require() -> None:
    try:
        import otava.analysis  # noqa: F401
    except ImportError:
        raise SystemExit("apache-otava is not installed: make .venv/.bench-installed "
                         "(or .venv/bin/pip install -r requirements-bench.lock)") from None


def otava(min_magnitude: float) -> Callable[[list[float]], list[int]]:
    from otava.analysis import compute_change_points

    def run(values: list[float]) -> list[int]:
        points, _weak = compute_change_points(values, window_len=50, max_pvalue=0.001,
                                              min_magnitude=min_magnitude)
        return [int(p.index) for p in points]
    return run


def score(series: dict, nulls: list[tuple[str, list[float]]], ops_seeds: int) -> dict[str, dict]:
    """Per peer: TCPD F1 (mean and per series), false alarms, ops-like F1."""
    out = {}
    for name, min_magnitude in PEERS.items():
        detect = otava(min_magnitude)
        started = time.process_time()
        tcpd = {s: changepoints_tcpd.f1(ann, detect(v)) for s, (v, ann) in series.items()}
        tcpd_s = time.process_time() - started
        alarms = changepoints_null.false_alarms(nulls, detect)
        null_s = time.process_time() - started - tcpd_s
        ops = changepoints_ops.score(lambda v, _p, run=detect: run(v), ops_seeds)
        ops_s = time.process_time() - started - tcpd_s - null_s
        out[name] = {
            "tcpd_f1": round(sum(tcpd.values()) / len(tcpd), 3),
            "false_alarms_per_10k": alarms["overall"]["per_10k"],
            "ops_f1": ops["f1"], "ops_precision": ops["precision"], "ops_recall": ops["recall"],
            "ops_f1_without_cycle": ops["without_cycle"]["f1"],
            "tcpd_per_series": {s: round(f, 3) for s, f in tcpd.items()},
            "false_alarms_by_shape": {k: v["per_10k"] for k, v in alarms.items()},
            "false_alarm_counts": alarms,
            "ops_by_scenario": {k: v["f1"] for k, v in ops["by_scenario"].items()},
            "ops": ops,
            "cpu_seconds": {"tcpd": round(tcpd_s, 1), "null": round(null_s, 1),
                            "ops": round(ops_s, 1)},
        }
    return out


def beside(peers: dict[str, dict], key: str, fmt: str = "{:.3f}") -> str:
    """``otava 0.612, otava 5% 0.640`` for a top-level figure of each peer."""
    return ", ".join(f"{SHORT[n]} {fmt.format(p[key])}" for n, p in peers.items())
