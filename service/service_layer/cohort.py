"""The cohort: connections in sync that take every broadcast from one shared
batch, so a broadcast costs the hub one append, not one per connection.

A connection joins only when nothing waits for it or for the cohort (its own
queue and the shared one are empty) and it is neither replaying nor held
back: from then on the shared batch holds exactly what it would have queued
itself. It leaves, taking a copy of what the shared batch holds, before
anything that the others do not share happens to it: an entry for its user
alone, a replay, backpressure holding it back, a disconnect. Its ``delivered``
is brought up to date at each shared flush (what an ack is checked against)
and when it leaves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from service.domain.batching import BatchPolicy, BatchQueue
from service.domain.model import Notification
from service.service_layer.outbox import Connection

Batch = list[tuple[Notification, float]]


class Cohort:
    TIMER_KEY = "\x00cohort"  # the shared batch's deadline, beside the connections' sids

    def __init__(self, policy: BatchPolicy) -> None:
        self.members: dict[str, Connection] = {}
        self.users: Counter[str] = Counter()  # member connections per user
        self.queue: BatchQueue[Notification] = BatchQueue(policy)
        self.last = 0  # offset of the last entry put in the shared batch

    def __contains__(self, sid: str) -> bool:
        return sid in self.members

    def can_join(self, conn: Connection) -> bool:
        return (not self.queue.items and not conn.queue.items and not conn.catching_up
                and not conn.deferred and conn.close_reason is None
                and conn.sid not in self.members)

    def join(self, conn: Connection) -> None:
        self.members[conn.sid] = conn
        self.users[conn.user_id] += 1

    def leave(self, conn: Connection) -> bool:
        """Take ``conn`` out; what waits in the shared batch becomes its own
        queue (its queue is empty while a member). False if not a member."""
        if self.members.pop(conn.sid, None) is None:
            return False
        self.users[conn.user_id] -= 1
        if not self.users[conn.user_id]:
            del self.users[conn.user_id]
        if self.queue.items:
            conn.queue.items.extend(self.queue.items)
            conn.queue.deadline = self.queue.deadline
        conn.delivered = max(conn.delivered, self.last)
        if not self.members:  # the last one took its copy: nobody is owed the rest
            self.queue.take_all()
        return True

    def add(self, notification: Notification, wait: float, now: float) -> list[Batch]:
        """Queue a broadcast for every member; the batches due now, if any."""
        self.last = notification.offset
        return self.queue.add_one(notification, wait, now)

    def recipients(self, batch: Batch) -> Iterator[Connection]:
        """The members a flushed batch goes to, with ``delivered`` moved on;
        a copy, as sending may close connections (and so change membership)."""
        last = batch[-1][0].offset
        members = tuple(self.members.values())
        for conn in members:
            if conn.delivered < last:
                conn.delivered = last
        return iter(members)
