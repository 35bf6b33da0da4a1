"""Group commit for publishes (``service_layer.grouping``): publishes that
arrive together are appended in one transaction, and a 202 never precedes
durability. A failed commit fails every publish of its batch, and none of
them was stored (one transaction). Past ``max_waiting`` waiting publishes, a
publish is refused at once (429).

The committed entries go to live delivery in commit (offset) order. The
leader of a commit first answers the other publishers of its batch and
passes the lead on, so the next commit starts; only then does it hand the
entries on itself, yielding to the loop every ``DELIVERY_TURN_S``: sending
frames to thousands of connections holds up no other publisher's answer
and no commit, only the leader's own answer. (A greenlet of its own for the
hand-off was tried: one entry reached the hub per turn of the loop, shared
batches went out 14 entries full instead of 21, and throughput fell by a
fifth.) The hand-off is bounded: while ``max_undelivered`` entries wait for
it, the next commit waits too, and publishers pile up to ``max_waiting``,
then are refused.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import cast

import gevent
from gevent.event import Event

from service.domain.backpressure_policy import Overloaded
from service.domain.errors import StorageUnavailable, new_error_id
from service.domain.idempotency import KeysTaken
from service.domain.measurements import WRITE_BATCHES
from service.domain.model import Appended, PublishRequest
from service.service_layer.grouping import GroupRunner
from service.service_layer.ports import Draft, NotificationLog, Spawner, Telemetry

log = logging.getLogger(__name__)

_NO_TAGS = ()
DELIVERY_TURN_S = 0.002  # entries handed on in a row before the loop's other work


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
        max_undelivered: int = 5_000,
        spawn: Spawner = gevent.spawn,
    ) -> None:
        self._log = notification_log
        self._telemetry = telemetry
        self._delivery = InOrderDelivery(deliver, spawn, max_undelivered)
        # one commit in flight: a second one, prepared meanwhile, measured no
        # faster (the head row's lock serialises them in the database anyway;
        # docs/benchmarks.md#storage)
        self._group: GroupRunner[Draft, Appended] = GroupRunner(
            self._commit, max_batch=max_batch, window_s=window_s, max_waiting=max_waiting,
            refuse=lambda waiting: Overloaded(
                f"{waiting} publishes are waiting to be stored; retry shortly",
                retry_after=1.0),
            failed=lambda exc: StorageUnavailable("the notification log failed; retry",
                                                  error_id=new_error_id()),
            answered=self._delivery.hand_on)

    # tunable at run time, as the level changes
    max_batch = property(lambda self: self._group.max_batch,
                         lambda self, v: setattr(self._group, "max_batch", v))
    window_s = property(lambda self: self._group.window_s,
                        lambda self, v: setattr(self._group, "window_s", v))
    max_waiting = property(lambda self: self._group.max_waiting,
                           lambda self, v: setattr(self._group, "max_waiting", v))

    @property
    def waiting(self) -> int:
        return self._group.waiting

    @property
    def undelivered(self) -> int:
        """Committed entries not yet handed to live delivery."""
        return self._delivery.backlog

    def append(self, request: PublishRequest, message_id: str,
               created_at: datetime) -> Appended:
        """Append one publish with whatever else is waiting; return once it is
        committed. Raises what the commit raised."""
        return self._group.call((request, message_id, created_at))

    def wait_delivered(self, timeout: float | None = None) -> bool:
        """Until every committed entry has been handed to live delivery."""
        return self._delivery.wait_empty(timeout)

    def _commit(self, drafts: list[Draft]) -> list[Appended | KeysTaken]:
        self._delivery.wait_below_bound()
        started = time.perf_counter()
        results = self._append_keyed(drafts)
        appended = [r for r in results if isinstance(r, Appended)]
        duration_ms = (time.perf_counter() - started) * 1000.0
        self._delivery.put(appended)  # in offset order: the hub needs no gap filling
        if self._telemetry is not None:
            self._telemetry.tally(WRITE_BATCHES, _NO_TAGS).add(
                len(appended), 1, duration_ms, peak=len(appended), peak2=duration_ms)
        return results

    def _append_keyed(self, drafts: list[Draft]) -> list[Appended | KeysTaken]:
        """Append the batch; a publish whose Idempotency-Key is already
        stored (by a publish before, on any node, or earlier in this batch)
        is left out and answered ``KeysTaken``: its caller answers from the
        stored key. The log stores nothing of a batch with a taken key, so
        the rest is appended again without it."""
        results: list[Appended | KeysTaken | None] = [None] * len(drafts)
        pending, keys_seen = [], set()
        for place, draft in enumerate(drafts):
            key = draft[0].key
            if key is not None and key.key in keys_seen:
                results[place] = KeysTaken({key.key: None})  # read once the first is stored
                continue
            if key is not None:
                keys_seen.add(key.key)
            pending.append(place)
        while pending:
            try:
                appended = self._log.append_many([drafts[place] for place in pending])
            except KeysTaken as taken:
                left = [p for p in pending if _key_of(drafts[p]) not in taken.keys]
                if len(left) == len(pending):
                    raise  # none of them: not ours to answer
                for place in set(pending) - set(left):
                    results[place] = taken
                pending = left
                continue
            for place, entry in zip(pending, appended, strict=True):
                results[place] = entry
            break
        return cast(list[Appended | KeysTaken], results)  # every place is set: appended, or taken


def _key_of(draft: Draft) -> str | None:
    """The draft's Idempotency-Key, if it carries one."""
    key = draft[0].key
    return None if key is None else key.key


class InOrderDelivery:
    """Committed entries, handed to live delivery one by one in the order
    put, by one greenlet at a time (a commit's leader, ``hand_on``), which
    yields to the loop every ``DELIVERY_TURN_S``."""

    def __init__(self, deliver: Callable[[Appended], None], spawn: Spawner,
                 bound: int) -> None:
        self._deliver = deliver
        self._spawn = spawn
        self._bound = bound
        self._queue: deque[Appended] = deque()
        self._running = False
        self._emptied = Event()
        self._emptied.set()
        self._below = Event()
        self._below.set()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def put(self, entries: list[Appended]) -> None:
        """Queue committed entries; ``hand_on`` (or a greenlet) delivers them."""
        if not entries:
            return
        self._queue.extend(entries)
        self._emptied.clear()
        if len(self._queue) >= self._bound:
            self._below.clear()

    def hand_on(self) -> None:
        """In the commit's leader, once its batch's publishers are answered:
        deliver what is queued, unless another greenlet is at it. Delivering
        in the leader rather than in a greenlet of its own keeps throughput:
        a hand-off per batch left the shared batches half as full
        (docs/benchmarks.md#fanout)."""
        if self._queue and not self._running:
            self._running = True
            self._drain()

    def wait_below_bound(self) -> None:
        """Until fewer than the bound wait. A leader committing batch after
        batch (thousands of publishes ahead of its own) has not handed any on
        yet: with nobody else at it, it makes the room itself, or it would
        wait for ever."""
        if not self._below.is_set() and not self._running:
            self.hand_on()
        self._below.wait()

    def wait_empty(self, timeout: float | None = None) -> bool:
        return self._emptied.wait(timeout)

    def _drain(self) -> None:
        queue = self._queue
        try:
            turn_began = time.perf_counter()
            while queue:
                entry = queue.popleft()
                try:
                    self._deliver(entry)
                except Exception:  # committed: the log keeps it, a replay repairs this
                    log.exception("handing entry %d to live delivery failed", entry.offset)
                if len(queue) < self._bound:
                    self._below.set()
                if time.perf_counter() - turn_began > DELIVERY_TURN_S:
                    # publishes waiting to be read or committed go next. Not after
                    # each entry: then one entry reached the hub per turn of the
                    # loop, the shared batches went out small and half as fast
                    gevent.sleep(0)
                    turn_began = time.perf_counter()
        finally:
            self._running = False
            if queue:  # killed mid-way (the publisher went): a greenlet takes the rest
                self._running = True
                self._spawn(self._drain)
            else:
                self._below.set()
                self._emptied.set()
