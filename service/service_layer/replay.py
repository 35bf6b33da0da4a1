"""Replay: what a connection missed, read from the log and sent at the
client's pace.

A connection starts *catching up*: its stream is read page by page after
the last offset it was sent, and each page goes out in chunks of about
``REPLAY_CHUNK_BYTES``, each only once the previous one left the node (the
client reads it). Entries offered live meanwhile only mark the connection
as having more (``has_pending``): they are committed, so the next read finds
them. Once a read finds nothing more, the connection is *in sync* and the
hub hands it new entries live.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
from gevent.lock import BoundedSemaphore

from service.domain.errors import StorageUnavailable
from service.domain.model import Notification
from service.service_layer.outbox import Connection, Outbox
from service.service_layer.ports import NotificationLog, Sender

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
REPLAY_CHUNK_BYTES = 256 * 1024  # a replay page goes out in batches of about this much
DRAIN_POLL_S = 0.005
REPLAY_STALL_S = 3.0  # a replay waits this long at most for a client that reads nothing
RETRY_SECONDS = 1.0  # after a failed read, while the database is unavailable
REPLAY_READS_AT_ONCE = 4  # bootstrap sets half the database pool

SendQueued = Callable[[Connection, list[tuple[Notification, float]], str], None]


class Replayer:
    def __init__(
        self,
        log: NotificationLog,
        sender: Sender,
        outbox: Outbox,
        *,
        is_current: Callable[[Connection], bool],
        send_queued: SendQueued,
        caught_up: Callable[[Connection], None],
        from_memory: Callable[[Connection], tuple[list[Notification], int] | None] = (
            lambda conn: None),
        page: int = REPLAY_PAGE,
        reads_at_once: int = REPLAY_READS_AT_ONCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._sender = sender
        self._outbox = outbox
        self._is_current = is_current  # False once the connection closed (or was replaced)
        self._send_queued = send_queued  # what waits in its batch queue
        self._caught_up = caught_up  # the connection is in sync from now on
        self._from_memory = from_memory  # what it missed, if the recent entries hold it
        self._page = page
        self._clock = clock
        # A storm of returning clients must not take every database connection
        # from publishing: their reads take turns within this budget.
        self._reads = BoundedSemaphore(reads_at_once)

    def catch_up(self, conn: Connection) -> None:
        """Send everything after conn.delivered from the log, page by page.

        Entries offered live meanwhile only set ``has_pending``: they are
        already committed, so the next read finds them.
        """
        while self._is_current(conn):
            conn.has_pending = False
            missed = self._from_memory(conn)
            if missed is not None:
                if not self._send_missed(conn, *missed):
                    return  # closed meanwhile
                if not conn.has_pending:
                    conn.catching_up = False
                    self._caught_up(conn)
                    return
                continue  # more was taken while it sent: from memory again
            try:
                with self._reads:
                    if not self._is_current(conn):
                        return  # gone while it waited for its turn
                    page, position = self._log.read(conn.user_id, conn.delivered, self._page)
            except StorageUnavailable as exc:
                log.warning("replay for %s paused: %s", conn.sid, exc)
                gevent.sleep(RETRY_SECONDS)
                continue
            if not self._is_current(conn):
                return
            for batch in conn.queue.take_all():  # what waits is older than the page
                self._send_queued(conn, batch, "catch_up")
            if position.lost and position.trimmed > conn.delivered:
                # the offline-queue bounds removed entries it never received
                self._outbox.tell_reload(conn, position.trimmed, position.epoch)
            fresh = [n for n in page if n.offset > conn.delivered]
            if fresh:
                conn.delivered = fresh[-1].offset
                if not self._send_at_its_pace(conn, fresh):
                    return  # closed while it read: its disconnect cleaned up
            if len(page) < self._page and not conn.has_pending:
                conn.catching_up = False  # no yield since the read: nothing missed
                self._caught_up(conn)
                return

    def _send_missed(self, conn: Connection, owed: list[Notification], upto: int) -> bool:
        """Send what the recent entries hold for it; False if it went meanwhile."""
        for batch in conn.queue.take_all():  # what waits is older than what it missed
            self._send_queued(conn, batch, "catch_up")
        conn.delivered = max(conn.delivered, upto)
        return self._send_at_its_pace(conn, owed)

    def _send_at_its_pace(self, conn: Connection, entries: list[Notification]) -> bool:
        """In chunks, each once the one before left the node; False if the
        connection went meanwhile."""
        for chunk in byte_chunks(entries, REPLAY_CHUNK_BYTES):
            if not self._drained(conn):
                return False
            self._outbox.send(conn, chunk, "replay")
        return True

    def _drained(self, conn: Connection) -> bool:
        """Wait until what was sent to the connection has been written to its
        socket: a replay goes at the client's pace, never piling up past the
        send-queue bound (what a client missed may be far larger). A client
        that reads nothing for ``REPLAY_STALL_S`` is closed as a slow
        consumer. False if the connection went meanwhile."""
        least, moved_at = None, self._clock()
        while (waiting := self._sender.waiting(conn.sid)) > 0:
            if not self._is_current(conn):
                return False
            now = self._clock()
            if least is None or waiting < least:
                least, moved_at = waiting, now  # it reads: wait on
            elif now - moved_at > REPLAY_STALL_S:
                self._outbox.close_slow(conn, 0)
                return False
            gevent.sleep(DRAIN_POLL_S)
        return self._is_current(conn)


def byte_chunks(items: list[Notification], max_bytes: int) -> list[list[Notification]]:
    """Consecutive runs of about ``max_bytes`` of JSON each (at least one entry)."""
    chunks: list[list[Notification]] = []
    current: list[Notification] = []
    size = 0
    for item in items:
        length = len(item.wire_json)
        if current and size + length > max_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += length
    if current:
        chunks.append(current)
    return chunks
