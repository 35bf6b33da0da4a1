"""Committed entries, handed on in log order.

Offsets are global and the log has no gaps, so "in order" is simply each
offset after the one before. Entries come from this node's commits, from
other nodes' messages, or not at all (a lost message); one that comes early
waits for those before it, at most ``GAP_WAIT_S``, and then what is missing
is read from the log. The log follower (several nodes) says how far the log
has gone, so what no message brought is read too.

``offer`` says what became of an entry, so that the hub can account for
every entry committed on its node (``service_layer.books``): taken now or
held for later (``ACCEPTED``), left to the log (``UNKNOWN``: no head yet;
``BEFORE_START``: at or below the head the sequencer started from, so never
taken here, and replays read it), or already taken from the log by a gap
fill (``BEHIND``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import gevent

from service.domain.errors import StorageUnavailable
from service.domain.model import Appended
from service.service_layer.ports import NotificationLog, Spawner

log = logging.getLogger(__name__)

GAP_WAIT_S = 0.2  # how long an entry handed early waits for the ones before it
MAX_HELD = 10_000  # entries held back at most; past this the log fills the gap now
RETRY_SECONDS = 1.0

ACCEPTED, BEHIND, BEFORE_START, UNKNOWN = "accepted", "behind", "before_start", "unknown"


class LogSequencer:
    def __init__(self, log: NotificationLog, spawn: Spawner, take: Callable[[Appended], None],
                 *, page: int, from_log_origin: str | None = None,
                 mine: Callable[[int], bool] = lambda offset: False) -> None:
        self._log = log
        self._spawn = spawn
        self._take = take  # called once per entry, in offset order, after ``head`` moved
        self._page = page
        # several nodes: an entry read from the log was (most likely) not committed
        # here; ``mine`` says which were (committed here, not handed on yet)
        self._from_log_origin = from_log_origin
        self._mine = mine
        self.head: int | None = None  # last offset taken; None until known
        self.started_at: int | None = None  # the head it started from (``start_at``)
        self._unknown_upto = 0  # the highest offset offered before the head was known
        self._held: dict[int, Appended] = {}  # handed early: offset -> entry
        self._filling = False  # a greenlet is filling a gap from the log
        self._fill_to = 0  # the log's head as last read: what a fill must reach

    def start_at(self, log_head: int) -> None:
        """Start from the log's head as read (at the first connect, or by the
        follower): replays read what is committed up to it. Entries offered
        before, while the head was unknown, may be past that read; they were
        left to the log, and taking them now would count them twice."""
        if self.head is None:
            self.head = self.started_at = max(log_head, self._unknown_upto)

    def offer(self, appended: Appended) -> str:
        """Take the entry now, or hold it for those before it (``ACCEPTED``);
        or say why neither (see the module's doc)."""
        offset = appended.offset
        if self.head is None:
            self._unknown_upto = max(self._unknown_upto, offset)
            return UNKNOWN
        if offset <= self.head:
            if self.started_at is not None and offset <= self.started_at:
                return BEFORE_START
            return BEHIND
        if offset > self.head + 1:
            self._held[offset] = appended
            self._start_filling()
            return ACCEPTED
        self._advance(appended)
        while self._held and self.head + 1 in self._held:
            self._advance(self._held.pop(self.head + 1))
        return ACCEPTED

    def follow(self, log_head: int) -> None:
        """The log's head as read just now: what is up to it and was not
        handed here is read from the log, after a moment in which it may
        still come."""
        if self.head is None:
            self.start_at(log_head)  # what is committed up to here, replays read
            return
        if log_head <= self.head:
            return
        self._fill_to = max(self._fill_to, log_head)
        self._start_filling()

    def _advance(self, appended: Appended) -> None:
        self.head = appended.offset
        self._take(appended)

    def _start_filling(self) -> None:
        if not self._filling:
            self._filling = True
            self._spawn(self._fill_gap)

    def _fill_gap(self) -> None:
        """Wait a moment for what is missing, then read it from the log."""
        try:
            gevent.sleep(0 if len(self._held) >= MAX_HELD else GAP_WAIT_S)
            while True:
                assert self.head is not None  # a fill starts only once the head is known
                self._forget_taken()
                if not (self._held or self._fill_to > self.head):
                    break
                first_held = min(self._held) if self._held else self._fill_to + 1
                if self.head + 1 == first_held:
                    self.offer(self._held.pop(first_held))
                    continue
                try:
                    missing = self._log.read_span(self.head, first_held - 1, self._page)
                except StorageUnavailable as exc:
                    log.warning("filling a gap after offset %s paused: %s", self.head, exc)
                    gevent.sleep(RETRY_SECONDS)
                    continue
                for appended in missing:
                    if appended.offset > self.head:
                        if self._from_log_origin is not None and not self._mine(
                                appended.offset):
                            # (one committed here, its hand-off still to come,
                            # is this node's to account for: it stays its own)
                            appended = replace(appended, origin=self._from_log_origin)
                        self._advance(appended)
                if len(missing) < self._page:
                    # the rest below first_held is gone: trimmed, no stream holds it
                    self.head = max(self.head, first_held - 1)
        finally:
            self._filling = False

    def _forget_taken(self) -> None:
        """Drop held entries the log already gave: one handed while a read
        was under way, with an offset the read then covered. Left held, it
        stayed the first one missing, below the head: every later read was
        empty, the fill never ended, and the node took nothing more (the
        chaos run found it: a node that delivered nothing after a Redis
        restart)."""
        head = self.head
        if head is None:  # nothing is held before the head is known
            return
        for offset in [o for o in self._held if o <= head]:
            del self._held[offset]
