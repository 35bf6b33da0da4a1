"""The writer's decisions, with an in-memory stand-in for InfluxDB's /write."""

import gzip

import pytest

from service.adapters.influx import InfluxRejected, InfluxUnavailable
from service.adapters.influx_writer import Backoff, InfluxWriter
from service.adapters.telemetry_spool import DiskSpool
from service.service_layer.telemetry import TelemetryRing


class FakeInflux:
    """Accepts or fails writes as the test says; keeps what it accepted."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.fail_with: Exception | None = None
        self.posts = 0
        self.policies: list[str | None] = []  # the rp of each write
        self.prepared = 0

    def write_gzip(self, body: bytes, *, database=None, retention_policy=None) -> None:
        self.posts += 1
        self.policies.append(retention_policy)
        if self.fail_with is not None:
            raise self.fail_with
        self.lines += gzip.decompress(body).decode().splitlines()

    def ensure_database(self) -> None:
        self.prepared += 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path):
    ring, influx, clock = TelemetryRing(), FakeInflux(), Clock()
    writer = InfluxWriter(ring, influx, {"node": "n", "role": "serve"},
                          spool=DiskSpool(tmp_path, 1_000_000), batch_size=10, clock=clock,
                          backoff=Backoff(base=1.0, cap=8.0, rng=lambda: 1.0))
    return ring, influx, clock, writer


def emit(ring, n, start=0):
    for i in range(start, start + n):
        ring.emit("notify_ack", (), {"count": i})


def counts(influx):
    return [int(line.split("count=")[1].split("i")[0]) for line in influx.lines]


def test_batches_are_spooled_while_influxdb_is_down_and_replayed_in_order(parts):
    ring, influx, clock, writer = parts
    influx.fail_with = InfluxUnavailable("down")
    emit(ring, 25)
    while len(ring):
        writer.step()
    assert writer.spooled == 25 and influx.lines == []
    influx.fail_with = None
    emit(ring, 5, start=25)
    writer.step()  # still backing off: the new batch queues behind the spool
    assert influx.lines == []
    clock.now += 10
    writer.step()
    assert counts(influx) == list(range(30))
    assert writer.written == 30 and writer.backlog == 0


def test_retries_follow_a_capped_backoff(parts):
    ring, influx, clock, writer = parts
    influx.fail_with = InfluxUnavailable("down")
    emit(ring, 1)
    writer.step()
    posts_at = []
    for _ in range(400):  # 40 simulated seconds in 0.1 s steps
        clock.now += 0.1
        before = influx.posts
        writer.step()
        if influx.posts > before:
            posts_at.append(round(clock.now, 1))
    gaps = [b - a for a, b in zip(posts_at, posts_at[1:], strict=False)]
    assert gaps[:3] == pytest.approx([2.0, 4.0, 8.0], abs=0.11)
    assert max(gaps) < 8.2  # capped at 8 s (+ one 0.1 s step)
    assert len(posts_at) <= 7


def test_a_partial_write_keeps_the_good_lines_and_counts_the_bad(parts):
    ring, influx, _clock, writer = parts
    influx.fail_with = InfluxRejected(400, 'partial write: unable to parse "x": bad dropped=2')
    emit(ring, 10)
    writer.step()
    assert writer.written == 8 and writer.dropped_by_reason == {"rejected": 2}


def test_other_4xx_answers_are_retried_a_bounded_number_of_times(parts):
    ring, influx, clock, writer = parts
    influx.fail_with = InfluxRejected(401, "authorization failed")
    emit(ring, 10)
    for _ in range(100):
        clock.now += 10
        writer.step()
    assert influx.posts == 3
    assert writer.dropped_by_reason == {"http_401": 10}
    assert writer.backlog == 0


def test_without_a_spool_losses_are_counted(tmp_path):
    ring, influx = TelemetryRing(), FakeInflux()
    influx.fail_with = InfluxUnavailable("down")
    writer = InfluxWriter(ring, influx, {"node": "n", "role": "serve"})
    emit(ring, 3)
    writer.step()
    assert writer.dropped_by_reason == {"unavailable": 3}


def test_close_spools_what_it_cannot_write(parts):
    ring, influx, _clock, writer = parts
    influx.fail_with = InfluxUnavailable("down")
    emit(ring, 35)
    writer.close()
    assert len(ring) == 0
    assert writer.backlog == 35 + 1  # and the final telemetry_self report


def test_names_outside_the_catalogue_are_dropped_and_counted(parts):
    ring, influx, _clock, writer = parts
    ring.emit("not_in_catalogue", (), {"count": 1})
    ring.emit("notify_ack", (), {"count": 1})
    writer.step()
    assert len(influx.lines) == 1 and writer.dropped_by_reason == {"schema": 1}


def test_every_write_and_replay_names_the_raw_policy(parts):
    ring, influx, clock, writer = parts
    influx.fail_with = InfluxUnavailable("down")
    emit(ring, 3)
    writer.step()
    influx.fail_with = None
    clock.now += 10
    emit(ring, 2, start=3)
    writer.step()  # the spooled batch, then the new one
    assert counts(influx) == list(range(5))
    assert influx.policies and set(influx.policies) == {"raw"}


class MissingPolicy(FakeInflux):
    """A database made by someone else: no ``raw`` policy until ensure_database."""

    def __init__(self, makes_it: bool = True) -> None:
        super().__init__()
        self.has_raw = False
        self.makes_it = makes_it

    def write_gzip(self, body: bytes, *, database=None, retention_policy=None) -> None:
        if retention_policy == "raw" and not self.has_raw:
            self.posts += 1
            raise InfluxRejected(404, "retention policy not found: raw")
        super().write_gzip(body, database=database, retention_policy=retention_policy)

    def ensure_database(self) -> None:
        super().ensure_database()
        self.has_raw = self.has_raw or self.makes_it


def test_a_missing_raw_policy_is_made_and_the_write_tried_once_more():
    ring, influx = TelemetryRing(), MissingPolicy()
    writer = InfluxWriter(ring, influx, {"node": "n", "role": "serve"})
    emit(ring, 2)
    writer.step()  # prepares first: the policy is made
    influx.has_raw = False  # then dropped by someone else
    emit(ring, 2, start=2)
    writer.step()
    assert counts(influx) == list(range(4)) and writer.dropped == 0
    assert influx.prepared == 2 and influx.posts == 1 + 2


def test_a_policy_that_cannot_be_made_is_a_refusal_like_any_4xx(tmp_path):
    ring, influx, clock = TelemetryRing(), MissingPolicy(makes_it=False), Clock()
    writer = InfluxWriter(ring, influx, {"node": "n", "role": "serve"},
                          spool=DiskSpool(tmp_path, 1_000_000), clock=clock,
                          backoff=Backoff(base=1.0, cap=8.0, rng=lambda: 1.0))
    emit(ring, 4)
    for _ in range(20):
        writer.step()
        clock.now += 10
    assert influx.lines == [] and writer.dropped_by_reason == {"http_404": 4}
    assert influx.posts == 2 * 3  # each of the 3 tries: the write, and once more
    assert writer.backlog == 0
