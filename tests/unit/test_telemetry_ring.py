from service.adapters.influx_writer import TagLimiter
from service.service_layer.telemetry import TelemetryRing


def test_timestamps_strictly_increase():
    ring = TelemetryRing()
    for _ in range(1000):
        ring.emit("notify_ack", {}, {"count": 1})
    stamps = [record[3] for record in ring.drain(1000)]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))


def test_a_full_ring_keeps_the_newest_and_counts_the_loss():
    ring = TelemetryRing(capacity=3)
    for i in range(5):
        ring.emit("notify_ack", {}, {"count": i})
    assert [r[2]["count"] for r in ring.drain(10)] == [2, 3, 4]
    assert ring.dropped_full == 2
    assert ring.emitted == 5


def test_emit_never_raises():
    ring = TelemetryRing()
    ring.emit("notify_ack", {}, {"count": "not a number"})  # totals cannot add this
    assert ring.errors == 1


def test_totals_sum_counts_per_measurement():
    ring = TelemetryRing()
    ring.emit("notify_publish", {}, {"count": 2})
    ring.emit("notify_publish", {}, {"count": 3})
    assert ring.totals["notify_publish"] == 5


def test_tag_limiter_bounds_cardinality():
    limit = TagLimiter(limit=2)
    seen = [limit("notify_publish", {"category": c})["category"] for c in "abcab"]
    assert seen == ["a", "b", "other", "a", "b"]
