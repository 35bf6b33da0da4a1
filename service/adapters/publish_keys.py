"""Idempotency keys in the log's database (``service.domain.idempotency``).

A key row is written by the same statement (PostgreSQL) or transaction
(SQLite) as its entry, so it exists exactly when the entry does, whichever
node committed it. The primary key makes a second publish with the same key
fail as a whole, with nothing stored; the log then answers it from the row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Connection, delete, select

from service.adapters.tables import publish_keys
from service.domain.idempotency import PriorPublish

INSERT_SQLITE = ("INSERT INTO publish_keys (key, fingerprint, log_offset, message_id, "
                 "created_at_us, recipients) VALUES (?, ?, ?, ?, ?, ?)")


def cutoff_us(window_s: float, now: float | None = None) -> int:
    """Keys created before this are forgotten."""
    return int(((time.time() if now is None else now) - window_s) * 1_000_000)


_PRIOR = (publish_keys.c.fingerprint, publish_keys.c.message_id, publish_keys.c.log_offset,
          publish_keys.c.created_at_us, publish_keys.c.recipients)


def find(conn: Connection, key: str, window_s: float) -> PriorPublish | None:
    row = conn.execute(select(*_PRIOR).where(
        publish_keys.c.key == key, publish_keys.c.created_at_us >= cutoff_us(window_s))).first()
    return None if row is None else PriorPublish(*row)


def taken(conn: Connection, keys: Iterable[str], window_s: float) -> dict[str, PriorPublish]:
    """The keys of these that are stored and still in their window, with
    what their publish was answered; rows past it are deleted, so that the
    key can be used again."""
    keys = list(keys)
    old = cutoff_us(window_s)
    conn.execute(delete(publish_keys).where(publish_keys.c.key.in_(keys),
                                            publish_keys.c.created_at_us < old))
    rows = conn.execute(select(publish_keys.c.key, *_PRIOR).where(publish_keys.c.key.in_(keys)))
    return {row[0]: PriorPublish(*row[1:]) for row in rows}


def expire(conn: Connection, window_s: float, now: float | None = None) -> int:
    """Delete the keys past their window: the table stays bounded by the
    publishes of one window."""
    result = conn.execute(delete(publish_keys).where(
        publish_keys.c.created_at_us < cutoff_us(window_s, now)))
    return result.rowcount or 0
