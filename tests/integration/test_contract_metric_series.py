"""The MetricSeries port's promises (service/service_layer/ports.py), held by
the in-memory fake the unit tests use and by the InfluxDB one that reads the
rollups: one value per bucket in [start, end), oldest first, stamped with
the bucket's start, for the whole cluster or one node, and a refusal of what
it cannot read.

Both are given the same busiest-node connection counts (a peak metric: the
cluster's value in a bucket is its largest node's): the InfluxDB one as
rollup points, the fake as the series they make. Where the two disagree, the
fake is what gets fixed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from service.adapters.influx import Retention
from service.adapters.influx_points import InfluxPointWriter
from service.adapters.influx_series import InfluxMetricSeries
from service.service_layer.ports import DataPoint, MetricSeries
from tests.support.fake_metrics import InMemoryMetricSeries

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
# (node, minute, connections): node b is the busiest in minutes 1 and 3
SAMPLES = [("a", 0, 10.0), ("a", 1, 20.0), ("b", 1, 25.0), ("a", 2, 30.0), ("b", 3, 5.0),
           ("a", 4, 50.0)]

Given = Callable[[list[tuple[str, int, float]]], MetricSeries]


def cluster_and_nodes(samples: list[tuple[str, int, float]]) -> dict[tuple[str, ...], list]:
    """The fake's data: the busiest node's value per minute, and each node's own."""
    busiest: dict[datetime, float] = {}
    data: dict[tuple[str, ...], list] = {}
    for node, minute, value in samples:
        at = T0 + minute * MINUTE
        busiest[at] = max(value, busiest.get(at, value))
        data.setdefault(("connections", "1m", node), []).append((at, value))
    data[("connections", "1m")] = list(busiest.items())
    return data


@pytest.fixture(params=["fake", "influxdb"])
def given(request) -> Given:
    """Load the samples and return the MetricSeries that reads them."""
    def fake(samples: list[tuple[str, int, float]]) -> MetricSeries:
        return InMemoryMetricSeries(cluster_and_nodes(samples))

    def influxdb(samples: list[tuple[str, int, float]]) -> MetricSeries:
        influx = request.getfixturevalue("influx")
        influx.ensure_database(Retention())
        InfluxPointWriter(influx).write(
            [DataPoint("notify_ping", (("node", node), ("role", "serve")),
                       {"connections": value}, T0 + minute * MINUTE)
             for node, minute, value in samples], retention_policy="rollup_1m")
        return InfluxMetricSeries(influx)

    return fake if request.param == "fake" else influxdb


def minutes(series: list[tuple[datetime, float]]) -> list[tuple[int, float]]:
    return [(int((at - T0) / MINUTE), value) for at, value in series]


def test_the_cluster_series_is_one_value_per_bucket_oldest_first(given):
    series = given(SAMPLES)
    assert minutes(series.series("connections", T0, T0 + 10 * MINUTE)) == [
        (0, 10.0), (1, 25.0), (2, 30.0), (3, 5.0), (4, 50.0)]


def test_the_range_takes_its_start_and_leaves_its_end(given):
    series = given(SAMPLES)
    assert minutes(series.series("connections", T0 + MINUTE, T0 + 3 * MINUTE)) == [
        (1, 25.0), (2, 30.0)]
    assert series.series("connections", T0 + 5 * MINUTE, T0 + 9 * MINUTE) == []


def test_one_node_is_that_nodes_own_series(given):
    series = given(SAMPLES)
    assert minutes(series.series("connections", T0, T0 + 10 * MINUTE, node="b")) == [
        (1, 25.0), (3, 5.0)]
    assert series.series("connections", T0, T0 + 10 * MINUTE, node="nobody") == []


def test_times_are_timezone_aware_bucket_starts(given):
    [(at, _)] = given(SAMPLES).series("connections", T0, T0 + MINUTE)
    assert at == T0 and at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("metric", "resolution"), [("no_such_metric", "1m"),
                                                    ("connections", "5m")])
def test_what_it_cannot_read_is_refused(given, metric, resolution):
    series = given(SAMPLES)
    with pytest.raises(ValueError):
        series.series(metric, T0, T0 + MINUTE, resolution)
