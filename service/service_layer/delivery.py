"""Live delivery and replay, per connection, in offset order without duplicates.

Each connection remembers the highest offset it was sent (``delivered``).
Live entries are sent only when they continue that sequence exactly; anything
else (a connection still replaying, or a gap because another publisher's
entry has not reached this node yet) sends the connection back to the log,
which is the source of truth. Offsets per user have no gaps, so a gap is
always visible.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

import gevent

from service.domain.batching import BatchPolicy, BatchQueue
from service.domain.compression import CompressionPolicy
from service.domain.connections import ConnectionPolicy
from service.domain.errors import OffsetOutOfRange, StorageUnavailable
from service.domain.model import Notification
from service.domain.telemetry import DISPATCHED, DROPPED
from service.service_layer.acks import AckBuffer
from service.service_layer.leaks import LeakTracker
from service.service_layer.outbox import Connection, Outbox
from service.service_layer.ports import (
    NotificationLog,
    PressureGate,
    Sender,
    Spawner,
    Telemetry,
)
from service.service_layer.scheduling import DeadlineScheduler

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
_LIVE, _QUEUED, _DROPPED = (
    (("outcome", "live"),),
    (("outcome", "queued"),),
    (("outcome", "dropped"),),
)
_DEFERRED = (("outcome", "deferred"),)
_HANDOFF_ERROR = (("reason", "handoff_error"),)
_DISCONNECTED = (("reason", "disconnected"),)
RETRY_SECONDS = 1.0


class DeliveryHub:
    def __init__(
        self,
        log: NotificationLog,
        sender: Sender,
        telemetry: Telemetry | None,
        spawn: Spawner,
        *,
        replay_page: int = REPLAY_PAGE,
        policy: ConnectionPolicy | None = None,
        batching: BatchPolicy | None = None,
        compression: CompressionPolicy | None = None,
        pressure: PressureGate | None = None,
        leaks: LeakTracker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._sender = sender
        self._telemetry = telemetry  # None: measure nothing (benchmarks compare against it)
        self._spawn = spawn
        self._replay_page = replay_page
        self.policy = policy or ConnectionPolicy()
        self.batching = batching or BatchPolicy()
        self.outbox = Outbox(sender, telemetry, compression or CompressionPolicy(), clock)
        self.pressure = pressure
        self.leaks = leaks or LeakTracker()
        self._deferred: set[str] = set()  # connections with entries held back by pressure
        self._clock = clock
        self.batch_timers = DeadlineScheduler(clock)
        self._connections: dict[str, Connection] = {}
        self.acks = AckBuffer(log, telemetry)
        self._by_user: dict[str, set[str]] = defaultdict(set)

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
        position = self._log.open_stream(user_id)
        # others may have been admitted while the log answered: check again, no I/O after
        self.policy.admit(len(self._connections), len(self._by_user.get(user_id, ())))
        acked = max(position.acked, self.acks.pending(user_id) or 0)
        start = acked if last_offset is None else last_offset
        if start > position.head:
            raise OffsetOutOfRange(
                f"last_offset {start} is beyond the stream head {position.head}",
                field="last_offset",
            )
        conn = Connection(
            sid=sid,
            user_id=user_id,
            delivered=start,
            acked=acked,
            last_activity=self._clock(),
            queue=BatchQueue(self.batching),
            trimmed=position.trimmed,
            accepts_deflate=accepts_deflate,
        )
        self._connections[sid] = conn
        self._by_user[user_id].add(sid)
        self.leaks.track("connection", conn)
        self._spawn(self._catch_up, conn)
        return conn

    def retune(self, *, batching: BatchPolicy, policy: ConnectionPolicy,
               compression: CompressionPolicy) -> None:
        """New parameters, live: open connections keep their queues and take
        the new batching rules from their next entry on."""
        self.batching, self.policy, self.outbox.compression = batching, policy, compression
        for conn in self._connections.values():
            conn.queue.policy = batching

    def disconnect(self, sid: str) -> Connection | None:
        self._sender.release(sid)
        self._deferred.discard(sid)
        conn = self._connections.pop(sid, None)
        if conn is not None:
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

    # -- delivery -----------------------------------------------------------
    def deliver(self, notifications: list[Notification]) -> None:
        """Hand freshly committed entries to the local connections of their users.

        Records one ``notify_dispatch`` outcome per entry: ``live`` (sent now),
        ``queued`` (no ready connection: the offline queue keeps it),
        ``deferred`` (backpressure holds it back) or ``dropped`` (the hand-off
        failed; the entry stays in the log).
        """
        by_user: dict[str, list[Notification]] = defaultdict(list)
        for n in notifications:
            by_user[n.user_id].append(n)
        # one publish, one priority
        if notifications and self.pressure is not None and self.pressure.defers(
                notifications[0].priority):
            self._defer(by_user)
            return
        live = queued = dropped = 0
        now = self._clock()  # one reading for the whole hand-off, not one per connection
        for user_id, items in by_user.items():
            sent = False
            try:
                for sid in tuple(self._by_user.get(user_id, ())):
                    conn = self._connections.get(sid)
                    if conn is not None:
                        sent = self._offer(conn, items, now) or sent
            except Exception:  # the entries are committed: a replay repairs this
                log.exception("hand-off to %s failed", user_id)
                dropped += len(items)
                continue
            if sent:
                live += len(items)
            else:
                queued += len(items)
        if self._telemetry is None:
            return
        tally = self._telemetry.tally
        if live:
            tally(DISPATCHED, _LIVE).add(live)
        if queued:
            tally(DISPATCHED, _QUEUED).add(queued)
        if dropped:
            tally(DISPATCHED, _DROPPED).add(dropped)
            tally(DROPPED, _HANDOFF_ERROR).add(dropped)

    def _defer(self, by_user: dict[str, list[Notification]]) -> None:
        """Leave the entries in the log; the connections of their users read
        them back once the pressure is gone (``resume_deferred``)."""
        deferred = queued = 0
        for user_id, items in by_user.items():
            sids = self._by_user.get(user_id)
            if sids:
                self._deferred.update(sids)
                deferred += len(items)
            else:
                queued += len(items)
        self.pressure.deferred += deferred
        if self._telemetry is not None:
            if deferred:
                self._telemetry.tally(DISPATCHED, _DEFERRED).add(deferred)
            if queued:
                self._telemetry.tally(DISPATCHED, _QUEUED).add(queued)

    def resume_deferred(self) -> None:
        """The pressure is gone: send what was held back, from the log, in order."""
        sids, self._deferred = self._deferred, set()
        for sid in sids:
            conn = self._connections.get(sid)
            if conn is not None and not conn.catching_up:
                conn.catching_up = True
                self._spawn(self._catch_up, conn)

    def _offer(self, conn: Connection, items: list[Notification], now: float) -> bool:
        """Queue items for one connection if they continue its sequence; return
        whether they were taken for live delivery (now, or with their batch)."""
        if conn.catching_up:
            conn.has_pending = True
            return False
        fresh = [n for n in items if n.offset > conn.delivered]
        if not fresh:
            return False
        if fresh[0].offset != conn.delivered + 1:
            # An earlier entry is committed but not here yet: read the log.
            conn.catching_up = True
            self._spawn(self._catch_up, conn)
            return False
        conn.delivered = fresh[-1].offset
        queue = conn.queue
        scheduled = queue.deadline
        for batch in queue.add([(n, n.priority) for n in fresh], now):
            self._send_queued(conn, batch)
        # one timer entry per deadline, not one per entry: in a burst the heap
        # would otherwise hold a stale entry for every notification queued
        if queue.deadline is not None and queue.deadline != scheduled:
            self.batch_timers.schedule(queue.deadline, conn.sid)
        return True

    def flush_due(self, sid: str, now: float) -> None:
        """A batch deadline came: send what is due on that connection."""
        conn = self._connections.get(sid)
        if conn is not None:
            for batch in conn.queue.due(now):
                self._send_queued(conn, batch)

    def run_batch_timers(self) -> None:
        """For sio.start_background_task: sends batches as their deadlines come."""
        self.batch_timers.run(self.flush_due)

    def _send_queued(self, conn: Connection, batch: list[tuple[Notification, float]]) -> None:
        self.outbox.send(conn, [n for n, _ in batch], "live", batch)

    def _catch_up(self, conn: Connection) -> None:
        """Send everything after conn.delivered from the log, page by page.

        Entries offered live meanwhile only set ``has_pending``: they are
        already committed, so the next read finds them.
        """
        while self._connections.get(conn.sid) is conn:
            conn.has_pending = False
            try:
                page = self._log.read(conn.user_id, conn.delivered, self._replay_page)
                fresh = [n for n in page if n.offset > conn.delivered]
                # offsets have no gaps, so a jump (or nothing where the head is
                # further on) means the offline-queue bounds trimmed them
                gap_to = fresh[0].offset - 1 if fresh else conn.trimmed
                position = (self._log.open_stream(conn.user_id)
                            if gap_to > conn.delivered else None)
            except StorageUnavailable as exc:
                log.warning("replay for %s paused: %s", conn.sid, exc)
                gevent.sleep(RETRY_SECONDS)
                continue
            if self._connections.get(conn.sid) is not conn:
                return
            for batch in conn.queue.take_all():  # what waits is older than the page
                self._send_queued(conn, batch)
            if position is not None:
                self.outbox.tell_reload(conn, gap_to, position.epoch)
            if fresh:
                conn.delivered = fresh[-1].offset
                self.outbox.send(conn, fresh, "replay")
            if len(page) < self._replay_page and not conn.has_pending:
                conn.catching_up = False  # no yield since the read: nothing missed
                return

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
        if offset <= conn.acked:
            return
        self.acks.record(conn.user_id, offset)
        for other in self._by_user.get(conn.user_id, ()):
            peer = self._connections.get(other)
            if peer is not None and peer.acked < offset:
                peer.acked = offset
