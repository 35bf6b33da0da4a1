"""A user's notification history, and marking it read, for the HTTP API.

Pages are read through the cached log (``cached_log``), as the unread count
is: a hot stream's pages are served from the user level of the query cache,
and every write to the stream (a publish to it, an ack, a trim) drops them.

Marking read is an ack: the same write a Socket.IO ack ends in (the hub's
``AckBuffer`` flushes ``ack_many`` through the hub's log, which tells the
other nodes, and through the cached log, which drops the user's values), made
at once rather than with the next flush, so that the answer, the unread
count, the ``read`` flags and a reconnect's replay all agree as soon as it
returns. Acks only move forward: a mark below the current one changes
nothing; one beyond the log's head is refused, as a Socket.IO ``last_offset``
beyond it is. A mark is counted as an ack (``notify_ack``: one event, the
entries it newly covered), as the hub's acks are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from service.domain.errors import OffsetOutOfRange
from service.domain.history import HistoryPage, HistoryQuery
from service.domain.measurements import ACKED
from service.service_layer.ports import StreamPosition, Telemetry, Unread


class HistoryLog(Protocol):
    def history(self, user_id: str, query: HistoryQuery) -> tuple[HistoryPage,
                                                                   StreamPosition]: ...

    def unread(self, user_id: str) -> Unread: ...

    def head(self) -> int: ...


class AckWriter(Protocol):
    def ack_many(self, acks: Mapping[str, int]) -> int: ...


class History:
    def __init__(self, log: HistoryLog, acks: AckWriter,
                 log_head: Callable[[], int] | None = None,
                 telemetry: Telemetry | None = None) -> None:
        self._log = log  # the cached log
        self._acks = acks  # where the hub's acks are written (relayed to other nodes)
        self._log_head = log_head or log.head  # uncached: what another node just appended
        self._telemetry = telemetry

    def page(self, user_id: str, query: HistoryQuery) -> tuple[HistoryPage, StreamPosition]:
        return self._log.history(user_id, query)

    def mark_read(self, user_id: str, offset: int) -> Unread:
        """Acknowledge every entry of the user's stream up to ``offset``; the
        unread count after it."""
        if offset > self._log.head():
            head = self._log_head()  # the cached head may not have heard of it yet
            if offset > head:
                raise OffsetOutOfRange(
                    f"offset {offset} is beyond the log's head {head}", field="offset")
        before = self._log.unread(user_id).count
        self._acks.ack_many({user_id: offset})
        after = self._log.unread(user_id)
        if self._telemetry is not None:
            self._telemetry.tally(ACKED, ()).add(max(0, before - after.count), 1)
        return after
