"""The small interfaces the service layer depends on.

Each has one real implementation in ``service.adapters`` and, where unit
tests need one, a simple in-memory implementation in ``tests/unit/fakes.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.domain.model import Notification, PublishRequest


@dataclass(frozen=True)
class StreamPosition:
    head: int  # offset of the newest entry, 0 for an empty stream
    acked: int  # highest offset the user acknowledged


class NotificationLog(Protocol):
    def append(
        self, request: PublishRequest, message_id: str, created_at: datetime
    ) -> list[Notification]:
        """Append one message to each recipient's stream, durably, and return
        the entries in offset order per user."""

    def read(self, user_id: str, after: int, limit: int) -> list[Notification]:
        """Entries of one stream with offset > after, oldest first."""

    def open_stream(self, user_id: str) -> StreamPosition:
        """Create the user's stream if needed and return where it stands."""

    def ack(self, user_id: str, offset: int) -> int:
        """Record an acknowledgement; return how many entries it newly covers."""

    def ping(self) -> None:
        """Raise StorageUnavailable if the log cannot be reached."""


class Telemetry(Protocol):
    def emit(
        self,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, Any],
    ) -> None:
        """Record one event. Never blocks, never does I/O, never raises."""


class Sender(Protocol):
    def send(self, sid: str, event: str, data: Any) -> None:
        """Queue an event for one connection without waiting for the network."""

    def disconnect(self, sid: str) -> None: ...


class Spawner(Protocol):
    def __call__(self, target: Any, *args: Any) -> Any:
        """Run target(*args) as a background greenlet."""
