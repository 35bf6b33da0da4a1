"""The fan-out shaped like the outside harness (part of ``bench fanout``):
1,000 clients connect at once to a server that has just answered /healthz,
and publishing starts the moment the last one has connected, with no
settling: 100 broadcasts, 8 in flight, POSTed from the same Node process
that holds the receivers (clients/js/storm.mjs --publish after). So the
publish answers and the deliveries share one event loop, as there.

ours runs as a user gets it (SQLite, the level's defaults, throttles and
per-address limits on, telemetry on); the peer is clients/js/peer-server.mjs.
Both in the same round, in alternating order, a fresh server each time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Iterator

from bench.harness import ServeProcess
from bench.loadgen import NodePeer, percentile
from bench.storm_procs import StormClients, issue_tokens
from bench.storm_stats import add_counts

SIDES = ("ours", "peer")
TARGETS = {"harness_shape_ratio_vs_node": ">= 2.0"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--harness-rounds", type=int, default=3,
                        help="harness-shaped rounds (ours and the peer); 0: none")
    parser.add_argument("--harness-clients", type=int, default=1000)
    parser.add_argument("--harness-broadcasts", type=int, default=100)
    parser.add_argument("--harness-in-flight", type=int, default=8)
    parser.add_argument("--harness-addresses", type=int, default=0,
                        help="loopback source addresses; 0: every client from 127.0.0.1")


@contextlib.contextmanager
def open_side(side: str, args: argparse.Namespace) -> Iterator[ServeProcess | NodePeer]:
    if side == "peer":
        with NodePeer() as peer:
            yield peer
        return
    env = {"OPTIMIZATION_LEVEL": args.level, "TELEMETRY_ENABLED": "1",
           "INFLUX_DB": args.influx.settings.database}
    with ServeProcess(env, lift_ip_limits=False) as server:  # the defaults, limits and all
        yield server


def measure(side: str, args: argparse.Namespace) -> dict:
    """One run: storm.mjs starts the moment the server is up, and ends once
    nothing has arrived for 3 s after the last answer."""
    tokens = issue_tokens([f"harness{u}" for u in range(args.harness_clients)])
    extra = ("--broadcasts", str(args.harness_broadcasts),
             "--in-flight", str(args.harness_in_flight))
    with open_side(side, args) as server:
        cpu = server.cpu_seconds()
        clients = StormClients(server.url, tokens, publish="after", extra=extra,
                               addresses=args.harness_addresses, timeout_s=args.timeout_s)
        try:
            done = clients.result(timeout=args.timeout_s + 60)
        finally:
            clients.close()
        done["server_cpu_s"] = round(server.cpu_seconds() - cpu, 2)
    return done


def describe(side: str, d: dict) -> str:
    p = d["publish"]
    return (f"  {side:4} harness shape: {d['deliveries_per_s']:>9,} deliveries/s, "
            f"{d['delivered']:,} delivered, missing {d['missing']}/{d['owed']}; "
            f"{d['connected']}/{d['clients']} connected in {d['connect_s']} s, refused "
            f"{d['refused']} {d['refusals'] or ''}; publish p50 {p['p50_ms']} p99 {p['p99_ms']} "
            f"ms {p['status']}; server CPU {d['server_cpu_s']} s, clients "
            f"{d['cpu_ms'] / 1000:.1f} s")


def harness_rounds(args: argparse.Namespace) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for r in range(args.harness_rounds):
        log(f"fanout: harness-shaped round {r + 1}/{args.harness_rounds}, "
            f"{args.harness_clients} clients")
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            runs[side].append(measure(side, args))
            log(describe(side, runs[side][-1]))
    return runs


def pooled_publish(runs: list[dict]) -> dict:
    """Publish answer p50/p99 over every run's answers together."""
    hist: dict[float, int] = {}
    for run in runs:
        for key, count in run["publish"].get("hist", {}).items():
            hist[float(key)] = hist.get(float(key), 0) + count
    return {"p50_ms": percentile(hist, 0.50), "p99_ms": percentile(hist, 0.99),
            "max_ms": percentile(hist, 1.0), "n": sum(hist.values())}


def summarize(runs: dict[str, list[dict]]) -> dict:
    """The harness_shape_* figures; a ratio per round (ours / peer
    deliveries per second), their median and range."""
    rates = {side: [r["deliveries_per_s"] for r in runs[side]] for side in SIDES}
    ratios = [o / p for o, p in zip(rates["ours"], rates["peer"], strict=True) if p]
    publish = {side: pooled_publish(runs[side]) for side in SIDES}
    issues: dict = {}
    for side in SIDES:
        found: dict = {"missing": sum(r["missing"] for r in runs[side]),
                       "out_of_order": sum(r["out_of_order"] for r in runs[side]),
                       "refused": sum(r["refused"] for r in runs[side]),
                       "leaked_text": [t for r in runs[side] for t in r["leaked_text"]][:5]}
        for key in ("refusals", "disconnects", "errors"):
            found[key] = {}
            for r in runs[side]:
                add_counts(found[key], r.get(key, {}))
        statuses: dict = {}
        for r in runs[side]:
            add_counts(statuses, r["publish"]["status"])
        found["publish_status"] = {k: v for k, v in statuses.items() if k != "202"}
        if any(found.values()):
            issues[side] = {k: v for k, v in found.items() if v}
    return {
        "harness_shape_ratio_vs_node": round(statistics.median(ratios), 3) if ratios else None,
        "harness_shape_ratio_vs_node_range": ([round(min(ratios), 3), round(max(ratios), 3)]
                                              if ratios else None),
        "harness_shape_per_s": round(statistics.median(rates["ours"])),
        "harness_shape_node_peer_per_s": round(statistics.median(rates["peer"])),
        "harness_shape_publish_p50_ms": publish["ours"]["p50_ms"],
        "harness_shape_publish_p99_ms": publish["ours"]["p99_ms"],
        "harness_shape_node_peer_publish_p99_ms": publish["peer"]["p99_ms"],
        "harness_shape_connect_s": {side: [r["connect_s"] for r in runs[side]]
                                    for side in SIDES},
        "harness_shape_per_round": rates,
        "harness_shape_problems": issues or None,
    }


def notes(args: argparse.Namespace) -> str:
    source = (f"{args.harness_addresses} loopback addresses" if args.harness_addresses
              else "127.0.0.1")
    return (f"Harness shape: {args.harness_clients} socket.io-client sockets in one Node "
            f"process (storm.mjs) from {source}, opened at once as soon as the server "
            f"answered /healthz; when the last has connected, {args.harness_broadcasts} "
            f"broadcasts POSTed from that same process, {args.harness_in_flight} in flight. "
            f"ours: `serve` at {args.level} with its defaults (SQLite, throttles and "
            f"per-address limits on, telemetry on); deliveries/s from the first POST to the "
            f"last receipt; publish p50/p99 as that process saw them, all rounds pooled; "
            f"{args.harness_rounds} rounds, ours and the peer in alternating order, ratio = "
            f"median of round-by-round ratios.")
