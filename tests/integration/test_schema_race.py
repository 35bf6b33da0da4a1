"""Nodes starting together on a fresh PostgreSQL database each create the
schema: none may fail on the race (docker compose starts two replicas)."""

import threading

from sqlalchemy import create_engine

from service.adapters.control_log import create_control_schema
from service.adapters.notification_log import create_schema


def test_processes_creating_the_schema_at_once_all_succeed(pg_url):
    engines = [create_engine(pg_url) for _ in range(6)]
    start, errors = threading.Barrier(len(engines)), []

    def node(engine):
        start.wait()
        try:
            create_schema(engine)
            create_control_schema(engine)
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for engine in engines:
        engine.dispose()
    assert errors == []


def test_a_table_another_process_created_meanwhile_is_found_on_a_second_look(tmp_path):
    """make run starts serve and jobs together on a fresh SQLite file: both
    found control_events missing, and the second CREATE failed ("already
    exists"), so serve refused to start. Forced here: the table is created
    on another connection just before this one's CREATE."""
    from sqlalchemy import Column, Integer, MetaData, Table, event, text

    from service.adapters.database import create_tables, make_engine

    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    engine, other = make_engine(url), create_engine(url)
    metadata = MetaData()
    table = Table("raced", metadata, Column("id", Integer, primary_key=True))

    @event.listens_for(table, "before_create", once=True)
    def created_elsewhere(*_args, **_kwargs) -> None:
        with other.begin() as conn:
            conn.execute(text("CREATE TABLE raced (id INTEGER PRIMARY KEY)"))

    try:
        create_tables(engine, metadata)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM raced")).scalar() == 0
    finally:
        engine.dispose()
        other.dispose()
