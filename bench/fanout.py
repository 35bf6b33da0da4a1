"""Fan-out: broadcasts through the publish API to 1,000 WebSocket clients,
our service against a plain Node socket.io 4 server (clients/js/peer-server.mjs)
that emits each publish at once, with no log and no batching.

Three sides, each a fresh server with fresh clients per round, in alternating
order: ``ours`` (OPTIMIZATION_LEVEL, telemetry on, scratch InfluxDB database),
``peer`` (the Node reference), ``unbatched`` (ours with BATCH_SIZE=1). Then
paced runs at half of ours' measured rate, ours then the peer, for
publish-to-client latency.

Then the harness-shaped runs (bench/fanout_harness.py): the outside
harness's shape, ours at its defaults against the peer.

Prints: delivered_per_s, node_peer_per_s, ratio_vs_node, unbatched_per_s,
batching_gain, p50_ms, p99_ms, publish_p50_ms and publish_p99_ms (the publish
API's answer time in ours' throughput runs), harness_cpu_s, the
harness_shape_* figures and the details behind them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator

import gevent

from bench import fanout_harness
from bench.harness import ServeProcess, raise_nofile
from bench.loadgen import (
    NodePeer,
    Publisher,
    ReceiverGroup,
    answer_figures,
    percentile,
    self_cpu_seconds,
)
from bench.telemetry import UNTHROTTLED, paired_median
from service.adapters.influx import InfluxClient, InfluxSettings
from service.domain.levels import LEVELS

SIDES = ("ours", "peer", "unbatched")
LOADED = 0.8  # of ours' measured maximum: the pace of the publish-answer run


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def open_server(side: str, args: argparse.Namespace) -> Iterator[ServeProcess | NodePeer]:
    if side == "peer":
        with NodePeer() as peer:
            yield peer
            return
    # The publish throttle (200 broadcasts/s, burst 400, at balanced) would
    # cut a burst short: this measures delivery, not the throttle.
    env = {"OPTIMIZATION_LEVEL": args.level, "TELEMETRY_ENABLED": "1",
           "INFLUX_DB": args.influx.settings.database, **UNTHROTTLED}
    if side == "unbatched":
        env["BATCH_SIZE"] = "1"
    with ServeProcess(env) as server:
        yield server


def settle(server: ServeProcess | NodePeer) -> None:
    if isinstance(server, ServeProcess):
        server.wait_settled(telemetry_on=True)  # after the writer's first write
    else:
        gevent.sleep(1.0)  # as wait_settled's last second, so both sides idle alike


def measure(side: str, args: argparse.Namespace, broadcasts: int,
            paced_per_s: float | None = None) -> dict:
    """One run on a fresh server: connect the clients, publish, wait for every
    delivery. Deliveries/s run from the first publish to the last receipt."""
    users = [f"fan{u}" for u in range(args.clients)]
    with open_server(side, args) as server:
        receivers = ReceiverGroup(server.url, users, broadcasts, args.receiver_procs,
                                  latency_from="payload" if paced_per_s else "none",
                                  timeout_s=args.timeout_s)
        try:
            receivers.wait_ready()
            settle(server)
            publisher = Publisher(server.url, args.concurrency)
            server_cpu, own_cpu = server.cpu_seconds(), self_cpu_seconds()
            started = time.time()
            if paced_per_s:
                publisher.paced(broadcasts, paced_per_s)
            else:
                publisher.burst(broadcasts)
            publish_s = time.time() - started
            done = receivers.wait_done()
            server_cpu = server.cpu_seconds() - server_cpu
            own_cpu = self_cpu_seconds() - own_cpu
            sent = (server_latency(args.influx, server.env["NODE_ID"])
                    if paced_per_s and isinstance(server, ServeProcess) else None)
        finally:
            receivers.kill()
    elapsed = max(done["last_receipt_ms"] / 1000.0 - started, 1e-3)
    return {"rate": done["received"] / elapsed, "received": done["received"],
            "mean_batch": done["received"] / max(done["batches"], 1), "frames": done["batches"],
            "expected": receivers.expected, "elapsed_s": elapsed, "publish_s": publish_s,
            "server_cpu_s": server_cpu, "receivers_cpu_s": done["cpu_s"],
            "publisher_cpu_s": own_cpu, "hist": done["hist"], "errors": done["errors"],
            "late": publisher.late, "publish_errors": publisher.failed, "server_side": sent,
            "answers": publisher.answers}


def server_latency(influx: InfluxClient, node_id: str) -> dict | None:
    """What the server itself measured of the paced run, from its telemetry
    in InfluxDB: publish (``created_at``) to the send of each entry, and the
    time entries waited in their batch, as per-second p99s (median and worst
    second). The receivers' share of the latency is what lies beyond."""
    gevent.sleep(2.5)  # the telemetry writer's last interval reaches InfluxDB
    rows = influx.query(
        'SELECT percentile("latency_ms_p99", 50), max("latency_ms_p99"), '
        'percentile("latency_ms_p50", 50), percentile("wait_ms_p99", 50), '
        'max("wait_ms_p99") FROM "notify_delivery" '
        f"WHERE \"node\" = '{node_id}' AND \"mode\" = 'live'")
    series = rows[0].get("series") if rows else None
    if not series:
        return None
    values = series[0]["values"][0][1:]
    keys = ("p99_ms_median_second", "p99_ms_worst_second", "p50_ms_median_second",
            "wait_p99_ms_median_second", "wait_p99_ms_worst_second")
    return {k: round(v, 1) for k, v in zip(keys, values, strict=True) if v is not None}


def describe(side: str, m: dict) -> str:
    short = "" if m["received"] == m["expected"] else f" SHORT {m['received']}/{m['expected']}"
    return (f"  {side:9} {m['rate']:>9,.0f} deliveries/s in {m['elapsed_s']:.1f} s (publishing "
            f"{m['publish_s']:.1f} s); server CPU {m['server_cpu_s']:.1f} s, receivers "
            f"{m['receivers_cpu_s']:.1f} s, publisher {m['publisher_cpu_s']:.1f} s; "
            f"{m['mean_batch']:.1f} per event{short}"
            + (f" publish errors: {m['publish_errors'][:2]}" if m["publish_errors"] else "")
            + (f" errors: {m['errors'][:3]}" if m["errors"] else ""))


def throughput_rounds(args: argparse.Namespace) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    counts = {"ours": args.broadcasts, "peer": args.broadcasts,
              "unbatched": args.unbatched_broadcasts}
    for r in range(args.rounds):
        log(f"fanout: round {r + 1}/{args.rounds}, {args.clients} clients")
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            runs[side].append(measure(side, args, counts[side]))
            log(describe(side, runs[side][-1]))
    return runs


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench fanout")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=300,
                        help="per throughput run of ours and of the peer")
    parser.add_argument("--unbatched-broadcasts", type=int, default=100,
                        help="per run with BATCH_SIZE=1 (fewer: it is the slow side)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--receiver-procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent publishers")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--level", default="balanced", choices=sorted(LEVELS))
    parser.add_argument("--only", default="all", choices=("all", "own", "harness"),
                        help="own: the throughput and latency runs; harness: the "
                             "harness-shaped runs")
    fanout_harness.add_arguments(parser)
    args = parser.parse_args(argv)
    nofile = raise_nofile()

    url = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
    client = InfluxClient(InfluxSettings(url=url, database=f"bench_{uuid.uuid4().hex[:8]}"))
    if not client.ping():
        raise SystemExit(f"InfluxDB does not answer at {url}: run scripts/influxdb.sh start")
    args.influx = client
    own: tuple | None = None
    harness: dict = {}
    try:
        if args.only != "harness":
            own = own_runs(args)
        if args.only != "own" and args.harness_rounds:
            harness = fanout_harness.summarize(fanout_harness.harness_rounds(args))
    finally:
        client.query(f'DROP DATABASE "{client.settings.database}"', method="POST", db=None)
    if own is None:
        return {**harness, "targets": fanout_harness.TARGETS,
                "notes": f"{fanout_harness.notes(args)} Open-files limit {nofile}."}
    result = summarize(args, *own, nofile)
    if harness:
        result["targets"] |= fanout_harness.TARGETS
        result["notes"] += " " + fanout_harness.notes(args)
    return {**result, **harness}


def own_runs(args: argparse.Namespace) -> tuple[dict[str, list[dict]], dict, dict]:
    """The throughput rounds, then the paced latency runs of ours and the peer."""
    runs = throughput_rounds(args)
    ours_rate = statistics.median(m["rate"] for m in runs["ours"])
    # half the measured maximum, in broadcasts per second to every client
    paced = ours_rate / 2 / args.clients
    count = max(10, round(paced * args.latency_seconds))
    log(f"fanout: latency, {count} broadcasts at {paced:.2f}/s "
        f"({paced * args.clients:,.0f} deliveries/s, half of {ours_rate:,.0f})")
    latency = measure("ours", args, count, paced_per_s=paced)
    log(describe("ours", latency) + f"; {latency['late']} publishes late")
    # the peer at the same pace: what a fan-out with no log and no batching
    # achieves on this machine, so the latency target can be read against it
    peer_latency = measure("peer", args, count, paced_per_s=paced)
    log(describe("peer", peer_latency) + f"; {peer_latency['late']} publishes late")
    # the publish API's answer while the node fans out at LOADED of its maximum
    loaded_pace = ours_rate * LOADED / args.clients
    loaded = measure("ours", args, max(10, round(loaded_pace * args.latency_seconds)),
                     paced_per_s=loaded_pace)
    log(describe("ours", loaded) + f" at {LOADED:.0%} of the maximum; publish answers "
        f"{answer_figures(loaded['answers'])}")
    latency["loaded"] = loaded
    return runs, latency, peer_latency


def summarize(args: argparse.Namespace, runs: dict[str, list[dict]], latency: dict,
              peer_latency: dict, nofile: int) -> dict:
    def rates(side: str) -> list[float]:
        return [m["rate"] for m in runs[side]]

    def answers(side: str) -> list:
        return [a for m in runs[side] for a in m["answers"]]

    def harness(m: dict) -> float:
        return m["receivers_cpu_s"] + m["publisher_cpu_s"]

    def us_per_delivery(m: dict) -> float:
        return m["server_cpu_s"] * 1e6 / max(m["received"], 1)

    everything = [m for side in SIDES for m in runs[side]] + [latency, peer_latency]
    ratios = [a / b for a, b in zip(rates("ours"), rates("peer"), strict=True)]
    gains = [a / b for a, b in zip(rates("ours"), rates("unbatched"), strict=True)]
    timeout_ms = LEVELS[args.level].batch_timeout_ms
    measured = {**runs, "ours_latency": [latency], "peer_latency": [peer_latency]}
    short = {side: [f"{m['received']}/{m['expected']}" for m in ms
                    if m["received"] != m["expected"]] for side, ms in measured.items()}
    errors = {side: [e for m in ms for e in m["publish_errors"]][:5]
              for side, ms in measured.items()}
    return {
        "clients": args.clients,
        "delivered_per_s": round(statistics.median(rates("ours"))),
        "node_peer_per_s": round(statistics.median(rates("peer"))),
        "unbatched_per_s": round(statistics.median(rates("unbatched"))),
        "ratio_vs_node": paired_median(rates("ours"), rates("peer")),
        "ratio_vs_node_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "batching_gain": paired_median(rates("ours"), rates("unbatched")),
        "batching_gain_range": [round(min(gains), 3), round(max(gains), 3)],
        "p50_ms": percentile(latency["hist"], 0.50),
        "p99_ms": percentile(latency["hist"], 0.99),
        "latency_max_ms": percentile(latency["hist"], 1.0),
        "node_peer_p50_ms": percentile(peer_latency["hist"], 0.50),
        "node_peer_p99_ms": percentile(peer_latency["hist"], 0.99),
        "latency_at_per_s": round(latency["rate"]),
        # the same paced run as the server measured it (publish to send, from
        # its telemetry), and what each frame cost the receivers meanwhile
        "latency_server_side": latency["server_side"],
        "latency_receiver_us_per_frame": round(
            latency["receivers_cpu_s"] * 1e6 / max(latency["frames"], 1), 1),
        "latency_late_publishes": latency["late"] + peer_latency["late"],
        # server CPU per delivery, peer / ours: immune to the machine's speed
        # and to the receivers competing with the server for the two cores
        "cpu_efficiency_vs_node": paired_median([us_per_delivery(m) for m in runs["peer"]],
                                                [us_per_delivery(m) for m in runs["ours"]]),
        "harness_cpu_s": round(sum(harness(m) for m in everything), 1),
        # medians per side and run: who was busy while the clients waited
        "per_run": {side: {
            "server_cpu_s": round(statistics.median(m["server_cpu_s"] for m in runs[side]), 2),
            "harness_cpu_s": round(statistics.median(harness(m) for m in runs[side]), 2),
            "wall_s": round(statistics.median(m["elapsed_s"] for m in runs[side]), 2),
            "server_us_per_delivery": round(statistics.median(
                us_per_delivery(m) for m in runs[side]), 1),
            "mean_batch": round(statistics.median(m["mean_batch"] for m in runs[side]), 2),
        } for side in SIDES},
        "latency_mean_batch": round(latency["mean_batch"], 2),
        # the publish API's answer time as the publishers saw it, all rounds pooled
        "publish_p50_ms": answer_figures(answers("ours"))["p50_ms"],
        "publish_p99_ms": answer_figures(answers("ours"))["p99_ms"],
        "publish_at_80pct_p50_ms": answer_figures(latency["loaded"]["answers"])["p50_ms"],
        "publish_at_80pct_p99_ms": answer_figures(latency["loaded"]["answers"])["p99_ms"],
        "publish_at_80pct_per_s": round(latency["loaded"]["rate"]),
        "publish_answer_ms": {side: {k: v for k, v in answer_figures(
            [a for m in ms for a in m["answers"]]).items() if k != "status"}
            for side, ms in measured.items()},
        "shortfalls": {side: s for side, s in short.items() if s} or None,
        "publish_errors": {side: e for side, e in errors.items() if e} or None,
        "targets": {"clients": ">= 1000", "ratio_vs_node": ">= 4.0", "batching_gain": ">= 10",
                    "publish_at_80pct_p99_ms": "<= 50",
                    "p99_ms": f"<= {timeout_ms + 20:g} (batch timeout {timeout_ms:g} ms + 20)"},
        "notes": (
            f"{args.clients} socket.io-client sockets in {args.receiver_procs} Node processes, "
            f"each a distinct user, acking every batch; {args.broadcasts} broadcasts "
            f"({args.unbatched_broadcasts} for BATCH_SIZE=1) POSTed by {args.concurrency} "
            f"concurrent publishers; rate = deliveries from first publish to last receipt. "
            f"ours: `serve` at {args.level}, SQLite, telemetry on; peer: Node socket.io "
            f"4.8 emitting each publish at once, no log; a fresh server and clients per run, "
            f"{args.rounds} rounds in alternating order; ratios are medians of round-by-round "
            f"ratios. Latency: publisher send time (payload.t) to receipt, paced at half "
            f"ours' median rate, ours then the peer at that same pace; then ours at "
            f"{LOADED:.0%} of that rate for the publish API's answer times (publish_at_80pct). "
            f"harness_cpu_s: "
            f"receivers + publisher CPU during the measured windows. cpu_efficiency_vs_node: "
            f"server CPU per delivery, peer / ours. Open-file limit {nofile}."),
    }
