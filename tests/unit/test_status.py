"""The live metrics' derived figures: rates over the last minute, and the
delivery latency of the last telemetry interval."""

from service.service_layer.status import RateMeter, delivery_latency


def test_rates_run_over_the_last_minute_and_since_start_before_that():
    meter = RateMeter(window_s=60)
    first = meter.rates(100.0, {"delivered": 50}, started_at=90.0)
    assert first == {"window_s": 10.0, "delivered_per_s": 5.0}  # since start
    meter.rates(100.5, {"delivered": 60}, started_at=90.0)  # under a second: not sampled
    assert meter.rates(110.0, {"delivered": 150}, started_at=90.0) == {
        "window_s": 10.0, "delivered_per_s": 10.0}  # since the sample at 100
    for t in range(111, 200):
        meter.rates(float(t), {"delivered": 150 + (t - 110) * 2}, started_at=90.0)
    late = meter.rates(200.0, {"delivered": 330}, started_at=90.0)
    assert late["window_s"] == 60.0 and late["delivered_per_s"] == 2.0
    assert len(meter._samples) <= 62  # one a second at most, a minute's worth


def test_delivery_latency_weights_p50_and_takes_the_worst_tail():
    summaries = [((("priority", "high"),), {"count": 30, "latency_ms_p50": 10.0,
                                           "latency_ms_p99": 20.0, "latency_ms_max": 25.0}),
                 ((("priority", "low"),), {"count": 10, "latency_ms_p50": 50.0,
                                          "latency_ms_p99": 90.0, "latency_ms_max": 95.0}),
                 ((("priority", "normal"),), {"count": 0})]
    assert delivery_latency((100.0, summaries), now=102.5) == {
        "count": 40, "age_s": 2.5, "p50": 20.0, "p99": 90.0, "max": 95.0}
    assert delivery_latency(None, now=1.0) is None


def test_health_says_influxdb_is_unreachable_without_its_error_text():
    """/healthz needs no token: it must not carry a driver's or a socket's words."""
    from types import SimpleNamespace

    from service.service_layer.status import _telemetry_health

    sink = SimpleNamespace(last_error="HTTPConnectionPool(host='127.0.0.1', port=8086): "
                                      "[Errno 111] Connection refused",
                           total_dropped=0, written=0)
    health = _telemetry_health(SimpleNamespace(sink=sink))
    assert health["status"] == "warning" and "InfluxDB unreachable" in health["reason"]
    assert "Errno" not in health["reason"] and "8086" not in health["reason"]
