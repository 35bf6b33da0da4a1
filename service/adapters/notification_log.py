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

The tables are named ``log_*``: the earlier per-user-offset schema
(``messages``/``entries``/``streams``) is not read or migrated.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    bindparam,
    func,
    literal,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.domain.errors import StorageUnavailable
from service.domain.model import Appended, Notification, Priority, PublishRequest
from service.service_layer.ports import StreamPosition

metadata = MetaData()

log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True),  # one row, id 1
    Column("head", BigInteger, nullable=False),  # the newest offset
    Column("streams", BigInteger, nullable=False),  # streams created: a broadcast's recipients
)

entries = Table(
    "log_entries",
    metadata,
    Column("log_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(32), nullable=False, unique=True),
    Column("category", String(64), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("broadcast", Integer, nullable=False),
    Index("log_entries_broadcast", "broadcast", "log_offset"),
    Index("log_entries_created", "created_at_us"),  # the age bound's cut
)

recipients = Table(
    "log_recipients",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("log_offset", BigInteger, primary_key=True, autoincrement=False),
    # the trimmer deletes a targeted entry once no recipient row refers to it
    Index("log_recipients_offset", "log_offset"),
)

streams = Table(
    "log_streams",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("since", BigInteger, nullable=False),  # the log's head when the stream began
    Column("acked", BigInteger, nullable=False),
    Column("trimmed", BigInteger, nullable=False),  # >= since; nothing at or below is left
    Column("epoch", Integer, nullable=False),
)

_ENTRY_COLUMNS = (entries.c.log_offset, entries.c.id, entries.c.category, entries.c.priority,
                  entries.c.payload, entries.c.created_at_us)


def create_schema(engine: Engine) -> None:
    """Create missing tables and the head row (create-all at start, for now)."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with storage_errors():
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(log_head).on_conflict_do_nothing(),
                         {"id": 1, "head": 0, "streams": 0})


@contextmanager
def storage_errors() -> Iterator[None]:
    try:
        yield
    except (OperationalError, PoolTimeout) as exc:
        raise StorageUnavailable(
            f"the notification log is unavailable: {exc.orig if hasattr(exc, 'orig') else exc}"
        ) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StorageUnavailable("the database connection was lost") from exc
        raise


def _to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def _notification(row: Row) -> Notification:
    return Notification(row.id, row.log_offset, row.category, Priority(row.priority),
                        row.payload, _from_us(row.created_at_us))


def _listed_users(postgres: bool) -> ColumnElement[str]:
    """The recipients as one bound list (``user_ids``), so that no statement
    carries a parameter per user: unnest(ARRAY) on PostgreSQL, json_each on
    SQLite."""
    if postgres:
        ids = bindparam("user_ids", type_=postgresql.ARRAY(String))
        return func.unnest(ids).column_valued("recipient")
    return func.json_each(bindparam("user_ids", type_=String)).table_valued("value").c.value


class SqlNotificationLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = postgres = engine.dialect.name == "postgresql"
        insert = postgresql.insert if postgres else sqlite.insert
        # The head row's lock orders every append: offsets commit in order.
        self._bump = (update(log_head).where(log_head.c.id == 1)
                      .values(head=log_head.c.head + 1)
                      .returning(log_head.c.head, log_head.c.streams))
        users = _listed_users(postgres)
        since = bindparam("since", type_=BigInteger)
        # the WHERE keeps SQLite's parser from reading ON CONFLICT as a join
        self._new_streams = insert(streams).from_select(
            ["user_id", "since", "acked", "trimmed", "epoch"],
            select(users, since, since, since, literal(1)).where(true()).order_by(users),
        ).on_conflict_do_nothing()
        # SQLite: plain executemany of tuples measured faster than INSERT ... SELECT
        self._add_recipients = (
            recipients.insert().from_select(
                ["user_id", "log_offset"],
                select(users, bindparam("log_offset", type_=BigInteger)))
            if postgres else str(recipients.insert().compile(dialect=sqlite.dialect())))
        self._ack = (update(streams)
                     .where(streams.c.user_id == bindparam("u"), streams.c.acked < bindparam("o"))
                     .values(acked=bindparam("o")))
        head = log_head.c.head
        self._open_stream = insert(streams).from_select(
            ["user_id", "since", "acked", "trimmed", "epoch"],
            select(bindparam("user_id", type_=String), head, head, head, literal(1))
            .where(log_head.c.id == 1),
        ).on_conflict_do_nothing()
        self._count_streams = update(log_head).where(log_head.c.id == 1).values(
            streams=log_head.c.streams + bindparam("created", type_=BigInteger))

    def append(self, request: PublishRequest, message_id: str, created_at: datetime) -> Appended:
        broadcast = request.recipients.broadcast
        user_ids = None if broadcast else tuple(sorted(request.recipients.user_ids))
        with storage_errors(), self._engine.begin() as conn:
            offset, stream_count = conn.execute(self._bump).one()
            conn.execute(entries.insert(), {
                "log_offset": offset,
                "id": message_id,
                "category": request.category,
                "priority": request.priority.value,
                "payload": request.payload_json,
                "created_at_us": _to_us(created_at),
                "broadcast": int(broadcast),
            })
            if user_ids is not None:
                listed = list(user_ids) if self._postgres else json.dumps(user_ids)
                created = conn.execute(self._new_streams,
                                       {"user_ids": listed, "since": offset - 1}).rowcount
                if created:
                    conn.execute(self._count_streams, {"created": created})
                if self._postgres:
                    conn.execute(self._add_recipients, {"user_ids": listed, "log_offset": offset})
                else:
                    conn.exec_driver_sql(self._add_recipients, [(u, offset) for u in user_ids])
        notification = Notification(message_id, offset, request.category, request.priority,
                                    request.payload_json, created_at)
        return Appended(notification, user_ids,
                        stream_count if user_ids is None else len(user_ids))

    def read(self, user_id: str, after: int, limit: int) -> tuple[list[Notification],
                                                                   StreamPosition]:
        """The page comes first, filtered by the stream's floor in the same
        statement (one snapshot), and the position after it: a trim that
        lands in between shows as a floor above what was read, never as a
        silent gap."""
        floor = select(streams.c.trimmed).where(streams.c.user_id == user_id).scalar_subquery()
        own = (select(recipients.c.log_offset.label("o"))
               .where(recipients.c.user_id == user_id, recipients.c.log_offset > after)
               .order_by(recipients.c.log_offset).limit(limit).subquery())
        shared = (select(entries.c.log_offset.label("o"))
                  .where(entries.c.broadcast == 1, entries.c.log_offset > after)
                  .order_by(entries.c.log_offset).limit(limit).subquery())
        picked = union_all(select(own.c.o), select(shared.c.o)).subquery()
        query = (select(*_ENTRY_COLUMNS).join(picked, entries.c.log_offset == picked.c.o)
                 .where(entries.c.log_offset > floor)
                 .order_by(entries.c.log_offset).limit(limit))
        with storage_errors(), self._engine.connect() as conn:
            rows = conn.execute(query).all()
            position = self._position(conn, user_id)
        return [_notification(r) for r in rows], position

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
                    count = conn.execute(select(began_before), {"o": row.log_offset}).scalar()
                    out.append(Appended(_notification(row), None, count))
                else:
                    users = tuple(sorted(listed.get(row.log_offset, ())))
                    out.append(Appended(_notification(row), users, len(users)))
        return out

    def head(self) -> int:
        with storage_errors(), self._engine.connect() as conn:
            return conn.execute(select(log_head.c.head)).scalar_one()

    def open_stream(self, user_id: str) -> StreamPosition:
        """A new stream begins at the log's head: earlier broadcasts are not its."""
        with storage_errors(), self._engine.begin() as conn:
            if conn.execute(self._open_stream, {"user_id": user_id}).rowcount:
                conn.execute(self._count_streams, {"created": 1})
            return self._position(conn, user_id)

    @staticmethod
    def _position(conn: Connection, user_id: str) -> StreamPosition:
        row = conn.execute(
            select(log_head.c.head, streams.c.since, streams.c.acked, streams.c.trimmed,
                   streams.c.epoch)
            .select_from(log_head.outerjoin(streams, streams.c.user_id == user_id))
            .where(log_head.c.id == 1)
        ).one()
        if row.since is None:  # no such stream: it would begin here
            return StreamPosition(head=row.head, acked=row.head, trimmed=row.head,
                                  since=row.head)
        return StreamPosition(head=row.head, acked=row.acked, trimmed=row.trimmed,
                              epoch=row.epoch, since=row.since)

    def ack_many(self, acks: Mapping[str, int]) -> int:
        """Acks only move forward and never past the head: one UPDATE per
        user, in user-id order (as the trimmer locks streams, so the two never
        deadlock), in one transaction, with no read of the rows first."""
        if not acks:
            return 0
        with storage_errors(), self._engine.begin() as conn:
            head = conn.execute(select(log_head.c.head)).scalar_one()
            moved = conn.execute(self._ack, [
                {"u": user_id, "o": min(offset, head)} for user_id, offset in sorted(acks.items())])
        return moved.rowcount

    def ping(self) -> None:
        with storage_errors(), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
