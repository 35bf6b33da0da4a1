"""The notification log in SQL: one append-only log, one stream per user.

Each publish takes the log's next offset (``log_head.head``, bumped under its
row lock, so offsets are committed in order and without gaps) and stores one
``log_entries`` row. A targeted publish also stores one small
``log_recipients`` row per user; a broadcast stores nothing per user.

A user's stream is the entries addressed to them plus the broadcasts since
the stream began (``since``), above what the offline-queue bounds removed
(``trimmed``). Its offsets only increase, with gaps where other users'
entries are; because the log itself has no gaps, a node that was handed
offset n+2 after n knows that n+1 exists and can fetch it.

The tables (``service.adapters.tables``) are named ``log_*``: the earlier
per-user-offset schema (``messages``/``entries``/``streams``) is not read or
migrated.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from psycopg2 import OperationalError as DriverConnectionLost
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    String,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.adapters import publish_keys
from service.adapters.log_append import COUNT_STREAMS, append_postgres, append_sqlite, prepare
from service.adapters.tables import entries, log_head, recipients, streams
from service.domain.errors import StorageBusy, StorageUnavailable, new_error_id
from service.domain.history import HistoryPage, HistoryQuery
from service.domain.idempotency import DEFAULT_WINDOW_S, IdempotencyKey, KeysTaken, PriorPublish
from service.domain.model import Appended, Notification, Priority, PublishRequest
from service.service_layer.ports import UNREAD_CAP, Draft, StreamPosition, Unread

log = logging.getLogger(__name__)

# as a literal, not a bound parameter: the planner must see it matches the partial index
IS_BROADCAST = entries.c.broadcast == literal_column("1")

KNOWN_STREAMS_MAX = 100_000  # user ids remembered, about 10 MB at most
_ENTRY_COLUMNS = (entries.c.log_offset, entries.c.id, entries.c.category, entries.c.priority,
                  entries.c.payload, entries.c.created_at_us)


@contextmanager
def storage_errors() -> Iterator[None]:
    """The database's failures as the service's own errors. Their text (the
    driver's and the pool's words) goes to this node's log once, under an
    id that the error carries to the client: never to the client itself."""
    try:
        yield
    except PoolTimeout as exc:
        error_id = new_error_id()
        log.warning("database pool exhausted [%s]: %s", error_id, exc)
        raise StorageBusy("every connection to the notification log is in use; retry",
                          error_id=error_id) from exc
    except OperationalError as exc:
        error_id = new_error_id()
        log.warning("notification log unavailable [%s]: %s", error_id, exc.orig)
        raise StorageUnavailable("the notification log is unavailable; retry",
                                 error_id=error_id) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            error_id = new_error_id()
            log.warning("database connection lost [%s]: %s", error_id, exc.orig)
            raise StorageUnavailable("the database connection was lost; retry",
                                     error_id=error_id) from exc
        raise
    except DriverConnectionLost as exc:
        # the driver's own, unwrapped: SQLAlchemy resets a pooled connection's
        # isolation level as it takes it back, outside its error wrapping, and
        # a connection the server dropped (a restart) fails right there
        error_id = new_error_id()
        log.warning("database connection lost at check-in [%s]: %s", error_id, exc)
        raise StorageUnavailable("the database connection was lost; retry",
                                 error_id=error_id) from exc


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def _notification(row: Row) -> Notification:
    return Notification(row.id, row.log_offset, row.category, Priority(row.priority),
                        row.payload, _from_us(row.created_at_us))


# Streams are inserted holding no lock but their own new rows, each at the
# head as this statement sees it, and counted in a statement of their own.
# The count takes the head row's lock, which every append holds: in the same
# statement as the inserts it deadlocked with an append to the same new user
# (each waited on a row the other held), and taking that lock first instead
# made every open wait for appends and every append for opens, 1.5 s in a
# storm of 10,000 connections with publishing going on.
_OPEN_STREAMS_POSTGRES = text("""
WITH created AS (
  INSERT INTO log_streams (user_id, since, acked, trimmed, epoch)
  SELECT t.u, h.head, h.head, h.head, 1
  FROM log_head h, unnest(CAST(:users AS varchar[])) WITH ORDINALITY AS t(u, n)
  WHERE h.id = 1 ORDER BY t.n
  ON CONFLICT DO NOTHING RETURNING user_id)
SELECT count(*) FROM created
""")


# Every ack of a flush in one statement, committed as it ends: the stream rows
# are locked in user-id order (as the trimmer locks them, so the two never
# deadlock) and only for the server's own work. A flush of a broadcast's
# thousands of acks used to hold them across a hundred round trips, and an
# append that met one of those rows (a stream another node had created) waited,
# holding the head row, until the flush ended.
_ACK_POSTGRES = text("""
WITH v AS (
  SELECT t.u, LEAST(t.o, (SELECT head FROM log_head WHERE id = 1)) AS o
  FROM unnest(CAST(:users AS varchar[]), CAST(:offsets AS bigint[])) AS t(u, o)),
locked AS (
  SELECT s.user_id FROM log_streams s JOIN v ON s.user_id = v.u AND s.acked < v.o
  ORDER BY s.user_id FOR UPDATE OF s)
UPDATE log_streams s SET acked = v.o FROM v, locked
WHERE s.user_id = v.u AND locked.user_id = v.u AND s.acked < v.o
""")


class SqlNotificationLog:
    def __init__(self, engine: Engine, *, key_window_s: float = DEFAULT_WINDOW_S) -> None:
        self._engine = engine
        self.key_window_s = key_window_s  # how long an Idempotency-Key is remembered
        # users whose stream is committed (streams are never deleted), so that
        # a publish to them skips the statement that would create it
        self._known_streams: set[str] = set()
        self._postgres = postgres = engine.dialect.name == "postgresql"
        # One statement that commits as it ends: the head row's lock is then
        # held for the server's work alone, not until this process, busy with
        # other greenlets (a broadcast's fan-out, its thousands of acks), gets
        # round to sending COMMIT. Measured in the soak benchmark, where every
        # append of one node waited on the other node's idle transactions.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        insert = postgresql.insert if postgres else sqlite.insert
        self._ack = (update(streams)
                     .where(streams.c.user_id == bindparam("u"), streams.c.acked < bindparam("o"))
                     .values(acked=bindparam("o")))
        head = log_head.c.head
        self._open_stream = insert(streams).from_select(
            ["user_id", "since", "acked", "trimmed", "epoch"],
            select(bindparam("user_id", type_=String), head, head, head, literal(1))
            .where(log_head.c.id == 1),
        ).on_conflict_do_nothing()
        # the head, and each named stream that exists (a user without one: a row of nulls)
        self._read_positions = (
            select(log_head.c.head, streams.c.user_id, streams.c.since, streams.c.acked,
                   streams.c.trimmed, streams.c.epoch)
            .select_from(log_head.outerjoin(
                streams, streams.c.user_id.in_(bindparam("users", expanding=True))))
            .where(log_head.c.id == 1))

    def append(self, request: PublishRequest, message_id: str, created_at: datetime) -> Appended:
        return self.append_many([(request, message_id, created_at)])[0]

    def append_many(self, drafts: Sequence[Draft]) -> list[Appended]:
        """Append publishes in one transaction, one commit, one fsync: they
        take the offsets after the head, in order. The head row's lock
        orders appends, so offsets commit in order and without gaps; it is
        taken only once the batch is prepared (``log_append``)."""
        batch = prepare(drafts, self._known_streams)
        for _attempt in range(3):
            try:
                if self._postgres:  # one statement, its own transaction (log_append)
                    with storage_errors(), self._autocommit.connect() as conn:
                        result = append_postgres(conn, batch)
                else:
                    with storage_errors(), self._engine.begin() as conn:
                        result = append_sqlite(conn, batch)
            except IntegrityError:
                if not batch.keys:
                    raise
                self._raise_taken(batch.keys)  # or the keys were past their window: again
                continue
            self._remember_streams(batch.first_place)  # committed: they exist now
            return result
        raise StorageUnavailable("the notification log refused the batch; retry",
                                 error_id=new_error_id())

    def _raise_taken(self, keys: list[tuple[int, IdempotencyKey]]) -> None:
        """Nothing of the batch was stored: say which of its keys another
        publish holds (the batch goes on without those)."""
        with storage_errors(), self._engine.begin() as conn:
            held = publish_keys.taken(conn, [k.key for _, k in keys], self.key_window_s)
        if held:
            raise KeysTaken(held)

    def prior_publish(self, key: str) -> PriorPublish | None:
        """What the publish that stored ``key`` was answered, within the window."""
        with storage_errors(), self._engine.connect() as conn:
            return publish_keys.find(conn, key, self.key_window_s)

    def _remember_streams(self, user_ids: Iterable[str]) -> None:
        known = self._known_streams
        if len(known) > KNOWN_STREAMS_MAX:
            known.clear()  # bounded; forgetting only costs a statement that finds it
        known.update(user_ids)

    def read(self, user_id: str, after: int, limit: int) -> tuple[list[Notification],
                                                                   StreamPosition]:
        """The page comes first, filtered by the stream's floor in the same
        statement (one snapshot), and the position after it: a trim that
        lands in between shows as a floor above what was read, never as a
        silent gap."""
        floor = select(streams.c.trimmed).where(streams.c.user_id == user_id).scalar_subquery()
        # Each side's page starts above the floor, not only above ``after``:
        # broadcasts at or below it (kept for other streams) would otherwise
        # take the page's places, and the entries above them be skipped.
        start = case((floor > after, floor), else_=after)
        own = (select(recipients.c.log_offset.label("o"))
               .where(recipients.c.user_id == user_id, recipients.c.log_offset > start)
               .order_by(recipients.c.log_offset).limit(limit).subquery())
        shared = (select(entries.c.log_offset.label("o"))
                  .where(IS_BROADCAST, entries.c.log_offset > start)
                  .order_by(entries.c.log_offset).limit(limit).subquery())
        picked = union_all(select(own.c.o), select(shared.c.o)).subquery()
        query = (select(*_ENTRY_COLUMNS).join(picked, entries.c.log_offset == picked.c.o)
                 .where(entries.c.log_offset > floor)
                 .order_by(entries.c.log_offset).limit(limit))
        with storage_errors(), self._engine.connect() as conn:
            rows = conn.execute(query).all()
            position = self._positions(conn, [user_id])[user_id]
        return [_notification(r) for r in rows], position

    def history(self, user_id: str, query: HistoryQuery) -> tuple[HistoryPage, StreamPosition]:
        """A page of the user's history (``notification_history``), and where
        the stream stands, read on one connection as ``read`` does."""
        from service.adapters.notification_history import read_history  # it imports this

        with storage_errors(), self._engine.connect() as conn:
            page = read_history(conn, user_id, query)
            position = self._positions(conn, [user_id])[user_id]
        return page, position

    def read_span(self, after: int, upto: int, limit: int = 500) -> list[Appended]:
        span = (entries.c.log_offset > after) & (entries.c.log_offset <= upto)
        with storage_errors(), self._engine.connect() as conn:
            rows = conn.execute(select(*_ENTRY_COLUMNS, entries.c.broadcast).where(span)
                                .order_by(entries.c.log_offset).limit(limit)).all()
            if not rows:
                return []
            last = rows[-1].log_offset
            listed: dict[int, list[str]] = defaultdict(list)
            for user_id, offset in conn.execute(
                    select(recipients.c.user_id, recipients.c.log_offset).where(
                        recipients.c.log_offset > after, recipients.c.log_offset <= last)):
                listed[offset].append(user_id)
            began_before = select(func.count()).where(
                streams.c.since < bindparam("o")).scalar_subquery()
            out = []
            for row in rows:
                if row.broadcast:  # its recipients: the streams begun before it (rare: gaps)
                    count = conn.execute(select(began_before),
                                         {"o": row.log_offset}).scalar_one()
                    out.append(Appended(_notification(row), None, count))
                else:
                    users = tuple(sorted(listed.get(row.log_offset, ())))
                    out.append(Appended(_notification(row), users, len(users)))
        return out

    def head(self) -> int:
        with storage_errors(), self._engine.connect() as conn:
            return conn.execute(select(log_head.c.head)).scalar_one()

    def open_stream(self, user_id: str) -> StreamPosition:
        return self.open_streams([user_id])[user_id]

    def open_streams(self, user_ids: Sequence[str]) -> dict[str, StreamPosition]:
        """Streams begin at the log's head (earlier broadcasts are not theirs):
        those not known to exist are created in one statement and counted in
        another; then every position is read in one more, with the head, as
        one snapshot. A storm of connections costs three statements a batch."""
        users = sorted(set(user_ids))  # one lock order for every node's inserts
        new = [u for u in users if u not in self._known_streams]
        with storage_errors():
            if self._postgres:  # each statement commits as it ends: no row stays locked
                with self._autocommit.connect() as conn:
                    if new:
                        created = conn.execute(_OPEN_STREAMS_POSTGRES, {"users": new}).scalar()
                        if created:
                            conn.execute(COUNT_STREAMS, {"n": created})
                    positions = self._positions(conn, users)
            else:
                with self._engine.begin() as conn:
                    if new:
                        created = conn.execute(self._open_stream,
                                               [{"user_id": u} for u in new]).rowcount
                        if created > 0:
                            conn.execute(COUNT_STREAMS, {"n": created})
                    positions = self._positions(conn, users)
        self._remember_streams(new)
        return positions

    def _positions(self, conn: Connection, users: list[str]) -> dict[str, StreamPosition]:
        head = None
        found: dict[str, StreamPosition] = {}
        for row in conn.execute(self._read_positions, {"users": users}):
            head = row.head
            if row.user_id is not None:
                found[row.user_id] = StreamPosition(head=row.head, acked=row.acked,
                                                    trimmed=row.trimmed, epoch=row.epoch,
                                                    since=row.since)
        # no such stream (a read-only look): it would begin at the head
        assert head is not None, "the log's head row is missing"  # migrate writes it
        begins = StreamPosition(head=head, acked=head, trimmed=head, since=head)
        return {u: found.get(u, begins) for u in users}

    def ack_many(self, acks: Mapping[str, int]) -> int:
        """Acks only move forward and never past the head, with streams
        locked in user-id order (as the trimmer locks them, so the two never
        deadlock): on PostgreSQL one statement (``_ACK_POSTGRES``), on SQLite
        one UPDATE per user in one transaction."""
        if not acks:
            return 0
        if self._postgres:
            users = sorted(acks)
            with storage_errors(), self._autocommit.connect() as conn:
                return conn.execute(_ACK_POSTGRES, {
                    "users": users, "offsets": [acks[u] for u in users]}).rowcount
        with storage_errors(), self._engine.begin() as conn:
            head = conn.execute(select(log_head.c.head)).scalar_one()
            moved = conn.execute(self._ack, [
                {"u": user_id, "o": min(offset, head)} for user_id, offset in sorted(acks.items())])
        return moved.rowcount

    def unread(self, user_id: str, cap: int = UNREAD_CAP) -> Unread:
        """Where the stream stands, then its entries in (max(acked, trimmed),
        head], each side counted up to ``cap`` through its index (own rows,
        broadcasts): bounded work however far behind the user is. Bounded by
        the head read first, so the count and the position agree."""
        with storage_errors(), self._engine.connect() as conn:
            head, acked, trimmed = conn.execute(
                select(log_head.c.head, streams.c.acked, streams.c.trimmed)
                .select_from(log_head.outerjoin(streams, streams.c.user_id == user_id))
                .where(log_head.c.id == 1)).one()
            if acked is None:  # no stream: it would begin at the head, with nothing in it
                return Unread(0, head, head, exists=False)
            base = max(acked, trimmed)
            if base >= head:
                return Unread(0, acked, head)
            own = (select(recipients.c.log_offset)
                   .where(recipients.c.user_id == user_id, recipients.c.log_offset > base,
                          recipients.c.log_offset <= head)
                   .limit(cap).subquery())
            shared = (select(entries.c.log_offset)
                      .where(IS_BROADCAST, entries.c.log_offset > base,
                             entries.c.log_offset <= head)
                      .limit(cap).subquery())
            mine, broadcasts = conn.execute(select(
                select(func.count()).select_from(own).scalar_subquery(),
                select(func.count()).select_from(shared).scalar_subquery())).one()
        return Unread(min(cap, mine + broadcasts), acked, head)

    def ping(self) -> None:
        with storage_errors(), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
