"""Per-connection batching. Pure: the caller passes the time.

A connection's queue holds one user's entries in offset order, and a batch
is always a run of that order, so batching can never reorder or lose what a
user receives. Priority decides how long an entry may wait, not which batch
it joins: splitting a user's entries into per-priority batches would let a
later urgent batch overtake an earlier one.

- size trigger: ``max_size`` entries are waiting;
- timeout trigger: the most urgent waiting entry has waited its priority's
  share of ``max_wait`` (high a quarter, normal all, low twice, capped);
- critical entries go out at once, with everything queued before them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.domain.model import Priority

T = TypeVar("T")

WAIT_SHARE = {Priority.CRITICAL: 0.0, Priority.HIGH: 0.25, Priority.NORMAL: 1.0,
              Priority.LOW: 2.0}
MAX_WAIT_CAP_S = 0.2


def longest_wait_ms(batch_timeout_ms: float) -> float:
    """The longest a live entry is meant to wait in a batch: ``low``'s share."""
    return min(MAX_WAIT_CAP_S * 1000.0, batch_timeout_ms * max(WAIT_SHARE.values()))


@dataclass(frozen=True)
class BatchPolicy:
    max_size: int = 50
    max_wait_s: float = 0.05

    def wait_for(self, priority: Priority) -> float:
        return min(MAX_WAIT_CAP_S, self.max_wait_s * WAIT_SHARE[priority])


@dataclass
class BatchQueue(Generic[T]):
    """Entries waiting for one connection, with the time the first batch is due."""

    policy: BatchPolicy
    items: list[tuple[T, float]] = field(default_factory=list)  # (entry, queued at)
    deadline: float | None = None

    def add(self, entries: list[tuple[T, Priority]], now: float) -> list[list[tuple[T, float]]]:
        """Queue entries; return the batches that must go out now (oldest first)."""
        out: list[list[tuple[T, float]]] = []
        for entry, priority in entries:
            out.extend(self.add_one(entry, self.policy.wait_for(priority), now))
        return out

    def add_one(self, entry: T, wait: float, now: float) -> list[list[tuple[T, float]]]:
        """``add`` for one entry whose wait (``policy.wait_for``) the caller
        worked out once for every connection it goes to."""
        self.items.append((entry, now))
        due = now + wait
        if self.deadline is None or due < self.deadline:
            self.deadline = due
        if wait == 0.0 or len(self.items) >= self.policy.max_size:
            return self._take_all()
        return []

    def due(self, now: float) -> list[list[tuple[T, float]]]:
        """The batches whose deadline has come (all that waits: it is one order)."""
        if self.deadline is None or now < self.deadline:
            return []
        return self._take_all()

    def take_all(self) -> list[list[tuple[T, float]]]:
        """Everything waiting, now (before a replay, or when closing)."""
        return self._take_all()

    def _take_all(self) -> list[list[tuple[T, float]]]:
        items, self.items, self.deadline = self.items, [], None
        size = self.policy.max_size
        return [items[i:i + size] for i in range(0, len(items), size)]
