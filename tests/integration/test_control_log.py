"""The control event log on real PostgreSQL and on SQLite: append-only by the
database's own rule, seq order under concurrent appends, and propagation
between nodes (LISTEN/NOTIFY with catch-up by seq). What the ControlLog port
promises, on these and on the fake alike (the optimistic check, time in seq
order, subscribers), is in test_contract_control_log.py."""

import time
from datetime import timedelta

import gevent
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.adapters.control_log import SqlControlLog
from service.adapters.database import make_engine
from service.domain.control import EventDraft
from service.domain.errors import ConflictError
from service.service_layer.live_config import LiveConfig
from tests.support.schema import create_test_schema

pytestmark = pytest.mark.usefixtures("cooperative_psycopg2")  # greenlets share psycopg2


@pytest.fixture
def control_log(engine):
    create_test_schema(engine)
    return SqlControlLog(engine)


@pytest.fixture
def pg_engine(pg_url):
    engine = make_engine(pg_url)
    create_test_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def node_a(pg_engine):
    return SqlControlLog(pg_engine)


@pytest.fixture
def node_b(pg_url):
    """A second node on the same PostgreSQL database: its own engine and log."""
    engine = make_engine(pg_url)
    logs = []

    def make(**options):
        log = SqlControlLog(engine, **options)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.stop()
    engine.dispose()


def level(name, actor="ops", reason="test"):
    return EventDraft("level_set", {"level": name}, actor, reason)


def wait_until(condition, timeout=1.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.01)
    return True


def test_events_round_trip_in_seq_order(control_log):
    draft = EventDraft("alert_received", {"name": "p99", "labels": {"a": "b"}}, "grafana", "x")
    first = control_log.append(draft)
    second = control_log.append_many([level("aggressive"), level("maximum", reason="")])
    assert [e.seq for e in [first, *second]] == [1, 2, 3]
    stored = control_log.read_after(0)
    assert stored == [first, *second]
    assert abs(stored[0].at - draft.at) < timedelta(microseconds=2)
    assert control_log.read_after(1, limit=1) == [second[0]]
    assert control_log.read_last(2) == second
    assert control_log.last_seq() == 3


@pytest.mark.parametrize("statement", [
    "UPDATE control_events SET actor = 'mallory' WHERE seq = 1",
    "UPDATE control_events SET seq = 10",
    "DELETE FROM control_events WHERE seq = 1",
    "DELETE FROM control_events",
])
def test_the_database_refuses_to_change_or_remove_an_event(control_log, engine, statement):
    control_log.append(level("aggressive"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    [kept] = control_log.read_after(0)
    assert (kept.seq, kept.actor, kept.payload) == (1, "ops", {"level": "aggressive"})


def test_truncate_is_refused_on_postgresql(node_a, pg_engine):
    node_a.append(level("aggressive"))
    with pytest.raises(DBAPIError, match="append-only"), pg_engine.begin() as conn:
        conn.execute(text("TRUNCATE control_events"))


def test_the_schema_can_be_created_again(control_log, engine):
    control_log.append(level("aggressive"))
    create_test_schema(engine)  # every start migrates
    assert control_log.last_seq() == 1


def test_seqs_are_gap_free_and_in_order_under_concurrent_appends(control_log, database_url):
    """Greenlets on one engine and on a second one: on PostgreSQL they
    interleave (psycopg2 yields), so only the table lock keeps seq order."""
    other = make_engine(database_url)
    logs = [control_log, SqlControlLog(other)]
    # the first connect initialises the dialect under a threading lock, which
    # a greenlet would wait on forever without monkey-patching: do it first
    logs[1].last_seq()
    seen: dict[int, list[int]] = {}

    def appender(k):
        for i in range(15):
            event = logs[k % 2].append(level("aggressive", actor=f"w{k}", reason=str(i)))
            seen.setdefault(k, []).append(event.seq)

    holes = []

    def reader():
        """Seq order is commit order: a reader never sees n+1 before n."""
        while len(holes) < 100 and not all(len(seen.get(k, ())) == 15 for k in range(6)):
            seqs = [e.seq for e in control_log.read_after(0)]
            if seqs != list(range(1, len(seqs) + 1)):
                holes.append(seqs)
            gevent.sleep(0)

    watcher = gevent.spawn(reader)
    gevent.joinall([gevent.spawn(appender, k) for k in range(6)], raise_error=True)
    watcher.join()
    other.dispose()
    assert holes == []
    events = control_log.read_after(0)
    assert [e.seq for e in events] == list(range(1, 91))
    for k, seqs in seen.items():
        assert seqs == sorted(seqs)  # each writer's own appends in its order
        mine = [int(e.reason) for e in events if e.actor == f"w{k}"]
        assert mine == list(range(15))
    ats = [e.at for e in events]
    assert ats == sorted(ats)  # at never goes back in seq order


def test_on_sqlite_an_append_reaches_the_subscribers_before_it_returns(sqlite_url):
    engine = make_engine(sqlite_url)
    create_test_schema(engine)
    log, seen = SqlControlLog(engine), []
    log.subscribe(seen.extend)
    log.append(level("aggressive"))
    assert [e.seq for e in seen] == [1]
    log.append_many([level("maximum"), level("balanced")])
    assert [e.seq for e in seen] == [1, 2, 3]  # once each, in order
    engine.dispose()


def test_an_append_on_one_node_reaches_the_other_within_a_second(node_a, pg_engine, node_b):
    b = node_b()
    seen = []
    b.subscribe(seen.extend)
    b.start(gevent.spawn)
    assert wait_until(lambda: b.reconnects == 0 and _listening(pg_engine) == 1, 2.0)
    started = time.monotonic()
    appended = node_a.append(level("maximum", actor="node-a"))
    assert wait_until(lambda: seen, 1.0), "no notify delivered within 1 s"
    assert time.monotonic() - started < 1.0
    assert seen == [appended]


def test_a_late_subscriber_catches_up_on_everything_in_seq_order(node_a, node_b):
    before = [node_a.append(level(name)) for name in ("aggressive", "maximum", "balanced")]
    b, seen = node_b(), []
    b.subscribe(seen.extend)
    b.start(gevent.spawn)  # no notify of the three will ever come
    assert wait_until(lambda: len(seen) == 3, 1.0)
    after = node_a.append(level("conservative"))
    assert wait_until(lambda: len(seen) == 4, 1.0)
    assert seen == [*before, after]


def test_a_lost_notify_is_made_up_by_the_catch_up(node_a, pg_engine, node_b):
    """The listener's connection dies; what is appended meanwhile arrives
    after it reconnects. An event committed without any NOTIFY at all
    arrives with the next poll."""
    b, seen = node_b(retry_s=0.5, poll_s=0.3), []
    b.subscribe(seen.extend)
    b.start(gevent.spawn)
    assert wait_until(lambda: _listening(pg_engine) == 1, 2.0)
    with pg_engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE query LIKE 'LISTEN control_events%' "
                          "AND datname = current_database()"))
    # pg_terminate_backend only signals the backend: append once the listener
    # has seen its connection die (it then waits retry_s before reconnecting),
    # or the NOTIFY could still reach the old connection first
    assert wait_until(lambda: b.reconnects >= 1, 2.0)
    missed = node_a.append(level("maximum"))
    assert wait_until(lambda: seen == [missed], 2.0)
    with pg_engine.begin() as conn:  # a writer that forgot to notify
        conn.execute(text("INSERT INTO control_events (type, payload, actor, reason, at_us) "
                          "VALUES ('level_set', '{\"level\": \"balanced\"}', 'psql', '', 0)"))
    assert wait_until(lambda: len(seen) == 2, 1.0)
    assert [e.seq for e in seen] == [1, 2]


def test_the_live_config_of_another_node_follows_within_a_second(node_a, node_b):
    applied_a, applied_b = [], []
    a = LiveConfig("balanced", {}, applied_a.append, None, log=node_a)
    b_log = node_b()
    b = LiveConfig("balanced", {"batch_size": 7}, applied_b.append, None, log=b_log)
    b_log.start(gevent.spawn)
    a.change({"level": "aggressive", "parameters": {"batch_timeout_ms": 25}, "reason": "peak"})
    assert wait_until(lambda: b.seq == 2, 1.0)
    assert (b.level, b.overrides, b.values["batch_size"]) == (
        "aggressive", {"batch_timeout_ms": 25.0}, 7)  # b's own start-up override stays
    assert applied_b[-1] == b.values
    with pytest.raises(ConflictError):
        b.change({"level": "maximum"}, expected_seq=1)
    a.rollback({"to_seq": 0}, expected_seq=2)
    assert wait_until(lambda: b.level == "balanced" and b.overrides == {}, 1.0)


def _listening(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE query LIKE 'LISTEN control_events%' "
                          "AND datname = current_database()")).scalar()
