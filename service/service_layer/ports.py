"""The small interfaces the service layer depends on.

Each has one real implementation in ``service.adapters`` and, where unit
tests need one, a simple in-memory implementation in ``tests/support/fakes.py``.
``tests/support/port_conformance.py`` holds each implementation to its port
under mypy: a new implementation gets a line there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.domain.control import ControlEvent, EventDraft
from service.domain.history import HistoryPage, HistoryQuery
from service.domain.idempotency import PriorPublish
from service.domain.measurements import TallySpec
from service.domain.model import Appended, Notification, Priority, PublishRequest


@dataclass(frozen=True)
class StreamPosition:
    head: int  # the log's newest offset (offsets are global), 0 for an empty log
    acked: int  # highest offset the user acknowledged
    trimmed: int = 0  # nothing at or below this offset is left in the stream
    epoch: int = 1  # moves on each time trimming removed entries not yet acknowledged
    since: int = 0  # the stream began after this offset: nothing below was ever in it

    @property
    def lost(self) -> bool:
        """Whether the offline-queue bounds removed entries of this stream."""
        return self.trimmed > self.since


@dataclass
class TrimResult:
    streams: int = 0  # streams trimmed
    entries: int = 0  # entries removed
    unacked: int = 0  # of which the user had not acknowledged (lost to them)
    messages: int = 0  # message bodies no longer referred to, removed
    epochs_bumped: int = 0
    skipped: bool = False  # another node held the lock

    def merge(self, other: TrimResult) -> None:
        for name in ("streams", "entries", "unacked", "messages", "epochs_bumped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class StreamTrimmer(Protocol):
    def trim(self, keep: int, max_age_s: float | None, now: float | None = None) -> TrimResult:
        """Remove each stream's entries beyond the newest ``keep`` or older than
        ``max_age_s``, oldest first; move the epoch of streams that lost
        entries not yet acknowledged."""


Draft = tuple[PublishRequest, str, datetime]  # a publish to append: request, id, created at

UNREAD_CAP = 1_000  # unread counts stop here: a badge shows "999+", not an exact figure


@dataclass(frozen=True)
class Unread:
    count: int  # entries of the stream above max(acked, trimmed), at most the cap
    acked: int  # the user's acknowledged offset; the head for a user with no stream
    head: int  # the log's newest offset
    exists: bool = True  # False: the user has no stream yet (count is 0)


class NotificationLog(Protocol):
    def append(
        self, request: PublishRequest, message_id: str, created_at: datetime
    ) -> Appended:
        """Append one entry, at the log's next offset, to every recipient's
        stream, durably. Offsets are committed in order, without gaps."""

    def append_many(self, drafts: Sequence[Draft]) -> list[Appended]:
        """``append`` for several, in one transaction: consecutive offsets in
        the order given, all committed or none. Raises ``KeysTaken`` (and
        stores nothing) if some carry an Idempotency-Key already stored."""

    def prior_publish(self, key: str) -> PriorPublish | None:
        """What the publish that stored this Idempotency-Key was answered
        (within the key's window)."""

    def read(self, user_id: str, after: int, limit: int) -> tuple[list[Notification],
                                                                   StreamPosition]:
        """Entries of one stream with offset > after, oldest first, and where
        the stream stands, read together."""

    def history(self, user_id: str, query: HistoryQuery) -> tuple[HistoryPage, StreamPosition]:
        """A page of one stream by ``domain.history``'s rules (cursor, limit,
        filters), and where the stream stands, read together."""

    def read_span(self, after: int, upto: int, limit: int = 500) -> list[Appended]:
        """The entries of the log with after < offset <= upto, with their
        recipients, oldest first, at most ``limit`` of them (a node fills a
        gap in what it was handed, a page at a time)."""

    def head(self) -> int:
        """The log's newest offset."""

    def open_stream(self, user_id: str) -> StreamPosition:
        """Create the user's stream if needed and return where it stands."""

    def open_streams(self, user_ids: Sequence[str]) -> dict[str, StreamPosition]:
        """``open_stream`` for several users at once, in one or two
        statements: where each stream stands, by user id."""

    def ack_many(self, acks: Mapping[str, int]) -> int:
        """Record the highest acknowledged offset of each user, in one
        transaction; return how many streams moved."""

    def unread(self, user_id: str, cap: int = UNREAD_CAP) -> Unread:
        """How many entries of the user's stream lie above what they
        acknowledged (and above its floor), counted up to ``cap``."""

    def ping(self) -> None:
        """Raise StorageUnavailable if the log cannot be reached."""


Tags = tuple[tuple[str, str], ...]  # (key, value) pairs, e.g. (("mode", "live"),)


class Summary(Protocol):
    def add(self, v0: float, v1: float = 0, v2: float = 0, v3: float = 0,
            peak: float = ..., peak2: float = ...) -> None:
        """Add to the sums named by the spec, in order; peaks keep the largest."""

    def wants_detail(self) -> bool:
        """Whether to ``observe`` this call's per-entry values."""

    def observe(self, name: str, values: Sequence[float], copies: int = 1) -> None:
        """Add per-entry values to this interval's histogram of ``name``,
        each standing for ``copies`` deliveries."""


class Telemetry(Protocol):
    """Never blocks, never does I/O, never raises."""

    def emit(self, measurement: str, tags: Tags, fields: Mapping[str, Any]) -> None:
        """Record one event: one point."""

    def tally(self, spec: TallySpec, tags: Tags) -> Summary:
        """This interval's summary of (spec, tags): ``.add(...)`` to it at once.
        One point per tag set per interval."""


class PressureGate(Protocol):
    """What backpressure decides for delivery (service_layer.backpressure)."""

    deferred: int  # entries held back in the current episode

    def defers(self, priority: Priority) -> bool:
        """Whether live delivery of this priority is held back now."""

    def admit_connection(self) -> None:
        """Raise ConnectionLimitReached if the node takes no more connections."""


class Sender(Protocol):
    def send(self, sid: str, event: str, data: Any) -> None:
        """Queue an event for one connection without waiting for the network."""

    def waiting(self, sid: str) -> int:
        """Bytes sent to this connection and not yet written to its socket."""

    def disconnect(self, sid: str) -> None:
        """Close one connection (its disconnect handler runs as for any other)."""

    def release(self, sid: str) -> None:
        """Forget what is kept about a connection that has gone."""


class Spawner(Protocol):
    def __call__(self, target: Callable[..., Any], /, *args: Any) -> Any:
        """Run target(*args) as a background greenlet."""


class ControlLog(Protocol):
    """The append-only control event log (``adapters.control_log``)."""

    def append(self, draft: EventDraft, expected_seq: int | None = None) -> ControlEvent:
        """``append_many`` of one draft."""

    def append_many(self, drafts: Sequence[EventDraft],
                    expected_seq: int | None = None) -> list[ControlEvent]:
        """Append the drafts together, at the next seqs; ConflictError if
        ``expected_seq`` is given and is not the log's last seq. Subscribers
        have seen them when this returns."""

    def read_after(self, seq: int, limit: int | None = None) -> list[ControlEvent]:
        """Events with seq > ``seq``, in seq order (the catch-up read)."""

    def read_last(self, limit: int) -> list[ControlEvent]:
        """The newest ``limit`` events, in seq order."""

    def subscribe(self, callback: Callable[[list[ControlEvent]], None], after: int = 0) -> None:
        """Call ``callback`` with each new run of events above ``after``, in
        seq order, once each, whichever node appended them."""

    def catch_up(self) -> None:
        """Deliver to the subscribers what they have not seen yet, now."""


class AnalysisReader(Protocol):
    """What the analysis jobs and the runtime wrote to InfluxDB, read back
    (``adapters.influx_reader``). Raises StorageUnavailable when the store
    cannot be reached. Times are timezone-aware; dicts are JSON-ready."""

    def latest_trends(self) -> list[dict[str, Any]]:
        """The newest ``analysis_trend`` point of each (metric, window):
        ``{metric, window, at, node}`` and the catalogue's fields."""

    def regressions(self, since: datetime, until: datetime,
                    limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` ``analysis_regression`` points in [since,
        until), oldest first: ``{at, metric, direction, node}`` and the fields."""

    def window_summary(self, start: datetime, end: datetime) -> dict[str, float | None]:
        """The key metrics over [start, end), by ``domain.report.METRIC_KEYS``;
        None for one with no data."""


class JobLock(Protocol):
    """A cluster-wide lock per job name (``adapters.job_lock``)."""

    def hold(self, name: str) -> AbstractContextManager[bool]:
        """Try to take the lock named ``name`` without waiting. The context's
        value is True when this process now holds it (released on leaving the
        context, also when it raises), False when another one holds it."""


@dataclass(frozen=True)
class DataPoint:
    """A point the jobs write: ``tags`` include ``node`` and ``role``;
    ``at`` is timezone-aware (a rollup's is its bucket's start)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: Mapping[str, Any]
    at: datetime


class PointWriter(Protocol):
    def write(self, points: Sequence[DataPoint], retention_policy: str | None = None) -> None:
        """Write the points, to the default retention policy or the one named.
        A point of the same series and time overwrites the earlier one."""


class RollupStore(PointWriter, Protocol):
    """Raw points aggregated per bucket, and where the rollups stand
    (``adapters.influx_rollups``)."""

    def newest_bucket(self, resolution: str, since: datetime) -> datetime | None:
        """The start of the newest bucket at ``resolution`` written at or
        after ``since``, or None."""

    def aggregate(self, measurement: str, start: datetime, end: datetime,
                  resolution: str) -> list[DataPoint]:
        """The rollup points of ``measurement`` for the buckets in [start, end):
        one per bucket and series with any raw point, by each catalogue field's ``rollup``."""


class MetricSeries(Protocol):
    """The analysis jobs' key metrics (``measurements.ANALYSIS_METRICS``), read
    from the rollups (``adapters.influx_series``)."""

    def series(self, metric: str, start: datetime, end: datetime, resolution: str = "1m",
               *, node: str | None = None) -> list[tuple[datetime, float]]:
        """One value per bucket (``1m`` or ``1h``) in [start, end), oldest
        first, stamped with the bucket's start: the whole cluster, or one node."""
