"""Bounds on the offline queue: raise each user's stream floor, oldest first.

A user's stream is their ``log_recipients`` entries plus every broadcast
above its floor (``trimmed``, never below ``since``); ``read`` hides what is
at or below the floor. So trimming a stream is raising its floor to a cut:

* count: a stream keeps its newest ``keep`` entries; the cut is the offset
  of the (keep+1)-th newest (own and broadcast entries merged);
* age: the age cut is the newest offset created before ``now - max_age_s``
  (offsets grow with time); a stream holding an entry at or below it is cut
  there at least. A stream that would lose nothing keeps its floor, so its
  clients are not told to reload for nothing.

Raising the floor also deletes the stream's own ``log_recipients`` rows
below it. When a stream loses entries its user had not acknowledged, its
epoch moves on: a client that reconnects from before the trim is told to
reload (``DeliveryHub``), never given a gap. Log rows go once nothing can
read them: a targeted entry when no recipient row refers to it, a broadcast
once every stream's floor has passed it.

Every node may run this: on PostgreSQL an advisory lock lets one trim at a
time, and stream rows are locked in user-id order, as ``ack_many`` locks them.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    String,
    bindparam,
    delete,
    exists,
    func,
    select,
    update,
)

from service.adapters import publish_keys
from service.adapters.notification_log import (
    IS_BROADCAST,
    entries,
    log_head,
    recipients,
    storage_errors,
    streams,
)
from service.service_layer.ports import TrimResult

_LOCK_KEY = 0x6E6F7469  # "noti": one trimmer at a time across nodes
USERS_PER_TRANSACTION = 200  # short transactions: acks wait on the same rows
_CHUNK = 500  # offsets per IN list (SQLite's parameter limit)


@dataclass
class _Plan:
    head: int  # every cut is at or below the head read first
    broadcasts: list[int]  # broadcast offsets in (min floor, head], ascending
    age_cut: int  # 0: no age bound
    cuts: dict[str, int]


class SqlStreamTrimmer:
    def __init__(self, engine: Engine, *, key_window_s: float | None = None) -> None:
        self._engine = engine
        self._key_window_s = key_window_s  # Idempotency-Keys older than this go too
        self._postgres = engine.dialect.name == "postgresql"
        self._newest_own = (
            select(recipients.c.log_offset)
            .where(recipients.c.user_id == bindparam("u", type_=String),
                   recipients.c.log_offset > bindparam("t", type_=BigInteger),
                   recipients.c.log_offset <= bindparam("h", type_=BigInteger))
            .order_by(recipients.c.log_offset.desc()).limit(bindparam("n")))

    def trim(self, keep: int, max_age_s: float | None, now: float | None = None) -> TrimResult:
        """Apply both bounds to every stream; return what was removed."""
        now = time.time() if now is None else now
        keep = max(keep, 0)
        plan = self._plan(keep, max_age_s, now)
        result = TrimResult()
        users = sorted(plan.cuts)
        for start in range(0, len(users), USERS_PER_TRANSACTION):
            done = self._trim_users(plan, users[start:start + USERS_PER_TRANSACTION])
            if done.skipped:
                result.skipped = True
                return result
            result.merge(done)
        done = self._delete_broadcasts(plan, keep)
        result.messages += done.messages
        result.skipped = done.skipped
        if self._key_window_s is not None:
            with storage_errors(), self._engine.begin() as conn:
                publish_keys.expire(conn, self._key_window_s, now)
        return result

    def _plan(self, keep: int, max_age_s: float | None, now: float) -> _Plan:
        """Per user, the highest offset to remove, read without locks: a
        stream that moved since is rechecked under its lock."""
        with storage_errors(), self._engine.connect() as conn:
            # Read the head first and look no higher: every broadcast up to it
            # is committed (offsets commit in order), so the list is complete.
            head = conn.execute(select(log_head.c.head)).scalar_one()
            low = conn.execute(select(func.min(streams.c.trimmed))).scalar()
            # Only broadcasts above the lowest floor are in any stream; there
            # are at most ~keep of them after a trim (_delete_broadcasts).
            bcs = list(conn.execute(
                select(entries.c.log_offset).where(
                    IS_BROADCAST, entries.c.log_offset > (low or 0),
                    entries.c.log_offset <= head).order_by(entries.c.log_offset)).scalars())
            age_cut = 0
            if max_age_s is not None:
                age_cut = conn.execute(
                    select(func.max(entries.c.log_offset)).where(
                        entries.c.created_at_us < int((now - max_age_s) * 1_000_000),
                        entries.c.log_offset <= head)).scalar() or 0
            if low is None:  # no streams: only the broadcast rows to bound
                return _Plan(head, bcs, age_cut, {})

            own_rows = ((recipients.c.user_id == streams.c.user_id)
                        & (recipients.c.log_offset > streams.c.trimmed)
                        & (recipients.c.log_offset <= head))
            floors: dict[str, int] = {}
            own: dict[str, int] = {}
            # A stream holds at most len(bcs) broadcasts, so one with fewer own
            # entries than this cannot be over the limit (and is not returned).
            for user_id, trimmed, n in conn.execute(
                    select(streams.c.user_id, streams.c.trimmed, func.count())
                    .select_from(streams.join(recipients, own_rows))
                    .group_by(streams.c.user_id, streams.c.trimmed)
                    .having(func.count() > keep - len(bcs))):
                floors[user_id], own[user_id] = trimmed, n
            # Streams over the limit by broadcasts alone, or holding a broadcast
            # older than the age bound: their floor is below this one.
            aged = bisect_right(bcs, age_cut)
            threshold = max(bcs[-keep - 1] if len(bcs) > keep else 0,
                            bcs[aged - 1] if aged else 0)
            if threshold:
                for user_id, trimmed in conn.execute(
                        select(streams.c.user_id, streams.c.trimmed)
                        .where(streams.c.trimmed < threshold)):
                    floors[user_id] = max(trimmed, floors.get(user_id, trimmed))
            aged_own: set[str] = set()
            if age_cut:
                for user_id, trimmed in conn.execute(
                        select(streams.c.user_id, streams.c.trimmed).distinct()
                        .select_from(streams.join(recipients, own_rows))
                        .where(recipients.c.log_offset <= age_cut)):
                    aged_own.add(user_id)
                    floors[user_id] = max(trimmed, floors.get(user_id, trimmed))

            cuts: dict[str, int] = {}
            for user_id, floor in floors.items():
                first = bisect_right(bcs, floor)  # bcs[first:] are in this stream
                cut = 0
                if own.get(user_id, 0) + len(bcs) - first > keep:
                    # a stream missing from `own` has no own entry once it can
                    # be over the limit (see the HAVING): no query for it
                    mine = conn.execute(self._newest_own, {
                        "u": user_id, "t": floor, "h": head, "n": keep + 1,
                    }).scalars().all() if user_id in own else []
                    newest = sorted([*mine, *bcs[max(first, len(bcs) - keep - 1):]],
                                    reverse=True)
                    cut = newest[keep] if len(newest) > keep else 0
                if age_cut > floor and (user_id in aged_own or aged > first):
                    cut = max(cut, age_cut)
                if cut > floor:
                    cuts[user_id] = cut
        return _Plan(head, bcs, age_cut, cuts)

    def _locked(self, conn: Connection) -> bool:
        return not self._postgres or bool(conn.execute(
            select(func.pg_try_advisory_xact_lock(_LOCK_KEY))).scalar())

    def _trim_users(self, plan: _Plan, users: Sequence[str]) -> TrimResult:
        result = TrimResult()
        bcs = plan.broadcasts
        with storage_errors(), self._engine.begin() as conn:
            if not self._locked(conn):
                return TrimResult(skipped=True)
            rows = conn.execute(
                select(streams.c.user_id, streams.c.acked, streams.c.trimmed)
                .where(streams.c.user_id.in_(users))
                .order_by(streams.c.user_id)
                .with_for_update()
            ).all()
            moved = []
            touched: set[int] = set()
            for row in rows:
                cut = plan.cuts[row.user_id]
                if cut <= row.trimmed:
                    continue  # another trim got here first
                seen = max(row.acked, row.trimmed)  # entries above it: not acknowledged
                mine = conn.execute(
                    delete(recipients)
                    .where(recipients.c.user_id == row.user_id, recipients.c.log_offset <= cut)
                    .returning(recipients.c.log_offset)).scalars().all()
                touched.update(mine)
                # bcs holds every broadcast in (floor, head]: cut <= head
                removed = (sum(1 for o in mine if o > row.trimmed)
                           + bisect_right(bcs, cut) - bisect_right(bcs, row.trimmed))
                unacked = (sum(1 for o in mine if o > seen)
                           + max(0, bisect_right(bcs, cut) - bisect_right(bcs, seen)))
                moved.append({"u": row.user_id, "cut": cut, "bump": int(unacked > 0)})
                result.streams += 1
                result.entries += removed
                result.unacked += unacked
                result.epochs_bumped += int(unacked > 0)
            if moved:
                conn.execute(update(streams).where(streams.c.user_id == bindparam("u"))
                             .values(trimmed=bindparam("cut"),
                                     epoch=streams.c.epoch + bindparam("bump")), moved)
            result.messages = self._delete_orphans(conn, sorted(touched))
        return result

    @staticmethod
    def _delete_orphans(conn: Connection, offsets: list[int]) -> int:
        """Targeted entries no recipient row refers to any more. Trims run one
        at a time (the lock), so no other trim deletes a sibling row unseen."""
        removed = 0
        for start in range(0, len(offsets), _CHUNK):
            orphan = ((entries.c.broadcast == 0)
                      & entries.c.log_offset.in_(offsets[start:start + _CHUNK])
                      & ~exists().where(recipients.c.log_offset == entries.c.log_offset))
            removed += conn.execute(delete(entries).where(orphan)).rowcount
        return removed

    def _delete_broadcasts(self, plan: _Plan, keep: int) -> TrimResult:
        """Broadcasts at or below every stream's floor: no stream holds them,
        and a new stream begins at the head. Floors only rise, so the
        minimum read here stays a safe bound."""
        with storage_errors(), self._engine.begin() as conn:
            if not self._locked(conn):
                return TrimResult(skipped=True)
            floor = conn.execute(select(func.min(streams.c.trimmed))).scalar()
            if floor is None:  # no streams: keep what the bounds would keep
                bcs = plan.broadcasts
                floor = max(plan.age_cut, bcs[-keep - 1] if len(bcs) > keep else 0)
            gone = conn.execute(delete(entries).where(
                IS_BROADCAST, entries.c.log_offset <= floor)).rowcount
        return TrimResult(messages=gone)
