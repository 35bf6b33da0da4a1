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

The hub is one object in three modules: this one holds its state and the
connections (open, close, idle, acks); service_layer.fan_out takes entries in
order and fans each out in turn; service_layer.hand_off hands an entry to the
connections of its recipients (the cohort, the outsiders, deferral).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

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
from service.domain.measurements import DROPPED
from service.domain.model import Appended, Notification
from service.service_layer.acks import AckBuffer
from service.service_layer.books import Books
from service.service_layer.cohort import Cohort
from service.service_layer.fan_out import FanOutInTurn
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
from service.service_layer.sequencer import LogSequencer

_DISCONNECTED = (("reason", "disconnected"),)

# Streams opened together: one statement for up to OPEN_BATCH connections. A
# leader waits OPEN_WINDOW_S for company, since SQLite's I/O never yields
# (nobody could join otherwise); a connect waits OPEN_WAIT_S at most for a
# free database connection, then is refused with a retry_after.
OPEN_BATCH = 500
OPEN_WINDOW_S = 0.002
OPEN_MAX_WAITING = 20_000
OPEN_WAIT_S = 10.0


class DeliveryHub(FanOutInTurn):
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
        self._deferred = set()  # connections with entries held back by pressure
        self._clock = clock
        self.batch_timers = DeadlineScheduler(clock)
        self._connections = {}
        self.cohort = Cohort(self.batching)  # in sync: broadcasts from one shared batch
        self._outsiders = {}  # every other connection
        self.acks = AckBuffer(log, telemetry)
        self._opener: GroupRunner[str, StreamPosition] = GroupRunner(
            self._open_batch, max_batch=OPEN_BATCH, window_s=OPEN_WINDOW_S,
            max_waiting=OPEN_MAX_WAITING,
            refuse=lambda waiting: StorageBusy(
                f"{waiting} connections are being opened; retry", retry_after=1.0),
            failed=lambda exc: StorageUnavailable(
                "the notification log failed; retry", error_id=new_error_id()))
        self._by_user = defaultdict(set)
        # Several nodes: entries committed elsewhere come through Redis or,
        # when a message is lost, from the log; each one taken is reported
        # (the cached log drops what it changed). None: one node.
        self._on_foreign = on_foreign
        # Fan-out work, one piece at a time in the order asked (``_serially``)
        self._fan_out = deque()
        self._fanning = False
        self._taken = None  # the last entry whose fan-out began
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
