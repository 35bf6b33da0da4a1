"""The jobs framework (run_job and its outcomes, the locks), the rollups
job's planning over a fake store, and the job list the scheduler runs."""

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine

from service.adapters.job_lock import FileJobLock, InMemoryJobLock, job_lock_for, lock_key
from service.adapters.line_protocol import LineEncoder
from service.config import Settings
from service.domain.measurements import (
    CATALOGUE,
    JOB_NAMES,
    ROLLED_UP,
    ROLLUP_AGGREGATES,
    FieldType,
    rollup_fields,
)
from service.service_layer.job_runs import ERROR_TEXT_MAX, JobSpec, run_job
from service.service_layer.ports import DataPoint
from service.service_layer.rollups import POLICIES, floor_time, pending, run_rollups
from tests.support.fakes import RecordingTelemetry


def ticking(step=0.25):
    now = [100.0]

    def clock():
        now[0] += step
        return now[0]
    return clock


def test_a_run_that_succeeds_is_ok_and_recorded_with_its_items_and_duration():
    lock, telemetry = InMemoryJobLock(), RecordingTelemetry()
    assert run_job(JobSpec("rollups", 60, lambda: 7), lock, telemetry, ticking()) == "ok"
    assert telemetry.records == [
        ("job_run", {"job": "rollups", "outcome": "ok"}, {"duration_ms": 250.0, "items": 7})]
    assert lock.held == set()


def test_a_run_that_raises_is_an_error_recorded_and_logged_not_raised(caplog):
    lock, telemetry = InMemoryJobLock(), RecordingTelemetry()

    def boom():
        raise ValueError("no such bucket")
    assert run_job(JobSpec("trends", 60, boom), lock, telemetry) == "error"
    (_, tags, fields), = telemetry.records
    assert tags == {"job": "trends", "outcome": "error"}
    assert fields["error"] == "ValueError: no such bucket" and fields["items"] == 0
    assert "job trends failed" in caplog.text and "no such bucket" in caplog.text
    assert lock.held == set()  # released although the run raised


def test_a_job_whose_lock_is_held_elsewhere_is_skipped_without_running():
    lock, telemetry, ran = InMemoryJobLock(), RecordingTelemetry(), []
    spec = JobSpec("rollups", 60, lambda: ran.append(1) or 1)
    with lock.hold("rollups") as held:
        assert held
        assert run_job(spec, lock, telemetry) == "skipped"
    assert ran == []
    assert telemetry.records[0][1] == {"job": "rollups", "outcome": "skipped"}
    assert telemetry.records[0][2]["items"] == 0
    assert run_job(spec, lock, telemetry) == "ok" and ran == [1]


def test_a_lock_that_cannot_be_taken_is_an_error():
    class Broken:
        @contextlib.contextmanager
        def hold(self, name):
            raise ConnectionError("database unreachable")
            yield True

    telemetry = RecordingTelemetry()
    assert run_job(JobSpec("rollups", 60, lambda: 1), Broken(), telemetry) == "error"
    assert telemetry.records[0][2]["error"] == "ConnectionError: database unreachable"


def test_the_error_text_is_truncated():
    def long_failure():
        raise RuntimeError("x" * 1000)
    telemetry = RecordingTelemetry()
    run_job(JobSpec("rollups", 60, long_failure), InMemoryJobLock(), telemetry)
    text = telemetry.records[0][2]["error"]
    assert len(text) == ERROR_TEXT_MAX and text.startswith("RuntimeError: xxx")


def test_a_job_run_record_is_a_valid_catalogue_point():
    encoder = LineEncoder({"node": "n", "role": "jobs"})
    line = encoder.encode("job_run", (("job", "rollups"), ("outcome", "error")),
                          {"duration_ms": 1.5, "items": 0, "error": 'Boom: "x"'}, 1)
    assert line.startswith("job_run,job=rollups,node=n,outcome=error,role=jobs ")


def test_a_job_needs_a_name_and_a_positive_interval():
    with pytest.raises(ValueError):
        JobSpec("", 60, lambda: 0)
    with pytest.raises(ValueError):
        JobSpec("rollups", 0, lambda: 0)


def test_the_in_memory_lock_is_per_name_and_released_on_an_exception():
    lock = InMemoryJobLock()
    with lock.hold("a") as a, lock.hold("a") as again, lock.hold("b") as b:
        assert (a, again, b) == (True, False, True)
    with pytest.raises(KeyError), lock.hold("a"):
        raise KeyError
    with lock.hold("a") as a:
        assert a


def test_file_locks_exclude_each_other_and_are_released(tmp_path):
    one, two = FileJobLock(tmp_path), FileJobLock(tmp_path)
    with one.hold("rollups") as first:
        assert first
        with two.hold("rollups") as second, two.hold("trends") as other:
            assert (second, other) == (False, True)
    with pytest.raises(RuntimeError), one.hold("rollups"):
        raise RuntimeError
    with two.hold("rollups") as again:
        assert again
    assert one.path("a/b c") == tmp_path / "job-a_b_c.lock"


def test_sqlite_locks_sit_beside_the_database_file(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db' / 'notify.sqlite3'}")
    lock = job_lock_for(engine, tmp_path / "var")
    assert isinstance(lock, FileJobLock)
    assert lock.path("rollups") == tmp_path / "db" / "notify.sqlite3.job-rollups.lock"
    memory = job_lock_for(create_engine("sqlite://"), tmp_path / "var")
    assert memory.path("rollups") == tmp_path / "var" / "locks" / "job-rollups.lock"


def test_advisory_lock_keys_are_stable_distinct_64_bit_integers():
    keys = {name: lock_key(name) for name in JOB_NAMES}
    assert len(set(keys.values())) == len(JOB_NAMES)
    assert all(-(1 << 63) <= k < (1 << 63) for k in keys.values())
    assert lock_key("rollups") == int.from_bytes(
        hashlib.sha256(b"notify-job:rollups").digest()[:8], "big", signed=True)


def test_the_rollup_definitions_name_catalogue_fields_and_known_aggregates():
    for measurement in ROLLED_UP:
        fields = CATALOGUE[measurement].rollups
        assert set(fields) <= set(CATALOGUE[measurement].fields), measurement
        assert set(fields.values()) <= set(ROLLUP_AGGREGATES), measurement
    assert rollup_fields("process")["rss_bytes"] is FieldType.FLOAT  # a mean
    assert rollup_fields("process")["uptime_s"] is FieldType.FLOAT
    assert rollup_fields("notify_delivery")["count"] is FieldType.INTEGER
    needed = {"notify_publish", "notify_delivery", "notify_drop", "notify_connection",
              "notify_ping", "process", "cache", "db_query", "telemetry_self"}
    assert needed <= set(ROLLED_UP)


def test_the_scheduler_runs_only_jobs_named_in_the_catalogue(tmp_path):
    from service.adapters.influx import InfluxClient
    from service.wiring.jobs_factory import build_jobs, schedule

    class Config:
        values = {"max_connections": 10, "memory_budget_mb": 64}

    settings = Settings(var_dir=str(tmp_path), node_id="n1")
    jobs = build_jobs(settings, InfluxClient(settings.influx_settings()),
                      create_engine("sqlite://"), Config(), RecordingTelemetry())
    assert [j.name for j in jobs][:2] == ["rollups", "trends"]
    assert {j.name for j in jobs} <= set(JOB_NAMES)

    from apscheduler.schedulers.gevent import GeventScheduler
    scheduler = GeventScheduler(job_defaults={"coalesce": True, "max_instances": 1})
    schedule(scheduler, jobs, InMemoryJobLock(), RecordingTelemetry())
    assert [j.id for j in scheduler.get_jobs()] == [j.name for j in jobs]


# ---------------------------------------------------------------- rollups planning

NOW = datetime(2026, 3, 1, 12, 30, 20, tzinfo=UTC)
MINUTE, HOUR = POLICIES


def test_buckets_are_aligned_to_the_epoch():
    assert floor_time(NOW, timedelta(minutes=1)) == NOW.replace(second=0)
    assert floor_time(NOW, timedelta(hours=1)) == NOW.replace(minute=0, second=0)


def test_the_first_run_catches_up_a_bounded_window_of_complete_buckets():
    # 12:30:20 less a minute's lag: 12:29 is still open, 12:28 the last complete
    assert pending(MINUTE, NOW, None) == (datetime(2026, 3, 1, 10, 29, tzinfo=UTC),
                                          datetime(2026, 3, 1, 12, 29, tzinfo=UTC))
    assert pending(HOUR, NOW, None) == (datetime(2026, 2, 27, 12, tzinfo=UTC),
                                        datetime(2026, 3, 1, 12, tzinfo=UTC))


def test_later_runs_redo_the_overlap_and_do_nothing_without_a_new_bucket():
    last_done = datetime(2026, 3, 1, 12, 28, tzinfo=UTC)
    assert pending(MINUTE, NOW, last_done) is None
    assert pending(MINUTE, NOW + timedelta(minutes=1), last_done) == (
        datetime(2026, 3, 1, 12, 27, tzinfo=UTC), datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    long_ago = datetime(2026, 2, 1, tzinfo=UTC)  # down for a month: 2 h at most
    start, end = pending(MINUTE, NOW, long_ago)
    assert end - start == timedelta(hours=2)
    assert pending(HOUR, NOW, datetime(2026, 3, 1, 11, tzinfo=UTC)) is None
    assert pending(HOUR, NOW, datetime(2026, 3, 1, 9, tzinfo=UTC)) == (
        datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 12, tzinfo=UTC))


class FakeRollupStore:
    def __init__(self, newest):
        self.newest = newest
        self.calls = []

    def newest_bucket(self, resolution, since):
        self.calls.append(("newest", resolution, since))
        return self.newest.get(resolution)

    def aggregate(self, measurement, start, end, resolution):
        self.calls.append(("aggregate", measurement, start, end, resolution))
        return [DataPoint(measurement, (("node", "a"), ("role", "serve")), {"x": 1}, start)]

    def write(self, points, retention_policy=None):
        self.calls.append(("write", points[0].measurement, len(points), retention_policy))


def test_a_run_writes_each_chunk_to_its_policy_with_the_marker_last():
    store = FakeRollupStore({"1m": datetime(2026, 3, 1, 12, 26, tzinfo=UTC),
                             "1h": datetime(2026, 3, 1, 11, tzinfo=UTC)})
    written = run_rollups(store, NOW, measurements=("process", "notify_delivery", "cache"))
    assert written == 3  # one chunk of minutes (12:25-12:29); no new hour
    aggregates = [c for c in store.calls if c[0] == "aggregate"]
    assert [c[1] for c in aggregates] == ["notify_delivery", "cache", "process"]
    assert {(c[2], c[3], c[4]) for c in aggregates} == {
        (datetime(2026, 3, 1, 12, 25, tzinfo=UTC), datetime(2026, 3, 1, 12, 29, tzinfo=UTC),
         "1m")}
    assert {c[3] for c in store.calls if c[0] == "write"} == {"rollup_1m"}


def test_a_catch_up_goes_in_chunks_oldest_first():
    store = FakeRollupStore({})
    run_rollups(store, NOW, measurements=("process",))
    minutes_ = [c for c in store.calls if c[0] == "aggregate" and c[4] == "1m"]
    hours = [c for c in store.calls if c[0] == "aggregate" and c[4] == "1h"]
    assert len(minutes_) == 4 and len(hours) == 8  # 120 / 30 and 48 / 6
    assert all(a[3] == b[2] for a, b in zip(minutes_, minutes_[1:], strict=False))
    assert {c[3] for c in store.calls if c[0] == "write"} == {"rollup_1m", "rollup_1h"}
