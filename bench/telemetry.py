"""Telemetry costs: the hot path, ingest against a bare writer, and delivery
overhead with telemetry on against off. Needs the InfluxDB at INFLUX_URL
(scripts/influxdb.sh start); writes to a scratch database it drops after.

Prints: emit_ns, ingest_per_s, bare_ingest_per_s, ingest_ratio,
delivery_per_s_on, delivery_per_s_off, overhead_ratio.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict

import gevent
import urllib3

from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.influx_writer import InfluxWriter
from service.domain.model import Appended, Notification
from service.service_layer.delivery import DeliveryHub
from service.service_layer.ports import StreamPosition
from service.service_layer.publishing import publish
from service.service_layer.telemetry import TelemetryRing
from service.service_layer.write_batching import WriteBatcher

TARGETS = {"emit_ns": "<= 1000", "ingest_ratio": ">= 0.8", "overhead_ratio": ">= 0.95"}
COMMON = {"node": "bench", "role": "bench"}
# the broadcasts of a round come faster than the default per-user throttle
# (normal: 200/s, burst 400): the cost of delivery is measured, not the 429s
UNTHROTTLED = {"THROTTLE": "normal=off"}


def paired_median(a: list[float], b: list[float]) -> float:
    """The median of round-by-round ratios: each round's two measurements ran
    back to back, so a slow stretch of the machine affects both."""
    return round(statistics.median(x / y for x, y in zip(a, b, strict=True)), 3)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- 1. the hot path ------------------------------------------------------------
def measure_emit(n: int, repeats: int) -> float:
    tags = {"mode": "live"}
    fields = {"count": 3, "bytes": 512, "latency_ms_mean": 1.5, "latency_ms_p50": 1.2,
              "latency_ms_p95": 3.1, "latency_ms_max": 3.3}
    runs = []
    for _ in range(repeats):
        ring = TelemetryRing()  # the service's own capacity: full rings drop the oldest
        emit = ring.emit
        started = time.perf_counter_ns()
        for _ in range(n):
            emit("notify_delivery", tags, fields)
        runs.append((time.perf_counter_ns() - started) / n)
    return statistics.median(runs)


# -- 2. ingest: our writer against a bare gzip line-protocol writer ---------------
def ours_ingest(client: InfluxClient, n: int) -> float:
    ring = TelemetryRing(capacity=n + 1)
    for i in range(n):
        ring.emit("notify_delivery", (("mode", "live"),),
                  {"count": i, "latency_ms_max": 1.5, "latency_ms_p50": 0.7})
    writer = InfluxWriter(ring, client, COMMON, batch_size=5000)
    started = time.perf_counter()
    while len(ring):
        writer.step(wait=False)  # as the run loop does: encode while the last POST is out
    writer.join()
    elapsed = time.perf_counter() - started
    assert writer.written == n, (writer.written, writer.dropped_by_reason)
    return n / elapsed


def bare_ingest(client: InfluxClient, n: int) -> float:
    """The reference: the same records, formatted by one fixed f-string, gzip,
    POST, one batch after another. No schema, escaping, spool or accounting:
    the least any writer must do."""
    base = time.time_ns()
    records = [(i, 1.5, 0.7, base + i) for i in range(n)]
    http = urllib3.PoolManager(retries=False)
    url = f"{client.settings.url}/write?db={client.settings.database}&precision=ns"
    started = time.perf_counter()
    for start in range(0, n, 5000):
        lines = "\n".join(
            f"notify_delivery,mode=live,node=bare,role=bench count={c}i,latency_ms_max={mx!r},"
            f"latency_ms_p50={mn!r} {ts}" for c, mx, mn, ts in records[start:start + 5000])
        response = http.request("POST", url, body=gzip.compress(lines.encode(), 1),
                                headers={"Content-Encoding": "gzip"})
        assert response.status == 204, response.data
    return n / (time.perf_counter() - started)


# -- 3. delivery throughput with telemetry on and off -----------------------------
class MemoryLog:
    """The log's interface in memory, targeted publishes only: the benchmark
    measures delivery and telemetry, not storage."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Notification]] = defaultdict(list)
        self.last = 0

    def append(self, request, message_id, created_at):  # noqa: ANN201
        self.last += 1
        entry = Notification(message_id, self.last, request.category, request.priority,
                             request.payload_json, created_at)
        users = tuple(request.recipients.user_ids)
        for user in users:
            self.streams[user].append(entry)
        return Appended(entry, users, len(users))

    def append_many(self, drafts):  # noqa: ANN201
        return [self.append(*draft) for draft in drafts]

    def read(self, user_id, after, limit):  # noqa: ANN201
        page = [n for n in self.streams[user_id] if n.offset > after][:limit]
        return page, StreamPosition(head=self.last, acked=0)

    def head(self) -> int:
        return self.last

    def open_stream(self, user_id):  # noqa: ANN201
        return StreamPosition(head=self.last, acked=0)

    def open_streams(self, user_ids):  # noqa: ANN201
        return {u: self.open_stream(u) for u in user_ids}

    def ack_many(self, acks):  # noqa: ANN201
        return 0

    def ping(self) -> None:
        return None


class EncodingSender:
    """Encodes each event as python-socketio would (with the service's JSON
    module, which splices pre-encoded batches in), then discards it."""

    def __init__(self) -> None:
        from service.adapters.wire_json import dumps

        self._dumps = dumps
        self.bytes = 0

    def send(self, sid, event, data):  # noqa: ANN201
        self.bytes += len(self._dumps([event, data], separators=(",", ":")))

    def disconnect(self, sid):  # noqa: ANN201
        return None

    def release(self, sid):  # noqa: ANN201
        return None



def delivery_rate(n: int, users: int, telemetry_on: bool, client: InfluxClient) -> float:
    ring = TelemetryRing()
    telemetry = ring if telemetry_on else None  # None: the handlers measure nothing
    writer = InfluxWriter(ring, client, COMMON, interval=0.2) if telemetry_on else None
    task = gevent.spawn(writer.run) if writer else None
    log_ = MemoryLog()
    hub = DeliveryHub(log_, EncodingSender(), telemetry, gevent.spawn)
    timers = gevent.spawn(hub.run_batch_timers)
    writes = WriteBatcher(log_, hub.deliver, telemetry)
    for u in range(users):
        hub.connect(f"sid{u}", f"user{u}", None)
    gevent.sleep(0)
    raw = [{"user_id": f"user{i % users}", "category": "bench", "priority": "normal",
            "payload": {"i": i}} for i in range(n)]
    started = time.perf_counter()
    for i, body in enumerate(raw):
        publish(body, append=writes.append, telemetry=telemetry)
        if i % 50 == 0:
            gevent.sleep(0)  # a server yields on socket I/O; let background work run
    elapsed = time.perf_counter() - started
    hub.batch_timers.stop()
    timers.join(timeout=1)
    if writer:
        writer.stop()
        task.join(timeout=5)
        task.kill()
    return n / elapsed


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench telemetry")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--publishes", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--broadcasts", type=int, default=2_000)
    parser.add_argument("--paired-rounds", type=int, default=7,
                        help="rounds of both servers at once (overhead_ratio)")
    args = parser.parse_args(argv)

    url = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
    client = InfluxClient(InfluxSettings(url=url, database=f"bench_{uuid.uuid4().hex[:8]}"))
    if not client.ping():
        raise SystemExit(f"InfluxDB does not answer at {url}: run scripts/influxdb.sh start")
    client.ensure_database()
    try:
        log("emit: measuring the hot path")
        emit_ns = measure_emit(1_000_000, args.repeats)

        ours, bare = [], []
        for r in range(args.repeats):
            log(f"ingest: round {r + 1}/{args.repeats}, {args.events} events each way")
            pair = [(ours, ours_ingest), (bare, bare_ingest)]
            for bucket, fn in (pair if r % 2 == 0 else pair[::-1]):
                bucket.append(fn(client, args.events))
            log(f"  ours {ours[-1]:,.0f}/s, bare {bare[-1]:,.0f}/s")

        on, off = [], []
        for r in range(args.repeats):
            log(f"pipeline: round {r + 1}/{args.repeats}, {args.publishes} publishes each way")
            pair = [(on, True), (off, False)]
            for bucket, flag in (pair if r % 2 == 0 else pair[::-1]):
                bucket.append(delivery_rate(args.publishes, 100, flag, client))
                log(f"  telemetry {'on ' if flag else 'off'}: {bucket[-1]:,.0f} publishes/s")

        e2e_on, e2e_off = [], []
        for r in range(args.repeats):
            log(f"delivery: round {r + 1}/{args.repeats}, {args.clients} clients x "
                f"{args.broadcasts} broadcasts each way")
            pair = [(e2e_on, True), (e2e_off, False)]
            for bucket, flag in (pair if r % 2 == 0 else pair[::-1]):
                bucket.append(e2e_delivery_rate(flag, args.clients, args.broadcasts,
                                                client.settings.database))
                log(f"  telemetry {'on ' if flag else 'off'}: {bucket[-1]:,.0f} deliveries/s")

        paired = []
        for r in range(args.paired_rounds):
            log(f"delivery, both servers at once: round {r + 1}/{args.paired_rounds}")
            paired.append(e2e_paired_cpu(args.clients, args.broadcasts,
                                         client.settings.database, on_first=r % 2 == 0))
            log(f"  efficiency on/off: {paired[-1]:.3f}")
    finally:
        client.query(f'DROP DATABASE "{client.settings.database}"', method="POST", db=None)

    ours_med, bare_med = statistics.median(ours), statistics.median(bare)
    on_med, off_med = statistics.median(on), statistics.median(off)
    e2e_on_med, e2e_off_med = statistics.median(e2e_on), statistics.median(e2e_off)
    return {
        "emit_ns": round(emit_ns, 1),
        "ingest_per_s": round(ours_med),
        "bare_ingest_per_s": round(bare_med),
        "ingest_ratio": paired_median(ours, bare),
        "overhead_ratio": round(statistics.median(paired), 3),
        "overhead_ratio_range": [round(min(paired), 3), round(max(paired), 3)],
        "delivery_per_s_on": round(e2e_on_med),
        "delivery_per_s_off": round(e2e_off_med),
        "wallclock_overhead_ratio": round(e2e_on_med / e2e_off_med, 3),
        "pipeline_per_s_on": round(on_med),
        "pipeline_per_s_off": round(off_med),
        "pipeline_overhead_ratio": paired_median(on, off),
        "targets": TARGETS,
        "notes": (
            "ratios are medians of round-by-round ratios, rounds alternating which side goes "
            "first. ingest: our writer vs a bare f-string+gzip writer, "
            "same records, real InfluxDB. delivery: real serve processes (SQLite), broadcasts "
            "to Node socket.io-client receivers, TELEMETRY_ENABLED=1 vs 0. overhead_ratio: "
            "both servers at once under the same load, ratio of their CPU time for the same "
            "deliveries, so the machine's noise cancels. delivery_per_s_*: one server at a "
            "time, as its receivers saw it. pipeline: publish handler + hub + JSON in one "
            "process, no network or database."
        ),
    }


# -- 4. end to end: a real server delivering to real WebSocket clients ------------
def e2e_delivery_rate(telemetry_on: bool, clients: int, broadcasts: int,
                      influx_db: str) -> float:
    """Deliveries per second from the first publish to the last receipt: each
    broadcast reaches every connected client through the whole server path."""
    from bench.harness import NodeReceivers, ServeProcess

    env = {"TELEMETRY_ENABLED": "1" if telemetry_on else "0", "INFLUX_DB": influx_db,
           **UNTHROTTLED}
    with ServeProcess(env) as server:
        receivers = NodeReceivers(server.url, [f"bench{u}" for u in range(clients)],
                                  expect_total=clients * broadcasts)
        receivers.wait_ready()
        server.wait_settled(telemetry_on)
        started = time.time()
        server.publish_many([{"broadcast": True, "category": "bench", "payload": {"i": i}}
                             for i in range(broadcasts)])
        done = receivers.wait_done()
    if done["received"] != clients * broadcasts:
        raise RuntimeError(f"received {done['received']} of {clients * broadcasts}: {done}")
    return done["received"] / (done["last_receipt_ms"] / 1000.0 - started)


def e2e_paired_cpu(clients: int, broadcasts: int, influx_db: str, *,
                   on_first: bool = True) -> float:
    """Both servers at once under the same load (bench.harness.paired_cpu).
    Returns the ratio of their efficiency, on / off: the off server's CPU
    time over the on server's, for the same deliveries. ``on_first``: which
    one starts, gets its receivers and its first publish first (rounds
    alternate it, so that no position favours either side)."""
    from bench.harness import paired_cpu

    on = {"TELEMETRY_ENABLED": "1", "INFLUX_DB": influx_db, **UNTHROTTLED}
    off = {"TELEMETRY_ENABLED": "0", "INFLUX_DB": influx_db, **UNTHROTTLED}
    if on_first:
        on_cpu, off_cpu = paired_cpu(on, off, clients, broadcasts)
    else:
        off_cpu, on_cpu = paired_cpu(off, on, clients, broadcasts)
    return off_cpu / on_cpu
