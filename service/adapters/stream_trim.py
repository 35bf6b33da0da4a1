"""Bounds on the offline queue: trim each user's stream, oldest first.

A stream keeps at most ``keep`` entries, none older than ``max_age_s``.
Entries are removed from the oldest offset up, so what remains is always a
gap-free run ending at the head. When a trim removes entries the user had
not acknowledged, the stream's epoch moves on: a client that reconnects from
before the trim is told to reload (``DeliveryHub``), never given a gap.

Every node may run this: on PostgreSQL an advisory lock lets one trim at a
time, and each stream row is locked in user-id order, as appends lock them.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, Engine, and_, delete, exists, func, select, update

from service.adapters.notification_log import entries, messages, storage_errors, streams
from service.service_layer.ports import TrimResult

_LOCK_KEY = 0x6E6F7469  # "noti": one trimmer at a time across nodes
USERS_PER_TRANSACTION = 200  # short transactions: appends wait on the same rows


class SqlStreamTrimmer:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def trim(self, keep: int, max_age_s: float | None, now: float | None = None) -> TrimResult:
        """Apply both bounds to every stream; return what was removed."""
        now = time.time() if now is None else now
        cuts = self._cuts(keep, max_age_s, now)
        result = TrimResult()
        users = sorted(cuts)
        for start in range(0, len(users), USERS_PER_TRANSACTION):
            part = users[start:start + USERS_PER_TRANSACTION]
            done = self._trim_users({u: cuts[u] for u in part})
            if done.skipped:
                result.skipped = True
                break
            result.merge(done)
        return result

    def _cuts(self, keep: int, max_age_s: float | None, now: float) -> dict[str, int]:
        """Per user, the highest offset to remove."""
        cuts: dict[str, int] = {}
        over_count = select(streams.c.user_id, (streams.c.head - keep).label("cut")).where(
            streams.c.head > keep,
            exists().where(entries.c.user_id == streams.c.user_id,
                           entries.c.stream_offset <= streams.c.head - keep),
        )
        with storage_errors(), self._engine.connect() as conn:
            for row in conn.execute(over_count):
                cuts[row.user_id] = row.cut
            if max_age_s is not None:
                cutoff_us = int((now - max_age_s) * 1_000_000)
                too_old = (
                    select(entries.c.user_id, func.max(entries.c.stream_offset).label("cut"))
                    .join(messages, messages.c.id == entries.c.message_id)
                    .where(messages.c.created_at_us < cutoff_us)
                    .group_by(entries.c.user_id)
                )
                for row in conn.execute(too_old):
                    cuts[row.user_id] = max(cuts.get(row.user_id, 0), row.cut)
        return cuts

    def _trim_users(self, cuts: dict[str, int]) -> TrimResult:
        result = TrimResult()
        with storage_errors(), self._engine.begin() as conn:
            if self._postgres and not conn.execute(
                    select(func.pg_try_advisory_xact_lock(_LOCK_KEY))).scalar():
                return TrimResult(skipped=True)
            rows = conn.execute(
                select(streams.c.user_id, streams.c.acked)
                .where(streams.c.user_id.in_(sorted(cuts)))
                .order_by(streams.c.user_id)
                .with_for_update()
            ).all()
            touched: set[str] = set()
            for row in rows:
                cut = cuts[row.user_id]
                owned = (entries.c.user_id == row.user_id) & (entries.c.stream_offset <= cut)
                ids = conn.execute(select(entries.c.message_id).where(owned)).scalars().all()
                if not ids:
                    continue  # another trim got here first
                unacked = conn.execute(
                    delete(entries).where(owned, entries.c.stream_offset > row.acked)
                ).rowcount
                removed = unacked + conn.execute(delete(entries).where(owned)).rowcount
                if unacked:
                    conn.execute(update(streams).where(streams.c.user_id == row.user_id)
                                 .values(epoch=streams.c.epoch + 1))
                    result.epochs_bumped += 1
                result.streams += 1
                result.entries += removed
                result.unacked += unacked
                touched.update(ids)
            result.messages = self._delete_orphans(conn, sorted(touched))
        return result

    @staticmethod
    def _delete_orphans(conn: Connection, message_ids: list[str]) -> int:
        removed = 0
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start:start + 500]
            orphan = and_(messages.c.id.in_(chunk),
                          ~exists().where(entries.c.message_id == messages.c.id))
            removed += conn.execute(delete(messages).where(orphan)).rowcount
        return removed
