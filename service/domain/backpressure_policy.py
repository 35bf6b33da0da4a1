"""Backpressure: what a node does when it falls behind. Pure: no I/O.

Pressure is the bytes waiting in all connections' send queues (clients
reading slower than notifications arrive), and the process's memory against
the level's budget. Past the high-water mark, or over the budget, the node is
*engaged* until the queues drain below the low-water mark and memory is back
under 90 % of the budget (hysteresis, so it does not flap).

While engaged, each priority gets its documented action:

- ``refuse``: the publish gets 429 with ``Retry-After`` and nothing is stored;
  the publisher retries later (default for ``low``);
- ``defer``: the publish is stored and acknowledged (202) but not pushed live:
  connected clients get it from the log once the pressure is gone, in order
  (default for ``normal`` and ``high``);
- ``deliver``: as always (``critical``: what pressure must never hold back).

Over the memory budget, new connections are refused too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from service.domain.errors import ServiceError
from service.domain.model import Priority


class Overloaded(ServiceError):
    """The node is shedding load: nothing was stored; retry after ``retry_after``."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class Action(enum.Enum):
    REFUSE = "refuse"
    DEFER = "defer"
    DELIVER = "deliver"


DEFAULT_ACTIONS = {Priority.LOW: Action.REFUSE, Priority.NORMAL: Action.DEFER,
                   Priority.HIGH: Action.DEFER, Priority.CRITICAL: Action.DELIVER}
RELEASE_MEMORY_SHARE = 0.9


@dataclass(frozen=True)
class BackpressurePolicy:
    memory_budget_bytes: int = 512 << 20
    high_water_bytes: int = 128 << 20  # queued for clients, over all connections
    low_water_bytes: int = 32 << 20
    actions: dict[Priority, Action] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    retry_after_s: float = 2.0

    @classmethod
    def for_budget(cls, memory_budget_bytes: int, actions: dict[Priority, Action] | None = None,
                   high_water_bytes: int | None = None) -> BackpressurePolicy:
        """Unless told otherwise, send queues may take a quarter of the budget
        before the node pushes back, and must drain to a quarter of that."""
        high = high_water_bytes or memory_budget_bytes // 4
        return cls(memory_budget_bytes=memory_budget_bytes, high_water_bytes=high,
                   low_water_bytes=high // 4, actions=actions or dict(DEFAULT_ACTIONS))

    def engaged(self, was_engaged: bool, queued_bytes: int, rss_bytes: int) -> bool:
        if not was_engaged:
            return queued_bytes >= self.high_water_bytes or self.over_budget(rss_bytes)
        return not (queued_bytes <= self.low_water_bytes
                    and rss_bytes < self.memory_budget_bytes * RELEASE_MEMORY_SHARE)

    def over_budget(self, rss_bytes: int) -> bool:
        return rss_bytes >= self.memory_budget_bytes

    def action(self, priority: Priority) -> Action:
        return self.actions.get(priority, Action.DELIVER)


def parse_actions(raw: str) -> dict[Priority, Action]:
    """``BACKPRESSURE=low=refuse,normal=defer``: priorities not named keep the default."""
    actions = dict(DEFAULT_ACTIONS)
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, _, value = part.partition("=")
        try:
            actions[Priority(name.strip())] = Action(value.strip())
        except ValueError:
            raise ValueError(
                f"BACKPRESSURE: {part!r} is not PRIORITY=refuse|defer|deliver") from None
    return actions
