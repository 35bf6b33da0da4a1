"""Acknowledgements, written to the log in batches.

A client acks every batch it receives; one database transaction per ack
would make the log's commit rate, not delivery, the limit. Acks are kept per
user (only the highest offset matters) and written together every
``interval`` seconds, in transactions of at most ``CHUNK`` users with a yield
between them: on SQLite a transaction never yields, and 1,000 users' acks
in one held the whole node (publishes, fan-out) twice a second under a
broadcast load (for how long: docs/benchmarks.md, "Figures behind
constants"). An ack not yet written when the
process dies is at most re-delivered: clients that reconnect with their
``last_offset`` never notice, and the others get an entry they already had.
"""

from __future__ import annotations

import logging

import gevent

from service.domain.errors import StorageUnavailable
from service.domain.measurements import ACKED
from service.service_layer.ports import NotificationLog, Telemetry

log = logging.getLogger(__name__)

CHUNK = 250  # users' acks per transaction


class AckBuffer:
    def __init__(
        self,
        notification_log: NotificationLog,
        telemetry: Telemetry | None,
        *,
        interval: float = 0.5,
    ) -> None:
        self._log = notification_log
        self._telemetry = telemetry
        self._interval = interval
        self._pending: dict[str, int] = {}
        self._events = 0
        self._covered = 0
        self._running = False

    def record(self, user_id: str, offset: int, covered: int = 0) -> None:
        """An ack up to ``offset``, newly covering ``covered`` entries (the hub
        counts them: offsets have gaps, so their difference is no count)."""
        if offset > self._pending.get(user_id, 0):
            self._pending[user_id] = offset
        self._events += 1
        self._covered += covered

    def pending(self, user_id: str) -> int | None:
        return self._pending.get(user_id)

    def flush(self) -> int:
        """Write what is pending in one transaction; return entries newly covered.
        If the log is unavailable, keep it for the next round."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        events, self._events = self._events, 0
        covered, self._covered = self._covered, 0
        users = list(pending)
        for start in range(0, len(users), CHUNK):
            if start:
                gevent.sleep(0)
            chunk = {u: pending[u] for u in users[start:start + CHUNK]}
            try:
                self._log.ack_many(chunk)
            except StorageUnavailable as exc:
                log.warning("acks kept for the next round: %s", exc)
                for user_id in users[start:]:
                    self.record(user_id, pending[user_id])
                self._events += events - (len(users) - start)
                self._covered += covered
                return 0
        if self._telemetry is not None:
            self._telemetry.tally(ACKED, ()).add(covered, events)
        return covered

    def run(self) -> None:
        self._running = True
        while self._running:
            gevent.sleep(self._interval)
            self.flush()

    def stop(self) -> None:
        self._running = False
        self.flush()
