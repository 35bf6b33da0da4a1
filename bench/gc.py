"""GC tuning: the same server with Python's collector defaults against the
service's (``GC_GEN0_THRESHOLD`` from the level, ``gc.freeze()`` after
start-up), both at once under the same broadcast load, telemetry on.

Prints: cpu_ratio (tuned CPU / default CPU for the same deliveries; below 1
means the tuning saves CPU), its range over the rounds, and both CPU times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid

from bench.harness import paired_cpu
from service.adapters.influx import InfluxClient, InfluxSettings

DEFAULTS = {"GC_GEN0_THRESHOLD": "700", "GC_FREEZE": "0"}


def measure_rounds(args: argparse.Namespace, env: dict, ratios: list[float],
                   default_cpu: list[float], tuned_cpu: list[float]) -> None:
    for r in range(args.rounds):
        print(f"gc: round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        default, tuned = paired_cpu({**env, **DEFAULTS}, env, args.clients, args.broadcasts)
        default_cpu.append(default)
        tuned_cpu.append(tuned)
        ratios.append(tuned / default)
        print(f"  default {default:.2f} s, tuned {tuned:.2f} s: {ratios[-1]:.3f}",
              file=sys.stderr, flush=True)


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench gc")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--broadcasts", type=int, default=400)
    parser.add_argument("--level", default="balanced")
    args = parser.parse_args(argv)

    url = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
    client = InfluxClient(InfluxSettings(url=url, database=f"bench_{uuid.uuid4().hex[:8]}"))
    level = {"OPTIMIZATION_LEVEL": args.level, "INFLUX_DB": client.settings.database}
    ratios, default_cpu, tuned_cpu = [], [], []
    try:
        measure_rounds(args, level, ratios, default_cpu, tuned_cpu)
    finally:
        client.query(f'DROP DATABASE "{client.settings.database}"', method="POST", db=None)
    return {

        "cpu_ratio": round(statistics.median(ratios), 3),
        "cpu_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "default_cpu_s": round(statistics.median(default_cpu), 2),
        "tuned_cpu_s": round(statistics.median(tuned_cpu), 2),
        "level": args.level,
        "targets": {"cpu_ratio": "< 1"},
        "notes": (f"{args.clients} Node socket.io-client receivers per server, "
                  f"{args.broadcasts} broadcasts; both servers at once; tuned = "
                  "GC_GEN0_THRESHOLD of the level + gc.freeze(), default = 700, no freeze"),
    }
