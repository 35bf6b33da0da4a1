"""The list of benchmarks, and ``all``: each one runs as its own process, so
one benchmark's heap and greenlets never skew the next."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = {
    "telemetry": "bench.telemetry",
    "gc": "bench.gc",
    "fanout": "bench.fanout",
    "connections": "bench.connections",
    "storage": "bench.storage",
    "propagation": "bench.propagation",
    "changepoints": "bench.changepoints",
    "cache_ceiling": "bench.cache_ceiling",
    "storm": "bench.storm",
}
# not in ``all``: minutes long each (soak: 10,000 connections; chaos: faults on
# its own private services; tuning: a node per recommendation rule); run them on
# their own
LONG = {"soak": "bench.soak", "chaos": "bench.chaos", "tuning": "bench.tuning"}
RESULTS = Path(__file__).resolve().parent / "results.json"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m bench {{{'|'.join(BENCHMARKS | LONG)}|all}} [options]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        return run_all(rest)
    if name not in BENCHMARKS | LONG:
        print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS | LONG)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module((BENCHMARKS | LONG)[name])
    result = module.run(rest)
    print(json.dumps(result, sort_keys=True))
    return 0


def run_all(rest: list[str]) -> int:
    results = {}
    for name in BENCHMARKS:
        print(f"==> {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "bench", name, *rest],
                              capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode != 0 or not lines:
            print(f"{name} failed (exit {proc.returncode})", file=sys.stderr)
            results[name] = {"error": proc.returncode}
            continue
        results[name] = json.loads(lines[-1])
        results[name]["wall_s"] = round(time.monotonic() - started, 1)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results))
    print(json.dumps(results, sort_keys=True))
    return 0 if all("error" not in r for r in results.values()) else 1


def table(results: dict) -> str:
    rows = [("benchmark", "metric", "value", "target")]
    for name, result in results.items():
        targets = result.get("targets", {})
        for key, value in result.items():
            if key in ("targets", "notes"):
                continue
            rows.append((name, key, _fmt(value), str(targets.get(key, ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
