"""Slow statements and pool waits, measured on the real databases."""

import threading

import pytest
from sqlalchemy import exc, text

from service.adapters.database import make_engine
from service.adapters.db_metrics import QueryStats
from tests.support.fakes import RecordingTelemetry


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_slow_statement_is_recorded_by_shape_without_its_values(engine):
    stats = QueryStats(engine, slow_ms=50)
    with engine.connect() as conn:
        for secret in ("hunter2", "swordfish"):
            conn.execute(text("SELECT pg_sleep(0.06), :secret AS s"), {"secret": secret})
        conn.execute(text("SELECT 1"))  # fast: not slow
    telemetry = RecordingTelemetry()
    stats.emit(telemetry)
    slow = [(tags, fields) for m, tags, fields in telemetry.records if m == "db_slow_query"]
    assert len(slow) == 1  # both executions are one shape
    tags, fields = slow[0]
    assert fields["count"] == 2 and fields["duration_ms_max"] >= 50
    assert fields["shape"] == "SELECT pg_sleep(?), ? AS s"
    assert "hunter2" not in repr(telemetry.records) and "swordfish" not in repr(telemetry.records)
    assert stats.slow_total == 2
    selects = [f for m, t, f in telemetry.records if m == "db_query" and t["operation"] == "select"]
    assert selects[0]["slow"] == 2 and selects[0]["count"] == 3


def test_every_way_of_executing_is_timed_and_errors_still_reach_the_caller(engine):
    stats = QueryStats(engine, slow_ms=10_000)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE timed_probe (n INTEGER PRIMARY KEY)")  # no params
        conn.execute(text("INSERT INTO timed_probe (n) VALUES (:n)"),
                     [{"n": 1}, {"n": 2}, {"n": 3}])  # executemany
        conn.execute(text("UPDATE timed_probe SET n = n + 10 WHERE n > :n"), {"n": 1})
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO timed_probe (n) VALUES (:n)"), {"n": 12})
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE timed_probe")
    telemetry = RecordingTelemetry()
    stats.emit(telemetry)
    counted = {t["operation"]: f for m, t, f in telemetry.records if m == "db_query"}
    assert counted["update"]["count"] == 1 and counted["update"]["rows"] == 2
    assert counted["insert"]["count"] >= 1 and counted["insert"]["rows"] >= 3
    assert counted["other"]["count"] >= 2  # CREATE and DROP, sent without parameters


def test_pool_waits_are_measured_when_the_pool_is_exhausted(pg_url):
    engine = make_engine(pg_url, pool_size=1)
    engine.pool._max_overflow = 0  # one connection: the second checkout must wait
    stats = QueryStats(engine)
    try:
        holding = threading.Event()

        def hold():
            with engine.connect() as conn:
                holding.set()
                conn.execute(text("SELECT pg_sleep(0.2)"))

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(5)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        holder.join()
        telemetry = RecordingTelemetry()
        stats.emit(telemetry)
        pool = [f for m, _, f in telemetry.records if m == "db_pool"][0]
        assert pool["waits"] >= 2 and pool["wait_ms_max"] >= 100
    finally:
        engine.dispose()
