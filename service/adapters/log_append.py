"""Appending a batch of publishes to the SQL log, in one transaction.

Everything that can be worked out before the transaction is: the rows as
columns, each entry's place in the batch (1..k), and each new stream's
first entry. Inside, the head row is bumped by k under its lock, and each
row's offset is the old head plus its place. So the lock is held only for
the database's own work, never for Python's, and on PostgreSQL the whole
append is one statement, run in autocommit: a second batch can be prepared,
and its publishers' requests parsed, while the first one commits.

Streams known to exist (streams are never deleted) are left out, so a
publish to a user seen before skips that insert altogether.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, text

from service.adapters.publish_keys import INSERT_SQLITE as _SQLITE_KEYS
from service.domain.idempotency import IdempotencyKey
from service.domain.model import Appended, Notification
from service.service_layer.ports import Draft

# One round trip: bump the head, insert the entries, their recipients, the
# streams they begin (in user-id order, as the trimmer locks streams) and
# their idempotency keys (a broadcast's recipients worked out as appended()
# does: the streams begun before it).
_POSTGRES_APPEND = text("""
WITH h AS (
  UPDATE log_head SET head = head + :k WHERE id = 1 RETURNING head - :k AS base, streams),
e AS (
  INSERT INTO log_entries (log_offset, id, category, priority, payload, created_at_us, broadcast)
  SELECT h.base + t.i, t.id, t.category, t.priority, t.payload, t.created_at_us, t.broadcast
  FROM h, unnest(CAST(:ids AS varchar[]), CAST(:categories AS varchar[]),
                 CAST(:priorities AS varchar[]), CAST(:payloads AS text[]),
                 CAST(:created AS bigint[]), CAST(:broadcasts AS integer[]))
       WITH ORDINALITY AS t(id, category, priority, payload, created_at_us, broadcast, i)),
r AS (
  INSERT INTO log_recipients (user_id, log_offset)
  SELECT u.user_id, h.base + u.i
  FROM h, unnest(CAST(:r_users AS varchar[]), CAST(:r_places AS bigint[])) AS u(user_id, i)),
s AS (
  INSERT INTO log_streams (user_id, since, acked, trimmed, epoch)
  SELECT v.user_id, h.base + v.i - 1, h.base + v.i - 1, h.base + v.i - 1, 1
  FROM h, unnest(CAST(:s_users AS varchar[]), CAST(:s_places AS bigint[])) AS v(user_id, i)
  ORDER BY v.user_id
  ON CONFLICT DO NOTHING RETURNING since),
k AS (
  INSERT INTO publish_keys (key, fingerprint, log_offset, message_id, created_at_us, recipients)
  SELECT x.key, x.fingerprint, h.base + x.i, x.id, x.created_at_us,
         COALESCE(x.recipients, h.streams + (SELECT count(*) FROM s WHERE s.since < h.base + x.i))
  FROM h, unnest(CAST(:k_keys AS varchar[]), CAST(:k_prints AS varchar[]),
                 CAST(:k_places AS bigint[]), CAST(:k_ids AS varchar[]),
                 CAST(:k_created AS bigint[]), CAST(:k_recipients AS integer[]))
       AS x(key, fingerprint, i, id, created_at_us, recipients))
SELECT h.base, h.streams, ARRAY(SELECT since FROM s) FROM h
""")
# streams begun, counted (a broadcast's recipients): appends and opens alike
COUNT_STREAMS = text("UPDATE log_head SET streams = streams + :n WHERE id = 1")

# SQLite: the same steps as separate statements (its commits never overlap).
_SQLITE_BUMP = text("UPDATE log_head SET head = head + :k WHERE id = 1 "
                    "RETURNING head - :k AS base, streams")
_SQLITE_ENTRIES = text(
    "INSERT INTO log_entries (log_offset, id, category, priority, payload, created_at_us, "
    "broadcast) VALUES (:log_offset, :id, :category, :priority, :payload, :created_at_us, "
    ":broadcast)")
_SQLITE_RECIPIENTS = "INSERT INTO log_recipients (user_id, log_offset) VALUES (?, ?)"
# the WHERE keeps SQLite's parser from reading ON CONFLICT as a join
_SQLITE_STREAMS = text(
    "INSERT INTO log_streams (user_id, since, acked, trimmed, epoch) "
    "SELECT value ->> 0, value ->> 1, value ->> 1, value ->> 1, 1 "
    "FROM json_each(:rows) WHERE true ORDER BY 1 "
    "ON CONFLICT DO NOTHING RETURNING since")


@dataclass
class PreparedBatch:
    drafts: Sequence[Draft]
    ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    priorities: list[str] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    broadcasts: list[int] = field(default_factory=list)
    recipients: list[tuple[str, int]] = field(default_factory=list)  # (user, place 1..k)
    first_place: dict[str, int] = field(default_factory=dict)  # user -> place of its first
    keys: list[tuple[int, IdempotencyKey]] = field(default_factory=list)  # (place, key)

    @property
    def new_users(self) -> list[str]:
        return sorted(self.first_place)


def to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def prepare(drafts: Sequence[Draft], known_streams: set[str]) -> PreparedBatch:
    batch = PreparedBatch(drafts)
    for place, (request, message_id, created_at) in enumerate(drafts, start=1):
        batch.ids.append(message_id)
        batch.categories.append(request.category)
        batch.priorities.append(request.priority.value)
        batch.payloads.append(request.payload_json)
        batch.created.append(to_us(created_at))
        broadcast = request.recipients.broadcast
        batch.broadcasts.append(int(broadcast))
        if request.key is not None:
            batch.keys.append((place, request.key))
        if not broadcast:
            for user_id in request.recipients.user_ids:
                batch.recipients.append((user_id, place))
                if user_id not in known_streams:
                    batch.first_place.setdefault(user_id, place)
    return batch


def append_postgres(conn: Connection, batch: PreparedBatch) -> list[Appended]:
    users = batch.new_users
    base, stream_count, created = conn.execute(_POSTGRES_APPEND, {
        "k": len(batch.drafts), "ids": batch.ids, "categories": batch.categories,
        "priorities": batch.priorities, "payloads": batch.payloads,
        "created": batch.created, "broadcasts": batch.broadcasts,
        "r_users": [u for u, _ in batch.recipients],
        "r_places": [p for _, p in batch.recipients],
        "s_users": users, "s_places": [batch.first_place[u] for u in users],
        "k_keys": [k.key for _, k in batch.keys],
        "k_prints": [k.fingerprint for _, k in batch.keys],
        "k_places": [p for p, _ in batch.keys],
        "k_ids": [batch.ids[p - 1] for p, _ in batch.keys],
        "k_created": [batch.created[p - 1] for p, _ in batch.keys],
        "k_recipients": [None if batch.broadcasts[p - 1] else
                         len(batch.drafts[p - 1][0].recipients.user_ids) for p, _ in batch.keys],
    }).one()
    if created:
        # Its own statement, after the append has committed: in the append's
        # transaction, every batch that began a stream (in a storm after a
        # restart, most of them: no stream is known yet) held the head row's
        # lock over three more round trips, and every other append and open
        # waited. A count lost with the connection here only understates the
        # recipients of later broadcasts in telemetry.
        conn.execute(COUNT_STREAMS, {"n": len(created)})
    return appended(batch, base, stream_count, list(created))


def append_sqlite(conn: Connection, batch: PreparedBatch,
                  insert_recipients: str = _SQLITE_RECIPIENTS) -> list[Appended]:
    base, stream_count = conn.execute(_SQLITE_BUMP, {"k": len(batch.drafts)}).one()
    conn.execute(_SQLITE_ENTRIES, [
        {"log_offset": base + place, "id": batch.ids[place - 1],
         "category": batch.categories[place - 1], "priority": batch.priorities[place - 1],
         "payload": batch.payloads[place - 1], "created_at_us": batch.created[place - 1],
         "broadcast": batch.broadcasts[place - 1]}
        for place in range(1, len(batch.drafts) + 1)])
    created: list[int] = []
    if batch.first_place:
        rows = [(u, base + batch.first_place[u] - 1) for u in batch.new_users]
        created = [row[0] for row in conn.execute(_SQLITE_STREAMS, {"rows": json.dumps(rows)})]
        if created:
            conn.execute(COUNT_STREAMS, {"n": len(created)})
    if batch.recipients:  # plain executemany of tuples measured fastest on SQLite
        conn.exec_driver_sql(insert_recipients, [(u, base + p) for u, p in batch.recipients])
    result = appended(batch, base, stream_count, created)
    if batch.keys:  # in the same transaction as the entries
        conn.exec_driver_sql(_SQLITE_KEYS, [
            (key.key, key.fingerprint, base + place, batch.ids[place - 1],
             batch.created[place - 1], result[place - 1].recipients)
            for place, key in batch.keys])
    return result


def appended(batch: PreparedBatch, base: int, stream_count: int,
             created: list[int]) -> list[Appended]:
    """What each draft became. A broadcast's recipients are the streams begun
    before it: those before the batch, and those the batch began earlier on."""
    created.sort()
    out = []
    for offset, (request, message_id, created_at) in enumerate(batch.drafts, start=base + 1):
        notification = Notification(message_id, offset, request.category, request.priority,
                                    request.payload_json, created_at)
        if request.recipients.broadcast:
            out.append(Appended(notification, None,
                                stream_count + bisect.bisect_left(created, offset)))
        else:
            users = tuple(sorted(request.recipients.user_ids))
            out.append(Appended(notification, users, len(users)))
    return out

