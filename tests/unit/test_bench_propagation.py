"""The propagation benchmark's pure helpers, and the log line it times against
the one the service writes."""

import logging

import pytest

from bench.propagation import PARAMETER, announced_seq, percentile, plan
from service.service_layer.live_config import LiveConfig


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_plan_alternates_nodes_and_always_changes_the_value():
    steps = plan(10)
    assert [to for to, _ in steps] == [0, 1] * 5
    values = [value for _, value in steps]
    assert all(a != b for a, b in zip(values, values[1:], strict=False))
    assert 50.0 not in values  # balanced's batch_timeout_ms: the first change changes it


def test_announced_seq_parses_only_config_lines():
    line = "2026-11-27 05:42:54,265 INFO service.service_layer.live_config: config changed by " \
           "admin (#12): batch_timeout_ms=40.0 (bench propagation)\n"
    assert announced_seq(line) == 12
    assert announced_seq("2026-11-27 05:42:54,265 WARNING influx: unreachable (#3)") is None


def test_announced_seq_matches_what_the_service_logs(caplog):
    config = LiveConfig("balanced", {}, lambda values: None, telemetry=None)
    with caplog.at_level(logging.INFO, logger="service.service_layer.live_config"):
        config.change({"parameters": {PARAMETER: 40.0}, "reason": "bench"}, actor="admin")
        config.change({"parameters": {PARAMETER: 40.0}}, actor="admin")  # same value again
    seqs = [announced_seq(record.getMessage()) for record in caplog.records]
    assert seqs == [1, 2]
