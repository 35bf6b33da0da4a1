from service.adapters.line_protocol import LineEncoder
from service.service_layer.telemetry import TelemetryRing

COMMON = {"node": "n", "role": "serve"}


def test_a_full_ring_keeps_the_newest_and_counts_the_loss():
    ring = TelemetryRing(capacity=3)
    for i in range(5):
        ring.emit("notify_ack", (), {"count": i})
    assert ring.dropped_full == 2
    assert [r[2]["count"] for r in ring.drain(10)] == [2, 3, 4]
    assert ring.dropped_full == 2 and ring.emitted == 5 and ring.drained == 3


def test_emit_never_raises():
    ring = TelemetryRing()
    ring._append = None  # a broken ring must still not raise into delivery
    ring.emit("notify_ack", (), {"count": 1})
    assert ring.errors == 1


def test_the_encoder_makes_timestamps_strictly_increase():
    encoder = LineEncoder(COMMON)
    stamps = [int(encoder.encode("notify_ack", (), {"count": 1}, 1000).rsplit(" ", 1)[1])
              for _ in range(5)]
    assert stamps == [1000, 1001, 1002, 1003, 1004]


def test_tallies_sum_and_keep_maxima_per_tag_set_until_flushed():
    ring = TelemetryRing()
    high, low = (("priority", "high"),), (("priority", "low"),)
    ring.tally("notify_publish", high, {"count": 2, "requests": 1}, {"duration_ms_max": 1.0})
    ring.tally("notify_publish", high, {"count": 3, "requests": 1}, {"duration_ms_max": 4.0})
    ring.tally("notify_publish", low, {"count": 1, "requests": 1}, {"duration_ms_max": 2.0})
    assert len(ring) == 0  # nothing is recorded until the interval ends
    assert ring.flush_tallies() == 2
    points = {dict(r[1])["priority"]: r[2] for r in ring.drain(10)}
    assert points["high"] == {"count": 5, "duration_ms_max": 4.0, "requests": 2}
    assert points["low"] == {"count": 1, "duration_ms_max": 2.0, "requests": 1}
    assert ring.totals == {"notify_publish": 6}
    assert ring.flush_tallies() == 0  # a new interval starts empty


def test_the_encoder_bounds_tag_cardinality():
    encoder = LineEncoder(COMMON, tag_value_limit=2)
    seen = [encoder.encode("notify_publish", (("category", c),), {"count": 1}, 1)
            .split("category=")[1].split(",")[0] for c in "abcab"]
    assert seen == ["a", "b", "other", "a", "b"]
    assert len(encoder._series) == 2  # values past the limit are not cached


def test_observed_values_become_percentiles_of_the_interval():
    ring = TelemetryRing()
    tags = (("mode", "live"),)
    ring.tally("notify_delivery", tags, {"count": 100})
    ring.observe("notify_delivery", tags, "latency_ms", [float(v) for v in range(1, 51)])
    ring.observe("notify_delivery", tags, "latency_ms", [float(v) for v in range(51, 101)])
    ring.flush_tallies()
    [(_, _, fields, _)] = ring.drain(10)
    assert fields["count"] == 100
    assert fields["latency_ms_max"] == 100.0
    expected = (("latency_ms_p50", 50), ("latency_ms_p95", 95), ("latency_ms_p99", 99))
    for name, true_value in expected:
        assert abs(fields[name] - true_value) <= 0.02 * true_value, (name, fields[name])
