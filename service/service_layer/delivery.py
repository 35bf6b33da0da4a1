"""Live delivery, per connection, in offset order without duplicates (what a
connection missed is replayed first: service_layer.replay).

Offsets are global: every publish takes the log's next one, and the log has
no gaps. The hub takes committed entries in that order (``head`` is the last
one taken; service_layer.sequencer holds back any that arrive early and
reads the log for any that do not), so every connection sees its stream in
order. A
connection is *in sync* once its replay from the log has caught up; from then
on it takes each new entry of its stream live, and remembers the highest
offset it was sent (``delivered``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import gevent

from service.domain.batching import BatchPolicy, BatchQueue
from service.domain.compression import CompressionPolicy
from service.domain.connections import ConnectionPolicy
from service.domain.errors import (
    OffsetOutOfRange,
    StorageBusy,
    StorageUnavailable,
    new_error_id,
)
from service.domain.model import Appended, Notification
from service.domain.telemetry import DISPATCHED, DROPPED
from service.service_layer.acks import AckBuffer
from service.service_layer.books import Books
from service.service_layer.cohort import Cohort
from service.service_layer.grouping import GroupRunner
from service.service_layer.leaks import LeakTracker
from service.service_layer.outbox import Connection, Outbox
from service.service_layer.ports import (
    NotificationLog,
    PressureGate,
    Sender,
    Spawner,
    StreamPosition,
    Telemetry,
)
from service.service_layer.recent import RecentEntries
from service.service_layer.replay import REPLAY_PAGE, REPLAY_READS_AT_ONCE, Replayer
from service.service_layer.scheduling import DeadlineScheduler
from service.service_layer.sequencer import ACCEPTED, BEFORE_START, UNKNOWN, LogSequencer

log = logging.getLogger(__name__)

_LIVE, _QUEUED, _DROPPED = (
    (("outcome", "live"),),
    (("outcome", "queued"),),
    (("outcome", "dropped"),),
)
_DEFERRED = (("outcome", "deferred"),)
_RELAYED = (("outcome", "relayed"),)
_HANDOFF_ERROR = (("reason", "handoff_error"),)
_DISCONNECTED = (("reason", "disconnected"),)

# Streams opened together: one statement for up to OPEN_BATCH connections. A
# leader waits OPEN_WINDOW_S for company, since SQLite's I/O never yields
# (nobody could join otherwise); a connect waits OPEN_WAIT_S at most for a
# free database connection, then is refused with a retry_after.
OPEN_BATCH = 500
OPEN_WINDOW_S = 0.002
OPEN_MAX_WAITING = 20_000
OPEN_WAIT_S = 10.0


class DeliveryHub:
    def __init__(
        self,
        log: NotificationLog,
        sender: Sender,
        telemetry: Telemetry | None,
        spawn: Spawner,
        *,
        replay_page: int = REPLAY_PAGE,
        replay_reads_at_once: int = REPLAY_READS_AT_ONCE,
        policy: ConnectionPolicy | None = None,
        batching: BatchPolicy | None = None,
        compression: CompressionPolicy | None = None,
        pressure: PressureGate | None = None,
        leaks: LeakTracker | None = None,
        on_foreign: Callable[[Appended], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[], None] | None = None,
        books: Books | None = None,
    ) -> None:
        self._log = log
        # what this node committed and what became of it (``BookedLog`` enters
        # the commits; the hub the outcomes, and when it is done with each entry)
        self.books = books if books is not None else Books()
        self._sender = sender
        self._telemetry = telemetry  # None: measure nothing (benchmarks compare against it)
        self._spawn = spawn
        self.policy = policy or ConnectionPolicy()
        self.batching = batching or BatchPolicy()
        self.outbox = Outbox(sender, telemetry, compression or CompressionPolicy(), clock,
                             **({"pause": pause} if pause is not None else {}))
        self.pressure = pressure
        self.leaks = leaks or LeakTracker()
        self._deferred: set[str] = set()  # connections with entries held back by pressure
        self._clock = clock
        self.batch_timers = DeadlineScheduler(clock)
        self._connections: dict[str, Connection] = {}
        self.cohort = Cohort(self.batching)  # in sync: broadcasts from one shared batch
        self._outsiders: dict[str, Connection] = {}  # every other connection
        self.acks = AckBuffer(log, telemetry)
        self._opener: GroupRunner[str, StreamPosition] = GroupRunner(
            self._open_batch, max_batch=OPEN_BATCH, window_s=OPEN_WINDOW_S,
            max_waiting=OPEN_MAX_WAITING,
            refuse=lambda waiting: StorageBusy(
                f"{waiting} connections are being opened; retry", retry_after=1.0),
            failed=lambda exc: StorageUnavailable(
                "the notification log failed; retry", error_id=new_error_id()))
        self._by_user: dict[str, set[str]] = defaultdict(set)
        # Several nodes: entries committed elsewhere come through Redis or,
        # when a message is lost, from the log; each one taken is reported
        # (the cached log drops what it changed). None: one node.
        self._on_foreign = on_foreign
        # Fan-out work, one piece at a time in the order asked (``_serially``)
        self._fan_out: deque[tuple[Callable[..., None], tuple]] = deque()
        self._fanning = False
        self._taken: int | None = None  # the last entry whose fan-out began
        self.recent = RecentEntries()
        self.sequence = LogSequencer(log, spawn, self._take_in_turn, page=replay_page,
                                     from_log_origin="log" if on_foreign else None,
                                     mine=self.books.holds)
        self.replay = Replayer(log, sender, self.outbox, page=replay_page, clock=clock,
                               reads_at_once=replay_reads_at_once,
                               from_memory=self._missed_from_memory,
                               is_current=lambda conn: self._connections.get(conn.sid) is conn,
                               send_queued=self._send_queued, caught_up=self._try_join)

    # -- connections --------------------------------------------------------
    def connect(self, sid: str, user_id: str, last_offset: int | None,
                accepts_deflate: bool = False) -> Connection:
        """Register a connection and start replaying what it missed.

        Without ``last_offset`` the replay starts after the user's last
        acknowledged offset: the offline queue is the unacknowledged tail.
        """
        if self.pressure is not None:
            self.pressure.admit_connection()
        self.policy.admit(len(self._connections), len(self._by_user.get(user_id, ())))
        position = self._open_stream(user_id)
        # others may have been admitted while the log answered: check again, no I/O after
        self.policy.admit(len(self._connections), len(self._by_user.get(user_id, ())))
        if self.sequence.head is None:
            # Entries committed up to here are read by this connection's replay;
            # later ones are handed to deliver() in order.
            self.sequence.start_at(position.head)
        acked = max(position.acked, self.acks.pending(user_id) or 0)
        start = acked if last_offset is None else last_offset
        if start > position.head:
            raise OffsetOutOfRange(
                f"last_offset {start} is beyond the log's head {position.head}",
                field="last_offset",
            )
        conn = Connection(
            sid=sid,
            user_id=user_id,
            delivered=max(start, position.since),  # nothing before `since` was ever its
            acked=acked,
            since=position.since,
            floor=position.trimmed,
            last_activity=self._clock(),
            queue=BatchQueue(self.batching),
            accepts_deflate=accepts_deflate,
        )
        self._connections[sid] = conn
        self._outsiders[sid] = conn
        self._by_user[user_id].add(sid)
        self.leaks.track("connection", conn)
        missed = self._missed_from_memory(conn)
        if missed is not None and not missed[0]:
            # Nothing taken is owed (a new user, or one who had it all): in
            # sync now, with no read. What was committed and is not taken yet
            # comes live; _offer skips what is not past ``delivered``.
            conn.delivered = max(conn.delivered, missed[1])
            conn.catching_up = False
            self._try_join(conn)
        else:  # after the connect is answered: from memory, or from the log
            self._spawn(self.replay.catch_up, conn)
        return conn

    def _missed_from_memory(self, conn: Connection) -> tuple[list[Notification], int] | None:
        """What the connection is owed of the entries taken so far, and up to
        which offset that is, if the recent entries cover it; None if only the
        log can say (or the offline-queue bounds removed some: a reload)."""
        head = self.sequence.head or 0
        if conn.delivered >= head:
            return [], conn.delivered
        if conn.floor > conn.delivered:
            return None
        owed = self.recent.owed(conn.user_id, conn.delivered, head, conn.since)
        return None if owed is None else (owed, head)

    def _open_stream(self, user_id: str) -> StreamPosition:
        """The user's stream, opened with those of the connections arriving
        at the same moment (one statement for all: a reconnect storm after a
        restart is thousands at once). A pool with no connection free waits
        within ``OPEN_WAIT_S``, then the client is told when to retry."""
        deadline = self._clock() + OPEN_WAIT_S
        while True:
            try:
                return self._opener.call(user_id)
            except StorageBusy:
                if self._clock() >= deadline:
                    raise
                gevent.sleep(0.05)

    def _open_batch(self, user_ids: list[str]) -> list[StreamPosition]:
        positions = self._log.open_streams(user_ids)
        return [positions[u] for u in user_ids]

    def retune(self, *, batching: BatchPolicy, policy: ConnectionPolicy,
               compression: CompressionPolicy) -> None:
        """New parameters, live: open connections keep their queues and take
        the new batching rules from their next entry on."""
        self.batching, self.policy, self.outbox.compression = batching, policy, compression
        self.cohort.queue.policy = batching
        for conn in self._connections.values():
            conn.queue.policy = batching

    def disconnect(self, sid: str) -> Connection | None:
        self._sender.release(sid)
        self._deferred.discard(sid)
        conn = self._connections.pop(sid, None)
        if conn is not None:
            self.cohort.leave(conn)  # what the shared batch held for it counts as its own
            self._outsiders.pop(sid, None)
            self.leaks.released("connection", conn)
            if conn.queue.items and self._telemetry is not None:
                # dispatched live but still in the batch: the log keeps them for a reconnect
                self._telemetry.tally(DROPPED, _DISCONNECTED).add(len(conn.queue.items))
            sids = self._by_user.get(conn.user_id)
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._by_user[conn.user_id]
                    if self.acks.pending(conn.user_id) is not None:
                        self._spawn(self.acks.flush)  # the user is gone: make it durable now
        return conn

    def touch(self, sid: str) -> None:
        """The client said something: it is not idle."""
        conn = self._connections.get(sid)
        if conn is not None:
            conn.last_activity = self._clock()

    def close_idle(self) -> list[str]:
        """Close connections that sent nothing for the idle timeout."""
        now = self._clock()
        idle = [
            c
            for c in self._connections.values()
            if c.close_reason is None and self.policy.is_idle(c.last_activity, now)
        ]
        for conn in idle:
            conn.close_reason = "idle"
            self._sender.disconnect(conn.sid)
        return [c.sid for c in idle]

    def run_idle_sweeper(self) -> None:
        """Look a few times per timeout; for sio.start_background_task."""
        interval = min(30.0, max(0.5, self.policy.idle_timeout_s / 4))
        while True:
            gevent.sleep(interval)
            self.close_idle()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def sent_total(self) -> int:
        return self.outbox.sent_total

    @property
    def user_count(self) -> int:
        return len(self._by_user)

    def is_connected(self, user_id: str) -> bool:
        return user_id in self._by_user

    def online_users(self) -> list[str]:
        """The users with a connection here (a copy: connections come and go)."""
        return list(self._by_user)

    # -- delivery -----------------------------------------------------------
    def deliver(self, appended: Appended) -> None:
        """Hand one freshly committed entry to the local connections of its
        recipients, in log order: an entry that comes before the ones ahead
        of it waits for them (at most ``GAP_WAIT_S``, then the log fills in).

        Records one ``notify_dispatch`` outcome per recipient: ``live`` (sent
        now or with its batch), ``queued`` (no ready connection here: the
        offline queue keeps it), ``deferred`` (backpressure holds it back) or
        ``dropped`` (the hand-off failed; the entry stays in the log).
        """
        placed = self.sequence.offer(appended)
        if placed == ACCEPTED:
            return  # taken now, or held for a gap: ``_take`` accounts for it
        if placed in (UNKNOWN, BEFORE_START) and appended.origin is None:
            # nobody connected yet, or it was committed before the head the hub
            # started from: never taken here, the log keeps it and replays read it
            self._count(queued=appended.recipients)
        self.books.settle(appended.offset)  # (BEHIND: a gap fill took it already)

    def deliver_many(self, entries: list[Appended]) -> None:
        """Entries another node committed, as its message brought them."""
        for appended in entries:
            self.deliver(appended)

    def follow(self, log_head: int) -> None:
        """The log's head as read just now: entries up to it that were not
        handed here (another node committed them, and its message was lost)
        are read from the log."""
        self.sequence.follow(log_head)

    @property
    def head(self) -> int | None:
        """The last offset taken, in order; None until known."""
        return self.sequence.head

    def _take(self, appended: Appended) -> None:
        try:
            self._fan_out_one(appended)
        finally:  # done with it, whether or not its outcome was counted: the books show which
            self.books.settle(appended.offset)

    def _fan_out_one(self, appended: Appended) -> None:
        # An entry another node committed is counted there; here only what
        # was sent of it, as ``relayed``.
        self._taken = appended.offset
        foreign = appended.origin is not None
        if foreign and self._on_foreign is not None:
            self._on_foreign(appended)  # before it is sent: reads must see it
        notification = appended.notification
        if self.pressure is not None and self.pressure.defers(notification.priority):
            self._defer(appended, count=not foreign)
            return
        now = self._clock()  # one reading for the whole hand-off, not one per connection
        wait = self.batching.wait_for(notification.priority)  # once, not per connection
        if appended.user_ids is None:
            live, dropped = self._take_broadcast(notification, wait, now)
        else:
            live, dropped = self._hand_off(self._local_users(appended), notification, wait, now)
        if not foreign:
            self._count(live=live, queued=max(0, appended.recipients - live - dropped),
                        dropped=dropped)
        elif live and self._telemetry is not None:
            self._telemetry.tally(DISPATCHED, _RELAYED).add(live)

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
        if self._telemetry is None:
            return
        tally = self._telemetry.tally
        if live:
            tally(DISPATCHED, _LIVE).add(live)
        if queued:
            tally(DISPATCHED, _QUEUED).add(queued)
        if deferred:
            tally(DISPATCHED, _DEFERRED).add(deferred)
        if dropped:
            tally(DISPATCHED, _DROPPED).add(dropped)
            tally(DROPPED, _HANDOFF_ERROR).add(dropped)

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

    def _serially(self, work: Callable[..., None], *args: Any) -> None:
        """Run a piece of fan-out now, or after the one in progress.

        A shared batch goes out in slices that yield to the loop (publishes
        are read and committed in between), so a piece may be under way in
        another greenlet: what comes meanwhile (the next entry, a batch
        deadline) waits its turn rather than overtaking it, which could send
        a connection a later batch before an earlier one."""
        self._fan_out.append((work, args))
        if self._fanning:
            return
        self._fanning = True
        try:
            while self._fan_out:
                work, args = self._fan_out.popleft()
                try:
                    work(*args)
                except Exception:  # committed entries stay in the log: a replay repairs
                    log.exception("fan-out of %s failed", getattr(work, "__name__", work))
        finally:
            self._fanning = False

    def _take_in_turn(self, appended: Appended) -> None:
        self.recent.add(appended)  # in log order, as taken: replays read it from here
        self._serially(self._take, appended)

    @property
    def taken_head(self) -> int:
        """The last offset whose fan-out began (the sequencer's head may be
        ahead of it while a fan-out is in progress)."""
        return self._taken if self._taken is not None else (self.sequence.head or 0)

    def flush_due(self, sid: str, now: float) -> None:
        """A batch deadline came: send what is due on that connection."""
        self._serially(self._flush_due, sid, now)

    def _flush_due(self, sid: str, now: float) -> None:
        if sid == Cohort.TIMER_KEY:
            for batch in self.cohort.queue.due(now):
                self._flush_cohort(batch, "timeout")
            return
        conn = self._connections.get(sid)
        if conn is not None:
            for batch in conn.queue.due(now):
                self._send_queued(conn, batch, "timeout")
            self._try_join(conn)

    def run_batch_timers(self) -> None:
        """For sio.start_background_task: sends batches as their deadlines come."""
        self.batch_timers.run(self.flush_due)

    def _send_queued(self, conn: Connection, batch: list[tuple[Notification, float]],
                     trigger: str) -> None:
        self.outbox.send(conn, [n for n, _ in batch], "live", batch, trigger)

    # -- acknowledgements ---------------------------------------------------
    def ack(self, sid: str, offset: int) -> None:
        """Accept an ack from a connection; the log gets it with the next batch."""
        conn = self._connections.get(sid)
        if conn is None:
            return
        conn.last_activity = self._clock()
        if offset > conn.delivered:
            raise OffsetOutOfRange(
                f"ack for offset {offset}, but this connection was only sent up to "
                f"{conn.delivered}",
                field="offset",
            )
        covered = conn.take_acked(offset)
        if offset <= conn.acked:
            return
        self.acks.record(conn.user_id, offset, covered)
        for other in self._by_user.get(conn.user_id, ()):
            peer = self._connections.get(other)
            if peer is not None and peer.acked < offset:
                peer.acked = offset
