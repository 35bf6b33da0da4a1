"""The node's books of what it committed: every stream entry committed here
ends in one dispatch outcome, and the books show that it did.

- ``published``: counted where an entry is committed (``BookedLog``, around
  the group commit's append), one per recipient, as ``notify_publish``;
- ``live``, ``queued``, ``deferred``, ``dropped``: counted where the hub
  counts ``notify_dispatch`` (``DeliveryHub._count``), and only there;
- ``pending``: entries committed here whose way through the node has not
  ended yet: waiting for the hand-off to delivery (the group commit hands
  on in turns), held by the sequencer for a gap, or waiting for a fan-out
  in progress. An entry's way ends (``settle``) when the hub is done with
  it, whether or not an outcome was counted.

So ``unaccounted`` = published - outcomes - pending is 0 on a healthy node,
by measurement, not by construction: an entry whose way ended without an
outcome (a fan-out that raised, an offer dropped) leaves it above 0, and an
entry counted twice below. Entries committed on other nodes are theirs.

Every figure is a plain int changed without a yield, and ``snapshot``
reads them all without one: under gevent nothing runs in between, so the
figures are of one moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from service.domain.model import Appended
from service.service_layer.ports import Draft, NotificationLog, Telemetry


class Books:
    __slots__ = ("published", "live", "queued", "deferred", "dropped", "pending", "_open")

    def __init__(self) -> None:
        self.published = 0
        self.live = self.queued = self.deferred = self.dropped = 0
        self.pending = 0
        self._open: dict[int, int] = {}  # offset -> recipients: committed here, not settled

    def committed(self, entries: Sequence[Appended]) -> None:
        """Entries this node just committed (before anything else can run)."""
        open_ = self._open
        for entry in entries:
            if entry.offset in open_:
                continue  # told twice: counted once
            open_[entry.offset] = entry.recipients
            self.published += entry.recipients
            self.pending += entry.recipients

    def holds(self, offset: int) -> bool:
        """Whether the entry was committed here and its way has not ended."""
        return offset in self._open

    def settle(self, offset: int) -> None:
        """The hub is done with the entry (any entry: one not committed here,
        or settled before, changes nothing)."""
        recipients = self._open.pop(offset, None)
        if recipients is not None:
            self.pending -= recipients

    def count(self, live: int, queued: int, deferred: int, dropped: int) -> None:
        """Dispatch outcomes of entries committed here (``notify_dispatch``)."""
        self.live += live
        self.queued += queued
        self.deferred += deferred
        self.dropped += dropped

    def snapshot(self) -> dict[str, int]:
        """The books of this moment (no yield in here)."""
        published, pending = self.published, self.pending
        outcomes = {"live": self.live, "queued": self.queued, "deferred": self.deferred,
                    "dropped": self.dropped}
        return {"published": published, **outcomes, "pending": pending,
                "unaccounted": published - sum(outcomes.values()) - pending}

    def emit(self, telemetry: Telemetry) -> None:
        """For the runtime sampler: one ``notify_books`` point."""
        telemetry.emit("notify_books", (), self.snapshot())


class BookedLog:
    """The notification log, with what the group commit appends entered in
    the books as it returns (before the commit hands the entries on): the
    ``NotificationLog`` the ``WriteBatcher`` is given. Everything else goes
    to the log as it is."""

    def __init__(self, log: NotificationLog, books: Books) -> None:
        self._log = log
        self._books = books

    def append_many(self, drafts: Sequence[Draft]) -> list[Appended]:
        appended = self._log.append_many(drafts)
        self._books.committed(appended)
        return appended

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self._log, name)
        return method
