"""Handing one entry to the connections of its recipients, for the
DeliveryHub (service_layer.delivery), which holds the state named below.

A connection in sync with the others sits in the cohort and takes broadcasts
from one shared batch; every other connection (an *outsider*) is offered
each entry on its own and batches it in its own queue. Backpressure defers
an entry: its connections stop taking live entries and read them back from
the log once the pressure is gone. Each entry committed on this node gets
its ``notify_dispatch`` outcomes counted here.
"""

from __future__ import annotations

import logging

from service.domain.batching import BatchPolicy
from service.domain.measurements import DISPATCHED, DROPPED
from service.domain.model import Appended, Notification
from service.service_layer.books import Books
from service.service_layer.cohort import Cohort
from service.service_layer.outbox import Connection, Outbox
from service.service_layer.ports import PressureGate, Spawner, Telemetry
from service.service_layer.replay import Replayer
from service.service_layer.scheduling import DeadlineScheduler
from service.service_layer.sequencer import LogSequencer

# the hub's logger name, kept from before it was split in three modules
log = logging.getLogger("service.service_layer.delivery")

_LIVE, _QUEUED, _DROPPED = (
    (("outcome", "live"),),
    (("outcome", "queued"),),
    (("outcome", "dropped"),),
)
_DEFERRED = (("outcome", "deferred"),)
_HANDOFF_ERROR = (("reason", "handoff_error"),)


class HandOff:
    """The hand-off half of the hub: what it reads and changes is set up by
    ``DeliveryHub.__init__``."""

    _connections: dict[str, Connection]
    _by_user: dict[str, set[str]]
    _outsiders: dict[str, Connection]  # every connection not in the cohort
    _deferred: set[str]  # connections with entries held back by pressure
    _taken: int | None  # the last entry whose fan-out began
    _telemetry: Telemetry | None
    _spawn: Spawner
    cohort: Cohort
    batching: BatchPolicy
    batch_timers: DeadlineScheduler
    outbox: Outbox
    pressure: PressureGate | None
    books: Books
    sequence: LogSequencer
    replay: Replayer

    def _take_broadcast(self, notification: Notification, wait: float,
                        now: float) -> tuple[int, int]:
        """To each connection outside the cohort, as a targeted entry goes;
        then once into the cohort's shared batch (outsiders first: a flush of
        the shared batch lets outsiders that caught up join, and they must
        have had this entry already). Live counts users, once each."""
        cohort = self.cohort
        live = dropped = 0
        users_in_step = len(cohort.users)  # hand-offs below may take some out
        if self._outsiders:
            outside: dict[str, set[str]] = {}
            for sid, conn in self._outsiders.items():
                outside.setdefault(conn.user_id, set()).add(sid)
            # a user also in the cohort is counted there; decided before any hand-off
            also_members = [(u, sids) for u, sids in outside.items() if u in cohort.users]
            live, dropped = self._hand_off(
                [(u, sids) for u, sids in outside.items() if u not in cohort.users],
                notification, wait, now)
            for user_id, sids in also_members:
                self._hand_off([(user_id, sids)], notification, wait, now)
        live += users_in_step
        if cohort.members:
            scheduled = cohort.queue.deadline
            for batch in cohort.add(notification, wait, now):
                self._flush_cohort(batch, "immediate" if wait == 0.0 else "size")
            if cohort.queue.deadline is not None and cohort.queue.deadline != scheduled:
                self.batch_timers.schedule(cohort.queue.deadline, Cohort.TIMER_KEY)
        return live, dropped

    def _hand_off(self, users: list[tuple[str, set[str]]], notification: Notification,
                  wait: float, now: float) -> tuple[int, int]:
        """Offer the entry to each of these users' connections (a member
        leaves the cohort first: this entry is its own). (live users, dropped)."""
        live = dropped = 0
        connections, offer = self._connections, self._offer
        for user_id, sids in users:
            sent = False
            try:
                for sid in tuple(sids):
                    conn = connections.get(sid)
                    if conn is None:
                        continue
                    if sid in self.cohort:
                        self._leave_cohort(conn)
                    if offer(conn, notification, wait, now):
                        sent = True
            except Exception:  # the entry is committed: a replay repairs this
                log.exception("hand-off to %s failed", user_id)
                dropped += 1
                continue
            live += sent
        return live, dropped

    def _leave_cohort(self, conn: Connection) -> None:
        if self.cohort.leave(conn):
            self._outsiders[conn.sid] = conn
            if conn.queue.deadline is not None:
                self.batch_timers.schedule(conn.queue.deadline, conn.sid)

    def _try_join(self, conn: Connection) -> None:
        # a connection that was sent (or owes nothing) past what the hub has
        # taken would get those entries again from the shared batch: it waits
        if (self._connections.get(conn.sid) is conn and self.cohort.can_join(conn)
                and conn.delivered <= self.taken_head):
            self._outsiders.pop(conn.sid, None)
            self.cohort.join(conn)

    def _flush_cohort(self, batch: list[tuple[Notification, float]], trigger: str) -> None:
        cohort = self.cohort
        self.outbox.send_shared(cohort.recipients(batch), batch, trigger,
                                still=lambda conn: conn.sid in cohort)
        if not cohort.queue.items:  # nothing shared waits: who caught up may join
            for conn in tuple(self._outsiders.values()):
                self._try_join(conn)

    def _local_users(self, appended: Appended) -> list[tuple[str, set[str]]]:
        """(user, sids) of the entry's recipients connected here, as a list:
        sending may close a connection, and so change ``_by_user``."""
        by_user = self._by_user
        if appended.user_ids is None:
            return list(by_user.items())
        return [(u, by_user[u]) for u in appended.user_ids if u in by_user]

    def _count(self, *, live: int = 0, queued: int = 0, dropped: int = 0,
               deferred: int = 0) -> None:
        """The dispatch outcomes of an entry committed on this node."""
        self.books.count(live, queued, deferred, dropped)
        telemetry = self._telemetry
        if telemetry is None:
            return
        if live:
            telemetry.tally(DISPATCHED, _LIVE).add(live)
        if queued:
            telemetry.tally(DISPATCHED, _QUEUED).add(queued)
        if deferred:
            telemetry.tally(DISPATCHED, _DEFERRED).add(deferred)
        if dropped:
            telemetry.tally(DISPATCHED, _DROPPED).add(dropped)
            telemetry.tally(DROPPED, _HANDOFF_ERROR).add(dropped)

    def _defer(self, appended: Appended, *, count: bool = True) -> None:
        """Leave the entry in the log; the connections of its recipients stop
        taking live entries and read them back once the pressure is gone
        (``resume_deferred``)."""
        deferred = 0
        for _user_id, sids in self._local_users(appended):
            took = False
            for sid in tuple(sids):
                conn = self._connections.get(sid)
                if conn is not None and sid in self.cohort:
                    self._leave_cohort(conn)  # held back from here on: no longer in step
                if conn is not None and appended.offset > conn.delivered:
                    conn.deferred = took = True
                    self._deferred.add(sid)
            deferred += took
        if self.pressure is not None:  # always: only pressure defers
            self.pressure.deferred += deferred
        if count:
            self._count(deferred=deferred, queued=max(0, appended.recipients - deferred))

    def resume_deferred(self) -> None:
        """The pressure is gone: send what was held back, from the log, in order."""
        sids, self._deferred = self._deferred, set()
        for sid in sids:
            conn = self._connections.get(sid)
            if conn is None:
                continue
            conn.deferred = False
            if not conn.catching_up:
                conn.catching_up = True
                self._spawn(self.replay.catch_up, conn)

    def _offer(self, conn: Connection, notification: Notification, wait: float,
               now: float) -> bool:
        """Queue an entry for one connection if it is in sync and has not had
        it; return whether it was taken for live delivery (now, or with its
        batch)."""
        if conn.catching_up:
            conn.has_pending = True  # the replay reads it from the log
            return False
        if conn.deferred:
            # not held back itself (a more urgent priority): it goes now, after
            # what was held back before it, all read from the log in order
            conn.deferred = False
            self._deferred.discard(conn.sid)
            conn.catching_up = True
            self._spawn(self.replay.catch_up, conn)
            return False
        if notification.offset <= conn.delivered:
            return False
        conn.delivered = notification.offset
        queue = conn.queue
        scheduled = queue.deadline
        for batch in queue.add_one(notification, wait, now):
            self._send_queued(conn, batch, "immediate" if wait == 0.0 else "size")
        # one timer entry per deadline, not one per entry: in a burst the heap
        # would otherwise hold a stale entry for every notification queued
        if queue.deadline is not None and queue.deadline != scheduled:
            self.batch_timers.schedule(queue.deadline, conn.sid)
        return True

    @property
    def taken_head(self) -> int:
        """The last offset whose fan-out began (the sequencer's head may be
        ahead of it while a fan-out is in progress)."""
        return self._taken if self._taken is not None else (self.sequence.head or 0)

    def _send_queued(self, conn: Connection, batch: list[tuple[Notification, float]],
                     trigger: str) -> None:
        self.outbox.send(conn, [n for n, _ in batch], "live", batch, trigger)
