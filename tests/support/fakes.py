"""Simple in-memory stand-ins for the service layer's ports (unit tests only);
those of the metrics ports are in fake_metrics.py. The contract suites
(tests/integration/test_contract_*.py) hold them to the real adapters."""

from __future__ import annotations

import json
import logging
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from service.domain.control import ControlEvent, EventDraft
from service.domain.errors import ConflictError
from service.domain.history import HistoryPage, HistoryQuery
from service.domain.history import select as select_page
from service.domain.idempotency import KeysTaken, PriorPublish
from service.domain.measurements import TallySpec
from service.domain.model import Appended, Notification, PublishRequest
from service.service_layer.ports import (
    UNREAD_CAP,
    Draft,
    StreamPosition,
    Tags,
    Unread,
)

logger = logging.getLogger(__name__)


class InMemoryNotificationLog:
    """One log with global offsets; a stream is its user's entries and the
    broadcasts since it began, above its floor."""

    def __init__(self) -> None:
        self.entries: list[tuple[Notification, tuple[str, ...] | None]] = []
        self.since: dict[str, int] = {}
        self.acked: dict[str, int] = defaultdict(int)
        self.trimmed: dict[str, int] = defaultdict(int)
        self.epochs: dict[str, int] = defaultdict(lambda: 1)
        self.opened_batches: list[list[str]] = []  # the users of each open_streams call
        self.reads = 0  # stream pages read
        self.keys: dict[str, PriorPublish] = {}  # Idempotency-Keys stored
        self._head = 0  # kept apart from the entries: a trim may remove the newest

    @property
    def head_offset(self) -> int:
        return self._head

    def append(self, request: PublishRequest, message_id: str, created_at: datetime) -> Appended:
        return self.append_many([(request, message_id, created_at)])[0]

    def _append_one(self, request: PublishRequest, message_id: str,
                    created_at: datetime) -> Appended:
        users = None if request.recipients.broadcast else tuple(sorted(request.recipients.user_ids))
        self._head = offset = self._head + 1
        for user_id in users or ():
            if user_id not in self.since:
                self._begin(user_id, offset - 1)
        notification = Notification(message_id, offset, request.category, request.priority,
                                    request.payload_json, created_at)
        self.entries.append((notification, users))
        return Appended(notification, users, len(self.since) if users is None else len(users))

    def append_many(self, drafts: Sequence[Draft]) -> list[Appended]:
        taken = {r.key.key: self.keys[r.key.key] for r, _, _ in drafts
                 if r.key is not None and r.key.key in self.keys}
        if taken:
            raise KeysTaken(taken)  # as the SQL log: nothing of the batch is stored
        appended = [self._append_one(*draft) for draft in drafts]
        for (request, _, created_at), entry in zip(drafts, appended, strict=True):
            if request.key is not None:
                self.keys[request.key.key] = PriorPublish(
                    request.key.fingerprint, entry.notification.id, entry.offset,
                    int(created_at.timestamp() * 1_000_000), entry.recipients)
        return appended

    def prior_publish(self, key: str) -> PriorPublish | None:
        return self.keys.get(key)

    def _begin(self, user_id: str, at: int) -> None:
        self.since[user_id] = self.acked[user_id] = self.trimmed[user_id] = at

    def stream(self, user_id: str) -> list[Notification]:
        if user_id not in self.since:
            return []
        floor = self.trimmed[user_id]
        return [n for n, users in self.entries if n.offset > floor
                and (user_id in users if users is not None else n.offset > self.since[user_id])]

    def read(self, user_id: str, after: int, limit: int) -> tuple[list[Notification],
                                                                   StreamPosition]:
        self.reads += 1
        page = [n for n in self.stream(user_id) if n.offset > after][:limit]
        return page, self.position(user_id)

    def history(self, user_id: str, query: HistoryQuery) -> tuple[HistoryPage, StreamPosition]:
        self.reads += 1
        return select_page(self.stream(user_id), query), self.position(user_id)

    def read_span(self, after: int, upto: int, limit: int = 500) -> list[Appended]:
        """A broadcast's recipients: the streams begun before it, as when it was appended."""
        return [Appended(n, users, len(users) if users is not None else
                         sum(1 for since in self.since.values() if since < n.offset))
                for n, users in self.entries if after < n.offset <= upto][:limit]

    def head(self) -> int:
        return self.head_offset

    def position(self, user_id: str) -> StreamPosition:
        if user_id not in self.since:
            head = self.head_offset
            return StreamPosition(head=head, acked=head, trimmed=head, since=head)
        return StreamPosition(head=self.head_offset, acked=self.acked[user_id],
                              trimmed=self.trimmed[user_id], epoch=self.epochs[user_id],
                              since=self.since[user_id])

    def open_stream(self, user_id: str) -> StreamPosition:
        return self.open_streams([user_id])[user_id]

    def open_streams(self, user_ids: Sequence[str]) -> dict[str, StreamPosition]:
        self.opened_batches.append(list(user_ids))
        for user_id in user_ids:
            if user_id not in self.since:
                self._begin(user_id, self.head_offset)
        return {user_id: self.position(user_id) for user_id in user_ids}

    def trim(self, user_id: str, upto: int) -> None:
        """Remove entries up to ``upto``, as the offline-queue bounds do."""
        lost = max(self.acked[user_id], self.trimmed[user_id])
        if any(lost < n.offset <= upto for n in self.stream(user_id)):
            self.epochs[user_id] += 1
        self.trimmed[user_id] = max(self.trimmed[user_id], upto)

    def ack_many(self, acks: Mapping[str, int]) -> int:
        moved = 0
        for user_id, offset in acks.items():
            if user_id not in self.since:
                continue  # no stream: nothing to move, as in SQL
            offset = min(offset, self.head_offset)
            if offset > self.acked[user_id]:
                self.acked[user_id] = offset
                moved += 1
        return moved

    def unread(self, user_id: str, cap: int = UNREAD_CAP) -> Unread:
        head = self.head_offset
        if user_id not in self.since:
            return Unread(0, head, head, exists=False)
        base = max(self.acked[user_id], self.trimmed[user_id])
        count = sum(1 for n in self.stream(user_id) if n.offset > base)
        return Unread(min(cap, count), self.acked[user_id], head)

    def ping(self) -> None:
        return None


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.closed: list[str] = []
        self.released: list[str] = []

    def send(self, sid: str, event: str, data: Any) -> None:
        self.sent.append((sid, event, data))

    def batches(self, sid: str) -> list[list[dict[str, Any]]]:
        return [
            json.loads(zlib.decompress(batch) if isinstance(batch, bytes) else batch)
            for s, event, batch in self.sent
            if s == sid and event == "notifications"
        ]

    def waiting(self, sid: str) -> int:
        return 0  # every send is written at once

    def disconnect(self, sid: str) -> None:
        self.closed.append(sid)

    def release(self, sid: str) -> None:
        self.released.append(sid)

    def offsets(self, sid: str) -> list[int]:
        return [n["offset"] for batch in self.batches(sid) for n in batch]


class RecordingSummary:
    def __init__(self, owner: RecordingTelemetry, spec: TallySpec,
                 tags: dict[str, str]) -> None:
        self.owner, self.spec, self.tags = owner, spec, tags

    def add(self, *values: float, peak: float | None = None, peak2: float | None = None) -> None:
        padded = values + (0,) * (len(self.spec.sums) - len(values))
        fields = dict(zip(self.spec.sums, padded, strict=True))
        for name, value in zip(self.spec.peaks, (peak, peak2), strict=False):
            if value is not None:
                fields[name] = value
        self.owner.records.append((self.spec.measurement, self.tags, fields))

    def wants_detail(self) -> bool:
        return True

    def observe(self, name: str, values: Sequence[float], copies: int = 1) -> None:
        self.owner.observed.append((self.spec.measurement, self.tags, name,
                                    list(values) * copies))


class RecordingTelemetry:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.observed: list[tuple[str, dict[str, str], str, list[float]]] = []

    def emit(self, measurement: str, tags: Tags, fields: Mapping[str, Any]) -> None:
        self.records.append((measurement, dict(tags), dict(fields)))

    def tally(self, spec: TallySpec, tags: Tags) -> RecordingSummary:
        return RecordingSummary(self, spec, dict(tags))

    def total(self, measurement: str, field: str = "count") -> int:
        return sum(f.get(field, 0) for m, _, f in self.records if m == measurement)


class ManualSpawner:
    """Runs background work only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def __call__(self, target: Callable[..., Any], /, *args: Any) -> None:
        self.pending.append((target, args))

    def run_all(self) -> None:
        while self.pending:
            target, args = self.pending.pop(0)
            target(*args)


class InMemoryControlLog:
    """The control log in a list: seq from 1, the optimistic check, and
    delivery to subscribers after each append (as SQLite does in-process)."""

    def __init__(self) -> None:
        self.events: list[ControlEvent] = []
        self.subscribers: list[list[Any]] = []  # [callback, after]

    def append(self, draft: EventDraft, expected_seq: int | None = None) -> ControlEvent:
        return self.append_many([draft], expected_seq)[0]

    def append_many(self, drafts: Sequence[EventDraft],
                    expected_seq: int | None = None) -> list[ControlEvent]:
        if not drafts:
            raise ValueError("nothing to append")
        last = self.events[-1].seq if self.events else 0
        if expected_seq is not None and expected_seq != last:
            raise ConflictError(f"at seq {last}, not {expected_seq}", field="If-Match")
        appended: list[ControlEvent] = []
        at = self.events[-1].at if self.events else None
        for draft in drafts:  # time never goes back in seq order, as in SQL
            at = draft.at if at is None else max(draft.at, at)
            appended.append(draft.recorded(last + len(appended) + 1, at))
        self.events.extend(appended)
        self.catch_up()
        return appended

    def read_after(self, seq: int, limit: int | None = None) -> list[ControlEvent]:
        return [e for e in self.events if e.seq > seq][:limit]

    def read_last(self, limit: int) -> list[ControlEvent]:
        return self.events[-limit:] if limit > 0 else []

    def subscribe(self, callback: Callable[[list[ControlEvent]], None], after: int = 0) -> None:
        self.subscribers.append([callback, after])

    def catch_up(self) -> None:
        for subscriber in self.subscribers:
            new = self.read_after(subscriber[1])
            if new:
                subscriber[1] = new[-1].seq  # first: a failing one is not fed again
                try:
                    subscriber[0](new)
                except Exception:  # as in SQL: one bad subscriber must not stop the others
                    logger.exception("control log subscriber %r failed", subscriber[0])


def appending(log: InMemoryNotificationLog, deliver: Callable[[Appended], None],
              ) -> Callable[[PublishRequest, str, datetime], Appended]:
    """publish()'s ``append`` for unit tests: store, then hand to delivery, at once."""
    def append(request: PublishRequest, message_id: str, created_at: datetime) -> Appended:
        appended = log.append_many([(request, message_id, created_at)])[0]
        deliver(appended)
        return appended
    return append
