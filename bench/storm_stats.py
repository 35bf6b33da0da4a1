"""The storm benchmark's pure parts: merging the Node processes' results,
one storm's figures, and the summary over rounds, storages and cohorts."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable

from bench.loadgen import Answer, answer_figures, percentile

# What an answer must never carry: a Python exception's own words (the same
# pattern as storm.mjs applies to what its clients receive).
LEAK = re.compile(r'Traceback|Error\(|QueuePool|sqlalchemy|psycopg|OperationalError'
                  r'|Exception|File "')
SUMS = ("clients", "connected", "refused", "delivered", "owed", "missing", "out_of_order",
        "cpu_ms")
COUNTS = ("refusals", "disconnects", "errors")


def add_counts(total: dict, more: dict) -> dict:
    """Add ``more``'s counts into ``total`` (keys as they come: JSON's strings)."""
    for key, count in more.items():
        total[key] = total.get(key, 0) + count
    return total


def merge_done(events: list[dict]) -> dict:
    """storm.mjs "done" lines of processes that opened together, as one:
    counts added, the earliest open and the latest settle (None if any
    process never settled), the per-client connect histograms merged."""
    merged: dict = {key: sum(e.get(key, 0) for e in events) for key in SUMS}
    for key in COUNTS:
        merged[key] = {}
        for e in events:
            add_counts(merged[key], e.get(key, {}))
    hist: dict[float, int] = {}
    for e in events:
        for key, count in e.get("connect_hist", {}).items():
            hist[float(key)] = hist.get(float(key), 0) + count
    merged["connect_hist"] = hist
    merged["leaked_text"] = [t for e in events for t in e.get("leaked_text", [])][:10]
    opened = [e["opened_at_ms"] for e in events if e.get("opened_at_ms") is not None]
    settled = [e.get("settled_at_ms") for e in events]
    merged["opened_at_ms"] = min(opened) if opened else None
    merged["settled_at_ms"] = (None if not settled or None in settled else max(settled))
    return merged


def storm_figures(merged: dict, answers: list[Answer]) -> dict:
    """One storm: connect time from the first open to the last client
    settled, connects per second, and the publish answers sent before that
    moment (during the storm) apart from the tail after it."""
    opened, settled = merged["opened_at_ms"], merged["settled_at_ms"]
    connect_s = None if opened is None or settled is None else (settled - opened) / 1000
    during = [a for a in answers if settled is None or a.sent_ms <= settled]
    leaks = [f"publish {a.status}: {a.text[:200]}" for a in answers if LEAK.search(a.text)]
    return {
        "clients": merged["clients"],
        "connected": merged["connected"],
        "refused": merged["refused"],
        "refusals": merged["refusals"],
        "connect_s": None if connect_s is None else round(connect_s, 2),
        "connect_per_s": (round(merged["connected"] / connect_s) if connect_s else None),
        "connect_p50_ms": percentile(merged["connect_hist"], 0.50),
        "connect_p99_ms": percentile(merged["connect_hist"], 0.99),
        # a dropped SYN (full accept queue) is retried after 1 s: these
        # clients' own count of what the machine-wide ListenOverflows suggests
        "connects_over_1s": sum(n for ms, n in merged["connect_hist"].items() if ms >= 1000),
        "publish_during": answer_figures(during),
        "publish_all": answer_figures(answers),
        "during_ms": [round(a.ms, 1) for a in during],  # kept to pool over rounds
        "delivered": merged["delivered"],
        "owed": merged["owed"],
        "missing": merged["missing"],
        "out_of_order": merged["out_of_order"],
        "disconnects": merged["disconnects"],
        "error_events": merged["errors"],
        "leaked_text": (merged["leaked_text"] + leaks)[:10],
        "clients_cpu_s": round(merged["cpu_ms"] / 1000, 2),
    }


def pooled_ms(runs: Iterable[dict], q: float) -> float | None:
    """A quantile of every run's during-the-storm answer times together."""
    hist: dict[float, int] = {}
    for run in runs:
        for ms in run["during_ms"]:
            hist[ms] = hist.get(ms, 0) + 1
    return percentile(hist, q)


def median_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def ratios(ours: list[dict], peer: list[dict]) -> list[float]:
    """Round by round, ours' connects per second over the peer's; a round
    where either side never settled has no ratio."""
    return [o["connect_per_s"] / p["connect_per_s"] for o, p in zip(ours, peer, strict=True)
            if o["connect_per_s"] and p["connect_per_s"]]


def problems(runs: list[dict]) -> dict:
    """What should be nothing, added over runs; only what was seen."""
    found: dict = {"out_of_order": sum(r["out_of_order"] for r in runs),
                   "missing": sum(r["missing"] for r in runs),
                   "leaked_text": [t for r in runs for t in r["leaked_text"]][:5]}
    for key in ("disconnects", "error_events"):
        found[key] = {}
        for r in runs:
            add_counts(found[key], r[key])
    statuses: dict = {}
    for r in runs:
        add_counts(statuses, r["publish_all"]["status"])
    found["publish_status"] = {k: v for k, v in statuses.items() if k != "202"}
    return {k: v for k, v in found.items() if v}


def summarize_config(key: str, rounds: list[dict[str, dict]]) -> dict:
    """Flat figures for one storage and cohort (``key``, e.g. "sqlite_new")
    from its rounds, each {"ours": figures, "peer": figures}."""
    ours = [r["ours"] for r in rounds]
    peer = [r["peer"] for r in rounds]
    paired = ratios(ours, peer)
    refusals: dict = {}
    for run in ours:
        add_counts(refusals, run["refusals"])
    return {
        f"connect_s_{key}": median_of(r["connect_s"] for r in ours),
        f"connect_per_s_{key}": median_of(r["connect_per_s"] for r in ours),
        f"node_peer_connect_per_s_{key}": median_of(r["connect_per_s"] for r in peer),
        f"connect_ratio_vs_node_{key}": (round(statistics.median(paired), 3)
                                         if paired else None),
        f"connect_ratio_vs_node_{key}_range": ([round(min(paired), 3), round(max(paired), 3)]
                                               if paired else None),
        f"refused_{key}": sum(r["refused"] for r in ours),
        f"connects_over_1s_{key}": {"ours": sum(r["connects_over_1s"] for r in ours),
                                     "peer": sum(r["connects_over_1s"] for r in peer)},
        f"refusals_{key}": refusals or None,
        f"publish_p50_ms_{key}": pooled_ms(ours, 0.50),
        f"publish_p99_ms_{key}": pooled_ms(ours, 0.99),
        f"node_peer_publish_p99_ms_{key}": pooled_ms(peer, 0.99),
        f"delivered_{key}": sum(r["delivered"] for r in ours),
        f"owed_{key}": sum(r["owed"] for r in ours),
        f"missing_{key}": sum(r["missing"] for r in ours),
    }


def per_round(rounds: list[dict[str, dict]]) -> list[dict]:
    """The few figures of each run a reader checks a median against."""
    keys = ("connect_s", "connect_per_s", "connect_p99_ms", "refused", "delivered",
            "missing", "server_cpu_s", "clients_cpu_s", "close_s", "connects_over_1s",
            "listen_overflows")
    return [{side: {k: run.get(k) for k in keys if run.get(k) is not None}
             | {"publish_p99_ms": run["publish_during"]["p99_ms"],
                "publishes": run["publish_during"]["n"]}
             for side, run in r.items()} for r in rounds]


def targets(keys: Iterable[str]) -> dict:
    """The issue's targets, for the configurations that ran."""
    found: dict = {}
    for key in keys:
        found[f"connect_ratio_vs_node_{key}"] = ">= 0.5"
        if key.startswith("postgres"):
            # the figures are for 10,000 clients at once, default pool
            found[f"refused_{key}"] = "== 0 (at 10,000 clients)"
            found[f"connect_s_{key}"] = "<= 30 (at 10,000 clients)"
            found[f"publish_p99_ms_{key}"] = "<= 250 (at 10,000 clients)"
    return found
