"""The schema's migrations on SQLite and on real PostgreSQL: ``migrate``
brings an empty database to head, and head is exactly the tables the code
uses; it is idempotent and one run at a time; a database that ``create_all``
made before there were migrations is adopted, not refused; and
``python -m service migrate`` does it from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from service.adapters.database import make_engine
from service.adapters.migrate import (
    FIRST_REVISION,
    SchemaMismatch,
    head_revision,
    migrate,
    service_tables_only,
)
from service.adapters.tables import control_events, log_head, metadata
from tests.support.repository import ROOT

# What create_control_schema ran at every start, before migrations.
OLD_TRIGGERS = {
    "postgresql": (
        """CREATE OR REPLACE FUNCTION control_events_append_only() RETURNS trigger
           LANGUAGE plpgsql AS $$
           BEGIN
             RAISE EXCEPTION 'control_events is append-only: % refused', TG_OP
               USING ERRCODE = 'insufficient_privilege';
           END $$""",
        """CREATE OR REPLACE TRIGGER control_events_no_change
           BEFORE UPDATE OR DELETE ON control_events
           FOR EACH ROW EXECUTE FUNCTION control_events_append_only()""",
        """CREATE OR REPLACE TRIGGER control_events_no_truncate
           BEFORE TRUNCATE ON control_events
           FOR EACH STATEMENT EXECUTE FUNCTION control_events_append_only()""",
    ),
    "sqlite": tuple(
        f"""CREATE TRIGGER IF NOT EXISTS control_events_no_{op.lower()}
            BEFORE {op} ON control_events
            BEGIN SELECT RAISE(ABORT, 'control_events is append-only: {op} refused'); END"""
        for op in ("UPDATE", "DELETE")),
}


@pytest.fixture
def engine(database_url):
    """An empty database (the conftest's ``engine`` is migrated already)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def create_the_old_way(engine: Engine) -> None:
    """As a start did before migrations: create_all, the control log's
    triggers, the head row; no alembic_version."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as conn:
        metadata.create_all(conn)
        for statement in OLD_TRIGGERS[engine.dialect.name]:
            conn.execute(text(statement))
        conn.execute(insert(log_head).on_conflict_do_nothing(),
                     {"id": 1, "head": 0, "streams": 0})


def differences(engine: Engine) -> list:
    """What autogenerate would change to make the database the tables' metadata."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": service_tables_only(metadata)})
        return compare_metadata(context, metadata)


def revision_in(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def append_event(engine: Engine, actor: str = "ops") -> None:
    with engine.begin() as conn:
        conn.execute(control_events.insert(), {"type": "level_set", "payload": "{}",
                                               "actor": actor, "reason": "", "at_us": 1})


def assert_append_only(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE control_events SET actor = 'someone else'"))


def test_an_empty_database_is_migrated_to_head_which_is_the_tables_the_code_uses(engine):
    assert migrate(engine) == head_revision() == revision_in(engine)
    assert differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, head, streams FROM log_head")).all() == [(1, 0, 0)]
    append_event(engine)
    assert_append_only(engine)


def test_migrating_again_changes_nothing(engine):
    migrate(engine)
    append_event(engine)
    assert migrate(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM control_events")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM log_head")).scalar() == 1


def test_a_database_made_by_create_all_is_adopted_with_what_it_holds(engine):
    create_the_old_way(engine)
    append_event(engine)
    assert revision_in(engine) is None
    assert migrate(engine) == head_revision()
    assert revision_in(engine) == head_revision()
    assert differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM control_events")).scalars().all() == ["ops"]
    assert_append_only(engine)


def test_an_old_start_that_stopped_half_way_is_completed(engine):
    """``jobs`` created only the control log's table; nothing else ran."""
    with engine.begin() as conn:
        control_events.create(conn)
    append_event(engine)
    assert migrate(engine) == head_revision()
    assert differences(engine) == []
    assert_append_only(engine)


def test_an_old_database_keeps_its_earlier_indexes(engine):
    """Made before 2026-11-27: a full index on broadcasts, and a unique id."""
    create_the_old_way(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX log_entries_broadcasts"))
        conn.execute(text("CREATE INDEX log_entries_broadcast ON log_entries (broadcast, "
                          "log_offset)"))
        conn.execute(text("CREATE UNIQUE INDEX log_entries_id ON log_entries (id)"))
    assert migrate(engine) == FIRST_REVISION
    indexes = {i["name"] for i in inspect(engine).get_indexes("log_entries")}
    assert {"log_entries_broadcast", "log_entries_id"} <= indexes


def test_tables_that_are_not_the_first_revisions_are_refused_and_left_alone(engine):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE log_streams (user_id VARCHAR(128) PRIMARY KEY, "
                          "since BIGINT NOT NULL)"))
    with pytest.raises(SchemaMismatch, match="epoch"):
        migrate(engine)
    assert inspect(engine).get_table_names() == ["log_streams"]


def test_other_tables_in_the_database_are_ignored(engine):
    """The earlier per-user-offset schema's tables may still be there."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE messages (id INTEGER PRIMARY KEY)"))
    create_the_old_way(engine)
    assert migrate(engine) == head_revision()
    assert "messages" in inspect(engine).get_table_names()


def test_processes_migrating_at_once_all_succeed(database_url):
    """Nodes starting together on a fresh database (docker compose starts
    two replicas; ``make run`` starts serve and jobs): one creates the
    schema, the others wait for it and find it done."""
    engines = [make_engine(database_url) for _ in range(6)]
    start, revisions, errors = threading.Barrier(len(engines)), [], []

    def node(engine: Engine) -> None:
        start.wait()
        try:
            revisions.append(migrate(engine))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert revisions == [head_revision()] * len(engines)


def run_migrate(database_url: str, tmp_path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VAR_DIR": str(tmp_path / "var"),
           "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "service", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_python_m_service_migrate_migrates_and_says_to_which_revision(database_url, tmp_path):
    first, again = run_migrate(database_url, tmp_path), run_migrate(database_url, tmp_path)
    for done in (first, again):
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"database schema at revision {head_revision()} (")
    assert "upgraded from revision none" in first.stderr
    assert "upgraded" not in again.stderr
    engine = make_engine(database_url)
    try:
        assert revision_in(engine) == head_revision()
    finally:
        engine.dispose()


def test_python_m_service_migrate_refuses_a_database_it_cannot_reach(tmp_path):
    done = run_migrate("postgresql+psycopg2://postgres@127.0.0.1:1/notify", tmp_path)
    assert done.returncode == 4
    assert done.stderr.splitlines()[-1].startswith(
        "cannot migrate: the notification log is unavailable")
