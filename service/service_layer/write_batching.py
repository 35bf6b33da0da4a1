"""Group commit: publishes that arrive together are appended in one transaction.

Leader and followers, as databases do it for their own log: a publish that
finds no commit in flight leads. It takes what is waiting (up to
``max_batch``, itself among it), appends it with one commit, hands the
entries to live delivery in offset order, and answers the others. Publishes
that come while a commit is in flight wait as followers; when the leader is
done, the first of them leads the next batch. So a lone publish is committed
at once, in its own greenlet (no hand-off to another greenlet, which under
load would queue it behind every ready connection), and batches grow only
when commits overlap publishes: with PostgreSQL, whose round trips yield to
other greenlets. ``window_s`` > 0 makes a leader wait that long for company.

A publisher is answered only after its batch is committed, so a 202 never
precedes durability. A failed commit fails every publish of its batch, and
none of them was stored (one transaction). Waiting publishes are bounded:
past ``max_waiting`` a publish is refused at once (429).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

import gevent
from gevent.event import Event

from service.domain.backpressure import Overloaded
from service.domain.errors import ServiceError, StorageUnavailable
from service.domain.model import Appended, PublishRequest
from service.domain.telemetry import WRITE_BATCHES
from service.service_layer.ports import Draft, NotificationLog, Telemetry

log = logging.getLogger(__name__)

_NO_TAGS = ()


class _Waiter:
    """One publish waiting: for its batch to commit, or for its turn to lead."""

    __slots__ = ("draft", "appended", "error", "done", "turn")

    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.appended: Appended | None = None
        self.error: Exception | None = None
        self.done = False
        self.turn = Event()

    def finish(self, appended: Appended | None, error: Exception | None = None) -> None:
        self.appended, self.error, self.done = appended, error, True
        self.turn.set()


class WriteBatcher:
    def __init__(
        self,
        notification_log: NotificationLog,
        deliver: Callable[[Appended], None],
        telemetry: Telemetry | None = None,
        *,
        max_batch: int = 50,
        window_s: float = 0.0,
        max_waiting: int = 10_000,
    ) -> None:
        self._log = notification_log
        self._deliver = deliver
        self._telemetry = telemetry
        self.max_batch = max_batch  # may change at run time, as the level does
        self.window_s = window_s
        self.max_waiting = max_waiting
        self._waiting: deque[_Waiter] = deque()
        # one commit in flight: a second one, prepared meanwhile, measured no
        # faster (the head row's lock serialises them in the database anyway)
        self._leading = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def append(self, request: PublishRequest, message_id: str,
               created_at: datetime) -> Appended:
        """Append one publish with whatever else is waiting; return once it is
        committed. Raises what the commit raised."""
        if len(self._waiting) >= self.max_waiting:
            raise Overloaded(
                f"{len(self._waiting)} publishes are waiting to be stored; retry shortly",
                retry_after=1.0)
        me = _Waiter((request, message_id, created_at))
        self._waiting.append(me)
        try:
            while not me.done:
                if self._leading:
                    me.turn.wait()  # its batch committed, or its turn to lead
                    me.turn.clear()
                    continue
                self._lead(me)
        except BaseException:  # killed while waiting: leave the line, pass the turn on
            if me in self._waiting:  # not taken into a batch: it is not stored
                self._waiting.remove(me)
            if not self._leading and self._waiting:
                self._waiting[0].turn.set()
            raise
        if me.error is not None:
            raise me.error
        return me.appended

    def _lead(self, me: _Waiter) -> None:
        """Commit batches from the head of the line until ``me`` is in one;
        then wake the next in line, if any, to lead."""
        self._leading = True
        batch: list[_Waiter] = []
        try:
            while not me.done:
                if self.window_s and len(self._waiting) < self.max_batch:
                    gevent.sleep(self.window_s)  # company for a lone publish
                batch = [self._waiting.popleft()
                         for _ in range(min(self.max_batch, len(self._waiting)))]
                self._commit(batch)
        finally:
            for waiter in batch:  # this greenlet was killed mid-commit: say so, never hang
                if not waiter.done:
                    waiter.finish(None, StorageUnavailable("the commit was interrupted"))
            self._leading = False
            if self._waiting:
                self._waiting[0].turn.set()

    def _commit(self, batch: list[_Waiter]) -> None:
        started = time.perf_counter()
        try:
            appended = self._log.append_many([w.draft for w in batch])
        except ServiceError as exc:
            for waiter in batch:
                waiter.finish(None, exc)
            return
        except Exception as exc:  # a bug must not hang every publisher
            log.exception("appending a batch of %d failed", len(batch))
            error = StorageUnavailable(f"the notification log failed: {type(exc).__name__}")
            for waiter in batch:
                waiter.finish(None, error)
            return
        duration_ms = (time.perf_counter() - started) * 1000.0
        for entry in appended:  # in offset order: the hub needs no gap filling for these
            self._deliver(entry)
        for waiter, entry in zip(batch, appended, strict=True):
            waiter.finish(entry)
        if self._telemetry is not None:
            self._telemetry.tally(WRITE_BATCHES, _NO_TAGS).add(
                len(batch), 1, duration_ms, peak=len(batch), peak2=duration_ms)
