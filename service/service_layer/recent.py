"""The entries the hub took last, kept in memory, in offset order.

A connection that missed only recent entries (it connected while others
were being published, or reconnected a moment later) gets them from here
rather than from a read of the log. In a storm of 10,000 new users with
publishing going on, every connect that came after any publish missed
something, and their 10,000 reads queued for the database: publishes
waited up to 1.8 s behind them. The hub takes every entry, in order and
without gaps, so this window is exact: it either covers a connection's gap
whole, or says it does not (``None``) and the log is read as before.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

from service.domain.model import Appended, Notification

RECENT_ENTRIES = 4096
# What the window may hold, counting each entry's JSON and about 500 bytes of
# objects around it: a node's memory must not grow with what a client does
# not acknowledge (tests/e2e/test_faults.py holds it to 6 MB for 12 MB sent).
RECENT_BYTES = 2 << 20
ENTRY_OVERHEAD = 512


class RecentEntries:
    def __init__(self, max_entries: int = RECENT_ENTRIES, max_bytes: int = RECENT_BYTES) -> None:
        self._entries: deque[Appended] = deque()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def add(self, appended: Appended) -> None:
        """The next entry in log order (one past the last added)."""
        entries = self._entries
        if entries and appended.offset != entries[-1].offset + 1:
            entries.clear()  # not consecutive (cannot happen in order): start again
            self._bytes = 0
        entries.append(appended)
        self._bytes += len(appended.notification.wire_json) + ENTRY_OVERHEAD
        while len(entries) > self._max_entries or (self._bytes > self._max_bytes
                                                   and len(entries) > 1):
            self._bytes -= len(entries.popleft().notification.wire_json) + ENTRY_OVERHEAD

    def owed(self, user_id: str, after: int, upto: int, since: int) -> list[Notification] | None:
        """The entries of ``user_id``'s stream (its own, and broadcasts after
        ``since``) in (after, upto], or None if they are not all here."""
        if upto <= after:
            return []
        entries = self._entries
        if not entries or entries[0].offset > after + 1 or entries[-1].offset < upto:
            return None
        first = entries[0].offset
        owed = []
        for appended in islice(entries, after + 1 - first, upto + 1 - first):
            if appended.user_ids is None:
                if appended.offset > since:
                    owed.append(appended.notification)
            elif user_id in appended.user_ids:
                owed.append(appended.notification)
        return owed
