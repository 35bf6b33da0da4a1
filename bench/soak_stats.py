"""The soak benchmark's arithmetic, its progress line and its summary: no
I/O, tested in tests/unit/test_bench_soak.py."""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.loadgen import percentile

if TYPE_CHECKING:
    from bench.soak import Monitor, Publisher


def lsq_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The slope of the least-squares line through (x, y) points; None with
    fewer than two distinct x."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def rss_growth_mb_per_h(samples: Sequence[tuple[float, float]], warmup_s: float) -> float | None:
    """(seconds, MB) samples -> MB per hour, fitted on those at or after warmup_s."""
    slope = lsq_slope([(t, mb) for t, mb in samples if t >= warmup_s])
    return None if slope is None else round(slope * 3600, 2)


def delivered_ratio(received: int, expected: int) -> float | None:
    return round(received / expected, 5) if expected else None


def merge_hist(into: dict[float, int], delta: dict) -> dict[float, int]:
    """Add a {bucket: count} histogram (JSON keys are strings) into another."""
    for key, count in delta.items():
        into[float(key)] = into.get(float(key), 0) + count
    return into


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def render_progress(label: str, done: float, total: float, fields: Sequence[str],
                    width: int = 24, bar: bool = True) -> str:
    """One status line: a bar (or only the percentage), then the fields."""
    fraction = min(1.0, max(0.0, done / total)) if total else 1.0
    filled = round(fraction * width)
    head = f"[{'#' * filled}{'.' * (width - filled)}] " if bar else ""
    return f"{label} {head}{fraction * 100:3.0f}% | " + " | ".join(fields)



class Tally:
    """The latency histograms the client processes report, merged: the whole
    run, by kind (targeted, broadcast), the last 10 s (for the progress line)
    and each minute of publishing."""

    def __init__(self) -> None:
        self.hist: dict[float, int] = {}
        self.by_kind: dict[str, dict[float, int]] = {"targeted": {}, "broadcast": {}}
        self.recent: deque[dict[float, int]] = deque([{}], maxlen=10)
        self.per_minute: dict[int, dict[float, int]] = {}
        self.t0: float | None = None  # when publishing began (monotonic)

    def add(self, targeted: dict, broadcast: dict) -> None:
        merge_hist(self.by_kind["targeted"], targeted)
        merge_hist(self.by_kind["broadcast"], broadcast)
        for delta in (targeted, broadcast):
            merge_hist(self.hist, delta)
            merge_hist(self.recent[-1], delta)
            if self.t0 is not None and delta:
                minute = int((time.monotonic() - self.t0) // 60)
                merge_hist(self.per_minute.setdefault(minute, {}), delta)

    def recent_p99(self) -> float | None:
        merged: dict[float, int] = {}
        for part in self.recent:
            merge_hist(merged, part)
        return percentile(merged, 0.99)


def summarize(args: argparse.Namespace, monitor: Monitor, publisher: Publisher, final: dict,
              run: dict) -> dict:
    """The benchmark's JSON: what the clients received against what the
    accepted publishes owe them, latencies, RSS slopes, errors and context."""
    expected, hist = sum(publisher.expected.values()), monitor.tally.hist
    rss = {name: {"growth_mb_per_h": rss_growth_mb_per_h(samples, args.warmup),
                  "first_mb": round(samples[0][1], 1) if samples else None,
                  "last_mb": round(samples[-1][1], 1) if samples else None,
                  "samples_fitted": sum(t >= args.warmup for t, _ in samples)}
           for name, samples in monitor.rss.items()}
    growths = [r["growth_mb_per_h"] for r in rss.values() if r["growth_mb_per_h"] is not None]
    errors = {"publish_http": publisher.errors["publish_http"],
              "publish_exception": publisher.errors["publish_exception"],
              "connect": final["connect_errors"], "disconnect": final["disconnects"],
              "duplicate_delivery": final["duplicates"]}
    local = final["received"] - final["received_cross"]
    answers = [round(ms, 1) for ms in sorted(publisher.answer_ms)]
    return {
        "connections": final["connected"],
        "connections_min": monitor.open_min,
        "connections_target": args.connections,
        "delivered_ratio": delivered_ratio(final["received"], expected),
        "delivered": final["received"],
        "expected": expected,
        "delivered_ratio_local": delivered_ratio(local, publisher.expected["local"]),
        "delivered_ratio_cross": delivered_ratio(final["received_cross"],
                                                 publisher.expected["cross"]),
        "p50_ms": percentile(hist, 0.50),
        "p99_ms": percentile(hist, 0.99),
        "max_ms": percentile(hist, 1.0),
        "p99_ms_targeted": percentile(monitor.tally.by_kind["targeted"], 0.99),
        "p99_ms_broadcast": percentile(monitor.tally.by_kind["broadcast"], 0.99),
        "p50_ms_broadcast": percentile(monitor.tally.by_kind["broadcast"], 0.5),
        "p99_ms_by_minute": [percentile(h, 0.99) for _, h in
                             sorted(monitor.tally.per_minute.items())],
        "rss_growth_mb_per_h": max(growths) if growths else None,
        "rss_by_node": rss,
        "errors": errors,
        "errors_total": sum(errors.values()),
        "error_samples": (publisher.samples + [e for c in monitor.clients
                                               for e in c.last.get("errors", {})])[:8],
        "disconnect_reasons": run["reasons"],
        "out_of_order": final["out_of_order"],
        "node_log_errors": {name: len(lines) for name, lines in run["logged"].items()},
        "node_log_samples": [line[:200] for ls in run["logged"].values() for line in ls][:4],
        "node_connections_seen": run["seen"],
        "nodes": len(monitor.nodes),
        "duration_s": round(run["publish_s"], 1),
        "drain_s": round(run["drain_s"], 1),
        "connect_s": round(run["connect_s"], 1),
        "published": sum(publisher.published.values()),
        "published_broadcasts": publisher.published["broadcast"],
        "publish_attempts": publisher.attempts,
        "publish_rate": args.rate,
        "publish_rate_achieved": round(publisher.attempts / run["publish_s"], 1),
        "publish_lag_max_s": round(publisher.lag_max_s, 2),
        "publish_answer_p50_ms": answers[len(answers) // 2] if answers else None,
        "publish_answer_p99_ms": answers[int(len(answers) * 0.99)] if answers else None,
        "cross_node_share": round(publisher.expected["cross"] / expected, 3) if expected else None,
        "cpu_cores": run["cores"],
        "loadgen_procs": run["procs"],
        "loadgen_rss_mb": final["rss_mb"],
        "fd_limit": args.fd_limit,
        "targets": {"delivered_ratio": "== 1", "errors_total": "== 0",
                    "connections": f">= {args.connections}"},
        "notes": (
            f"two `serve` nodes ({args.level}), one scratch PostgreSQL database, Redis channel "
            f"{args.channel}; {args.rate:g} publishes/s to both nodes in turn, each to a random "
            f"user, every {args.broadcast_every}th to all; RSS slope fitted after "
            f"{args.warmup:g} s of publishing; docs/benchmarks.md#soak has the rest"),
    }
