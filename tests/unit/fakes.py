"""Simple in-memory stand-ins for the service layer's ports (unit tests only)."""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from datetime import datetime
from typing import Any

from service.domain.model import Message, Notification, PublishRequest
from service.service_layer.ports import StreamPosition


class InMemoryNotificationLog:
    def __init__(self) -> None:
        self.streams: dict[str, list[Notification]] = defaultdict(list)
        self.acked: dict[str, int] = defaultdict(int)
        self.heads: dict[str, int] = defaultdict(int)
        self.trimmed: dict[str, int] = defaultdict(int)
        self.epochs: dict[str, int] = defaultdict(lambda: 1)

    def append(
        self, request: PublishRequest, message_id: str, created_at: datetime
    ) -> list[Notification]:
        users = list(self.streams) if request.recipients.broadcast else request.recipients.user_ids
        out = []
        message = Message(message_id, request.category, request.priority, request.payload_json,
                          created_at)
        for user_id in sorted(users):
            entry = Notification(message, user_id, self.heads[user_id] + 1)
            self.streams[user_id].append(entry)
            self.heads[user_id] += 1
            out.append(entry)
        return out

    def read(self, user_id: str, after: int, limit: int) -> list[Notification]:
        return [n for n in self.streams.get(user_id, []) if n.offset > after][:limit]

    def open_stream(self, user_id: str) -> StreamPosition:
        return StreamPosition(head=self.heads[user_id], acked=self.acked[user_id],
                              trimmed=self.trimmed[user_id], epoch=self.epochs[user_id])

    def trim(self, user_id: str, upto: int) -> None:
        """Remove entries up to ``upto``, as the offline-queue bounds do."""
        self.streams[user_id] = [n for n in self.streams[user_id] if n.offset > upto]
        if upto > self.acked[user_id]:
            self.epochs[user_id] += 1
        self.trimmed[user_id] = max(self.trimmed[user_id], upto)

    def ack_many(self, acks: dict[str, int]) -> int:
        covered = 0
        for user_id, offset in acks.items():
            offset = min(offset, self.heads[user_id])
            covered += max(0, offset - self.acked[user_id])
            self.acked[user_id] = max(self.acked[user_id], offset)
        return covered

    def ping(self) -> None:
        return None


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.closed: list[str] = []
        self.released: list[str] = []

    def send(self, sid: str, event: str, data: Any) -> None:
        self.sent.append((sid, event, data))

    def batches(self, sid: str) -> list[list[dict]]:
        return [
            json.loads(zlib.decompress(batch) if isinstance(batch, bytes) else batch)
            for s, event, batch in self.sent
            if s == sid and event == "notifications"
        ]

    def disconnect(self, sid: str) -> None:
        self.closed.append(sid)

    def release(self, sid: str) -> None:
        self.released.append(sid)

    def offsets(self, sid: str) -> list[int]:
        return [n["offset"] for batch in self.batches(sid) for n in batch]


class _RecordingSummary:
    def __init__(self, owner: RecordingTelemetry, spec: Any, tags: dict) -> None:
        self.owner, self.spec, self.tags = owner, spec, tags

    def add(self, *values: Any, peak: Any = None, peak2: Any = None) -> None:
        padded = values + (0,) * (len(self.spec.sums) - len(values))
        fields = dict(zip(self.spec.sums, padded, strict=True))
        for name, value in zip(self.spec.peaks, (peak, peak2), strict=False):
            if value is not None:
                fields[name] = value
        self.owner.records.append((self.spec.measurement, self.tags, fields))

    def wants_detail(self) -> bool:
        return True

    def observe(self, name: str, values: Any) -> None:
        self.owner.observed.append((self.spec.measurement, self.tags, name, list(values)))


class RecordingTelemetry:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict, dict]] = []
        self.observed: list[tuple[str, dict, str, list]] = []

    def emit(self, measurement: str, tags: Any, fields: Any) -> None:
        self.records.append((measurement, dict(tags), dict(fields)))

    def tally(self, spec: Any, tags: Any) -> Any:
        return _RecordingSummary(self, spec, dict(tags))

    def total(self, measurement: str, field: str = "count") -> int:
        return sum(f.get(field, 0) for m, _, f in self.records if m == measurement)


class ManualSpawner:
    """Runs background work only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, tuple]] = []

    def __call__(self, target: Any, *args: Any) -> None:
        self.pending.append((target, args))

    def run_all(self) -> None:
        while self.pending:
            target, args = self.pending.pop(0)
            target(*args)
