"""The control event log in SQL: one append-only table, and its propagation.

Append-only is the database's rule, not only ours: triggers (made by the
first migration, ``migrations/versions/v0001_initial_schema.py``) refuse
UPDATE and DELETE (and TRUNCATE on PostgreSQL), so not even a hand-typed
statement rewrites history.

Appends are serialised (an EXCLUSIVE table lock on PostgreSQL, which plain
reads do not wait for; ``BEGIN IMMEDIATE`` on SQLite), so seq order is
commit order: a reader that has seen seq n has seen everything below it,
and ``read_after(n)`` is a complete catch-up. The same lock makes the
optimistic check (``expected_seq``) exact, and lets ``at`` be kept
non-decreasing in seq order (a node whose clock lags records the previous
event's time), which makes "config at T" a prefix of the log.

Propagation: on PostgreSQL the append sends ``NOTIFY control_events`` in its
transaction, and each node's listener (a greenlet on a dedicated connection)
wakes on it, then always catches up by seq, so a notify lost in a reconnect
loses nothing; it also catches up every ``poll_s`` as a safety net. The
appending node catches up at once after its commit, on both backends, so it
reads its own writes; on SQLite that is the whole of in-process propagation,
with the poll for the jobs process sharing the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gevent
import gevent.lock
import gevent.select
from sqlalchemy import Engine, Row, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from service.adapters.notification_log import storage_errors
from service.adapters.tables import control_events
from service.domain.control import ControlEvent, EventDraft
from service.domain.errors import ConflictError, StorageUnavailable

log = logging.getLogger(__name__)

CHANNEL = "control_events"
CATCH_UP_PAGE = 500


def _to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _event(row: Row) -> ControlEvent:
    return ControlEvent(row.seq, row.type, json.loads(row.payload), row.actor, row.reason,
                        datetime.fromtimestamp(row.at_us / 1_000_000, tz=UTC))


@dataclass
class _Subscriber:
    callback: Callable[[list[ControlEvent]], None]
    after: int


class SqlControlLog:
    def __init__(self, engine: Engine, *, poll_s: float = 3.0, retry_s: float = 0.5,
                 retry_max_s: float = 10.0) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._poll_s, self._retry_s, self._retry_max_s = poll_s, retry_s, retry_max_s
        self._subscribers: list[_Subscriber] = []
        # one delivery at a time, so each subscriber sees events once, in order;
        # re-entrant: a subscriber may append
        self._delivering = gevent.lock.RLock()
        self._stopped = False
        self._task: Any = None
        self.reconnects = 0  # listener connections lost, for tests and health

    # -- writing ---------------------------------------------------------

    def append(self, draft: EventDraft, expected_seq: int | None = None) -> ControlEvent:
        return self.append_many([draft], expected_seq)[0]

    def append_many(self, drafts: Sequence[EventDraft],
                    expected_seq: int | None = None) -> list[ControlEvent]:
        if not drafts:
            raise ValueError("nothing to append")
        with storage_errors(), self._engine.connect() as conn:
            if self._postgres:
                conn.execute(text(f"LOCK TABLE {control_events.name} IN EXCLUSIVE MODE"))
            else:  # take the write lock now: another process may share the file
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            last_seq, last_at = conn.execute(select(
                func.coalesce(func.max(control_events.c.seq), 0),
                func.coalesce(func.max(control_events.c.at_us), 0))).one()
            if expected_seq is not None and expected_seq != last_seq:
                conn.rollback()
                raise ConflictError(f"the control log is at seq {last_seq}, not {expected_seq}:"
                                    " read the config again, then retry", field="If-Match")
            appended = []
            for draft in drafts:
                last_at = max(_to_us(draft.at), last_at)
                seq = conn.execute(control_events.insert().returning(control_events.c.seq), {
                    "type": draft.type, "payload": json.dumps(dict(draft.payload)),
                    "actor": draft.actor, "reason": draft.reason, "at_us": last_at,
                }).scalar_one()
                appended.append(draft.recorded(
                    seq, datetime.fromtimestamp(last_at / 1_000_000, tz=UTC)))
            if self._postgres:  # delivered at commit, to every listening node
                conn.execute(select(func.pg_notify(CHANNEL, str(appended[-1].seq))))
            conn.commit()
        try:
            self.catch_up()  # read-your-writes here; the in-process path on SQLite
        except StorageUnavailable as exc:  # committed: the listener will deliver it
            log.warning("control log: delivery after append deferred: %s", exc.message)
        return appended

    # -- reading ---------------------------------------------------------

    def read_after(self, seq: int, limit: int | None = None) -> list[ControlEvent]:
        query = (select(control_events).where(control_events.c.seq > seq)
                 .order_by(control_events.c.seq).limit(limit))
        with storage_errors(), self._engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def read_last(self, limit: int) -> list[ControlEvent]:
        query = select(control_events).order_by(control_events.c.seq.desc()).limit(limit)
        with storage_errors(), self._engine.connect() as conn:
            return [_event(row) for row in reversed(conn.execute(query).all())]

    def last_seq(self) -> int:
        with storage_errors(), self._engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(control_events.c.seq), 0))
                                ).scalar_one()

    # -- delivering ------------------------------------------------------

    def subscribe(self, callback: Callable[[list[ControlEvent]], None], after: int = 0) -> None:
        with self._delivering:
            self._subscribers.append(_Subscriber(callback, after))

    def catch_up(self) -> None:
        with self._delivering:
            if not self._subscribers:
                return
            low = min(s.after for s in self._subscribers)
            while True:
                events = self.read_after(low, CATCH_UP_PAGE)
                for subscriber in self._subscribers:
                    new = [e for e in events if e.seq > subscriber.after]
                    if not new:
                        continue
                    subscriber.after = new[-1].seq  # first: a failing one is not fed again
                    try:
                        subscriber.callback(new)
                    except Exception:  # one bad subscriber must not stop the others
                        log.exception("control log subscriber %r failed", subscriber.callback)
                if len(events) < CATCH_UP_PAGE:
                    return
                low = events[-1].seq

    def start(self, spawn: Callable[..., Any]) -> None:
        """Run the listener (PostgreSQL) or the poll (SQLite) as a greenlet."""
        self._stopped = False
        self._task = spawn(self.listen if self._postgres else self.poll)

    def stop(self) -> None:
        self._stopped = True
        kill = getattr(self._task, "kill", None)
        if kill is not None:  # wakes it from its wait; it closes its connection
            kill(block=True, timeout=2)

    def poll(self) -> None:
        """Catch up every ``poll_s``: the SQLite path across processes."""
        while not self._stopped:
            try:
                self.catch_up()
            except StorageUnavailable as exc:
                log.warning("control log: catch-up failed: %s", exc.message)
            gevent.sleep(self._poll_s)

    def listen(self) -> None:
        """LISTEN on a dedicated connection; wake on a notify or every
        ``poll_s``, and always catch up by seq. Reconnect with backoff."""
        delay = self._retry_s
        while not self._stopped:
            conn = None
            try:
                conn = self._connect()
                conn.cursor().execute(f"LISTEN {CHANNEL}")
                delay = self._retry_s
                while not self._stopped:  # LISTEN first: nothing slips in between
                    self.catch_up()
                    gevent.select.select([conn], [], [], self._poll_s)
                    conn.poll()
                    conn.notifies.clear()  # the seq they carry is only a wake-up
            except Exception as exc:  # whatever it was, a dead listener would leave this node stale
                self.reconnects += 1
                expected = (SQLAlchemyError, StorageUnavailable, OSError,
                            self._engine.dialect.loaded_dbapi.Error)
                log.log(logging.WARNING if isinstance(exc, expected) else logging.ERROR,
                        "control log listener: %s; retrying in %.1f s", exc, delay,
                        exc_info=not isinstance(exc, expected))
                gevent.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
            finally:
                if conn is not None:
                    conn.close()

    def _connect(self) -> Any:
        """A psycopg2 connection of its own, outside the pool: it holds LISTEN."""
        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        cparams.setdefault("connect_timeout", 3)
        conn = self._engine.dialect.connect(*cargs, **cparams)
        conn.autocommit = True
        return conn
