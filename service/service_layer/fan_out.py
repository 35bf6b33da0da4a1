"""Taking committed entries in log order and fanning each one out in turn,
for the DeliveryHub (service_layer.delivery), which holds the state named
below.

The sequencer hands entries over in offset order (holding back any that
arrive early); each is remembered among the recent entries, then fanned out
one at a time: a shared batch goes out in slices that yield to the loop, and
what comes meanwhile (the next entry, a batch deadline) waits its turn.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, cast

from service.domain.measurements import DISPATCHED
from service.domain.model import Appended
from service.service_layer.cohort import Cohort
from service.service_layer.hand_off import HandOff
from service.service_layer.recent import RecentEntries
from service.service_layer.sequencer import ACCEPTED, BEFORE_START, UNKNOWN

# the hub's logger name, kept from before it was split in three modules
log = logging.getLogger("service.service_layer.delivery")

_RELAYED = (("outcome", "relayed"),)


class FanOutInTurn(HandOff):
    """The in-order half of the hub: what it reads and changes is set up by
    ``DeliveryHub.__init__``."""

    _fan_out: deque[tuple[Callable[..., None], tuple[Any, ...]]]  # pieces waiting their turn
    _fanning: bool
    _on_foreign: Callable[[Appended], None] | None
    _clock: Callable[[], float]
    recent: RecentEntries

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
        # the timers' keys are sids and the cohort's TIMER_KEY: all str
        self.batch_timers.run(cast("Callable[[Hashable, float], None]", self.flush_due))
