"""The pool checkout patch (service/adapters/patches/pool_checkout.py) held to
SQLAlchemy's QueuePool on real PostgreSQL: the same checkouts and returns
give the same connections, the same pool states and the same timeout;
the deliberate difference is that each checkout's wait is measured."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, exc
from sqlalchemy.pool import QueuePool

from service.adapters.patches import PatchesInForce, check
from service.adapters.patches.pool_checkout import TimedQueuePool, pool_class

TIMEOUT_S = 0.3


def _script(url: str, poolclass: type[QueuePool]) -> tuple[list, QueuePool]:
    """Check connections out past the pool's size and overflow, return them
    and check out again; what each step gave, as names in creation order."""
    engine = create_engine(url, poolclass=poolclass, pool_size=2, max_overflow=1,
                           pool_timeout=TIMEOUT_S)
    pool = engine.pool
    names: dict[int, str] = {}

    def name(connection) -> str:
        return names.setdefault(id(connection.dbapi_connection), f"c{len(names)}")

    seen: list = []
    try:
        held = [pool.connect() for _ in range(3)]  # two of the pool's, one overflow
        seen.append(([name(c) for c in held], pool.status()))
        with pytest.raises(exc.TimeoutError) as timed_out:
            pool.connect()  # waits TIMEOUT_S, then gives up
        seen.append(str(timed_out.value).split(" (Background")[0])
        held.pop(0).close()
        seen.append((name(pool.connect()), pool.status()))  # the one just returned
        for connection in held:
            connection.close()
        again = pool.connect()
        seen.append((name(again), pool.checkedout(), pool.overflow()))
        again.close()
        seen.append(pool.status())
    finally:
        engine.dispose()
    return seen, pool


def test_checkouts_give_what_sqlalchemys_queuepool_gives(pg_url):
    ours, timed = _script(pg_url, TimedQueuePool)
    theirs, _ = _script(pg_url, QueuePool)
    assert ours == theirs
    count, total_ms, peak_ms = timed.take_waits()
    assert count >= 6  # every checkout (and upstream's retry of one) is a wait
    assert peak_ms >= TIMEOUT_S * 1000 * 0.9  # the one that timed out waited its timeout
    assert total_ms >= peak_ms
    assert timed.take_waits() == (0, 0.0, 0.0)  # taken: the next interval starts at nothing


def test_left_out_the_pool_is_sqlalchemys_own():
    assert pool_class(check(allow_unpatched=False)) is TimedQueuePool
    assert pool_class(PatchesInForce(frozenset())) is QueuePool
