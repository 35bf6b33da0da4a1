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
