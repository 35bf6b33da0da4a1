"""The notification log in SQL: one append-only stream per user.

Offsets are per user, start at 1 and have no gaps: each append takes the
user's stream row lock (``streams.head``), so offsets are assigned and
committed in the same order even with many publishers at once. A node that
sees offset n+2 after n therefore knows that n+1 exists and can fetch it.

Message bodies live once in ``messages``; ``entries`` holds one small row per
recipient, so a broadcast stores its payload once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
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
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.domain.errors import StorageUnavailable
from service.domain.model import Notification, Priority, PublishRequest
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


class SqlNotificationLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        dialect = engine.dialect.name
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    def append(
        self, request: PublishRequest, message_id: str, created_at: datetime
    ) -> list[Notification]:
        with storage_errors(), self._engine.begin() as conn:
            conn.execute(
                messages.insert().values(
                    id=message_id,
                    category=request.category,
                    priority=request.priority.value,
                    payload=request.payload_json,
                    created_at_us=_to_us(created_at),
                    broadcast=int(request.recipients.broadcast),
                )
            )
            heads = self._advance_heads(conn, request)
            if heads:
                conn.execute(
                    entries.insert(),
                    [
                        {"user_id": u, "stream_offset": o, "message_id": message_id}
                        for u, o in heads
                    ],
                )
        created_ts = created_at.timestamp()
        return [
            Notification(
                id=message_id,
                user_id=user_id,
                offset=offset,
                category=request.category,
                priority=request.priority,
                payload_json=request.payload_json,
                created_at=created_at,
                created_ts=created_ts,
            )
            for user_id, offset in heads
        ]

    def _advance_heads(self, conn: Connection, request: PublishRequest) -> list[tuple[str, int]]:
        """Take each recipient's stream lock, in user-id order so that two
        publishers can never deadlock, and move its head by one."""
        if request.recipients.broadcast:
            where = streams.c.user_id.is_not(None)
        else:
            users = sorted(request.recipients.user_ids)
            conn.execute(
                self._insert(streams).on_conflict_do_nothing(),
                [{"user_id": u, "head": 0, "acked": 0, "epoch": 1} for u in users],
            )
            where = streams.c.user_id.in_(users)
        conn.execute(
            select(streams.c.user_id).where(where).order_by(streams.c.user_id).with_for_update()
        ).all()
        rows = conn.execute(
            update(streams)
            .where(where)
            .values(head=streams.c.head + 1)
            .returning(streams.c.user_id, streams.c.head)
        ).all()
        return sorted((r.user_id, r.head) for r in rows)

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
            Notification(
                id=r.id,
                user_id=user_id,
                offset=r.stream_offset,
                category=r.category,
                priority=Priority(r.priority),
                payload_json=r.payload,
                created_at=_from_us(r.created_at_us),
                created_ts=r.created_at_us / 1_000_000,
            )
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
