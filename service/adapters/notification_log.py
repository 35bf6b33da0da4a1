"""The notification log in SQL: one append-only stream per user.

Offsets are per user, start at 1 and have no gaps: each append takes the
user's stream row lock (``streams.head``), so offsets are assigned and
committed in the same order even with many publishers at once. A node that
sees offset n+2 after n therefore knows that n+1 exists and can fetch it.

Message bodies live once in ``messages``; ``entries`` holds one small row per
recipient, so a broadcast stores its payload once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.domain.errors import StorageUnavailable
from service.domain.model import Message, Notification, Priority, PublishRequest
from service.service_layer.ports import StreamPosition

metadata = MetaData()

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("category", String(64), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("broadcast", Integer, nullable=False, default=0),
)

streams = Table(
    "streams",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("head", BigInteger, nullable=False, default=0),
    Column("acked", BigInteger, nullable=False, default=0),
    Column("epoch", Integer, nullable=False, default=1),
)

entries = Table(
    "entries",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("stream_offset", BigInteger, primary_key=True),
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False),
    # trimming deletes a message once no entry refers to it any more
    Index("entries_message_id", "message_id"),
)


def create_schema(engine: Engine) -> None:
    """Create missing tables (the README says: create-all at start for now)."""
    with storage_errors():
        metadata.create_all(engine)
        for index in entries.indexes:  # create_all skips indexes of existing tables
            index.create(engine, checkfirst=True)


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


def _recipients(postgres: bool) -> ColumnElement[str]:
    """The recipients as one bound list (``user_ids``), so that no statement
    carries a parameter per user: unnest(ARRAY) on PostgreSQL, json_each on
    SQLite."""
    if postgres:
        ids = bindparam("user_ids", type_=postgresql.ARRAY(String))
        return func.unnest(ids).column_valued("recipient")
    return func.json_each(bindparam("user_ids", type_=String)).table_valued("value").c.value


class _FanOut:
    """The statements of one kind of append (to a broadcast or to listed
    users). Each recipient's stream head moves by one under the stream's row
    lock, and the new head is the offset of the recipient's entry."""

    def __init__(self, postgres: bool, broadcast: bool) -> None:
        self._postgres = postgres
        if broadcast:  # every known stream
            bump = update(streams).values(head=streams.c.head + 1)
            if postgres:
                # Lock the streams in user-id order, as ack_many and the
                # trimmer do, so that publishers never deadlock, and move on
                # exactly the rows locked: a stream created meanwhile is not
                # touched out of order (SQLite has one writer at a time).
                locked = (select(streams.c.user_id).order_by(streams.c.user_id)
                          .with_for_update().subquery("locked"))
                bump = bump.where(streams.c.user_id == locked.c.user_id)
        else:
            # Create missing streams at head 1 and move the others on; the
            # rows are taken one by one in the SELECT's order, so on
            # PostgreSQL the locks come in user-id order here too.
            ids = _recipients(postgres)
            new = (postgresql.insert if postgres else sqlite.insert)(streams).from_select(
                ["user_id", "head", "acked", "epoch"],
                select(ids, 1, 0, 1).where(true()).order_by(ids))
            bump = new.on_conflict_do_update(
                index_elements=[streams.c.user_id], set_={"head": streams.c.head + 1})
        bump = bump.returning(streams.c.user_id, streams.c.head)
        if postgres:
            # The entries come from the bump's own RETURNING rows, in the same
            # statement: exactly the streams it moved, with no row from Python.
            bumped = bump.cte("bumped")
            self._bump = entries.insert().from_select(
                ["user_id", "stream_offset", "message_id"],
                select(bumped.c.user_id, bumped.c.head, bindparam("message_id", type_=String)),
            ).returning(entries.c.user_id, entries.c.stream_offset)
        else:
            # SQLite has no DML in WITH, and an INSERT ... SELECT measured
            # slower than executemany (its statement journal spills to a temp
            # file), so the entries go in as plain tuples, in user-id order,
            # without SQLAlchemy's per-row parameter processing.
            self._bump = bump
            self._entries = str(entries.insert().compile(dialect=sqlite.dialect()))

    def run(self, conn: Connection, params: dict) -> list[tuple[str, int]]:
        """(user_id, offset) of each new entry, sorted by user id."""
        heads = conn.execute(self._bump, params).all()
        heads.sort(key=itemgetter(0))
        if not self._postgres and heads:
            message_id = params["message_id"]
            conn.exec_driver_sql(self._entries, [(u, o, message_id) for u, o in heads])
        return heads


class SqlNotificationLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert
        self._fan_out = {b: _FanOut(self._postgres, b) for b in (True, False)}

    def append(
        self, request: PublishRequest, message_id: str, created_at: datetime
    ) -> list[Notification]:
        broadcast = request.recipients.broadcast
        params = {"message_id": message_id}
        if not broadcast:
            users = sorted(request.recipients.user_ids)
            params["user_ids"] = users if self._postgres else json.dumps(users)
        with storage_errors(), self._engine.begin() as conn:
            conn.execute(messages.insert(), {
                "id": message_id,
                "category": request.category,
                "priority": request.priority.value,
                "payload": request.payload_json,
                "created_at_us": _to_us(created_at),
                "broadcast": int(broadcast),
            })
            heads = self._fan_out[broadcast].run(conn, params)
        message = Message(message_id, request.category, request.priority,
                          request.payload_json, created_at)
        return [Notification(message, user_id, offset) for user_id, offset in heads]

    def read(self, user_id: str, after: int, limit: int) -> list[Notification]:
        query = (
            select(
                entries.c.stream_offset,
                messages.c.id,
                messages.c.category,
                messages.c.priority,
                messages.c.payload,
                messages.c.created_at_us,
            )
            .join(messages, messages.c.id == entries.c.message_id)
            .where(entries.c.user_id == user_id, entries.c.stream_offset > after)
            .order_by(entries.c.stream_offset)
            .limit(limit)
        )
        with storage_errors(), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Notification(Message(r.id, r.category, Priority(r.priority), r.payload,
                                 _from_us(r.created_at_us)), user_id, r.stream_offset)
            for r in rows
        ]

    def open_stream(self, user_id: str) -> StreamPosition:
        with storage_errors(), self._engine.begin() as conn:
            conn.execute(
                self._insert(streams).on_conflict_do_nothing(),
                {"user_id": user_id, "head": 0, "acked": 0, "epoch": 1},
            )
            row = conn.execute(
                select(streams.c.head, streams.c.acked, streams.c.epoch).where(
                    streams.c.user_id == user_id)
            ).one()
            first = conn.execute(
                select(func.min(entries.c.stream_offset)).where(entries.c.user_id == user_id)
            ).scalar()
        # offsets have no gaps, so whatever lies below the first entry was trimmed
        trimmed = row.head if first is None else first - 1
        return StreamPosition(head=row.head, acked=row.acked, trimmed=trimmed, epoch=row.epoch)

    def ack_many(self, acks: Mapping[str, int]) -> int:
        """Acks only move forward and never past the head. Users are locked in
        id order, as appends lock them, so the two never deadlock."""
        if not acks:
            return 0
        covered = 0
        with storage_errors(), self._engine.begin() as conn:
            rows = conn.execute(
                select(streams.c.user_id, streams.c.acked, streams.c.head)
                .where(streams.c.user_id.in_(sorted(acks)))
                .order_by(streams.c.user_id)
                .with_for_update()
            ).all()
            updates = []
            for row in rows:
                offset = min(acks[row.user_id], row.head)
                if offset > row.acked:
                    covered += offset - row.acked
                    updates.append({"u": row.user_id, "o": offset})
            if updates:
                conn.execute(
                    update(streams)
                    .where(streams.c.user_id == bindparam("u"))
                    .values(acked=bindparam("o")),
                    updates,
                )
        return covered

    def ping(self) -> None:
        with storage_errors(), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
