"""Rules for admitting and keeping connections. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.errors import ServiceError


class SlowConsumer(ServiceError):
    """A connection's unsent data passed its bound: the client reads too slowly."""

    code = "slow_consumer"


class ConnectionLimitReached(ServiceError):
    """A limit on open connections would be passed; the client may retry later."""

    code = "connection_limit"


@dataclass(frozen=True)
class ConnectionPolicy:
    max_per_node: int = 10_000
    max_per_user: int = 10
    idle_timeout_s: float = 300.0  # no event from the client for this long: closed

    def admit(self, open_on_node: int, open_for_user: int) -> None:
        """Raise ConnectionLimitReached, naming the limit, if one more would pass it."""
        if open_on_node >= self.max_per_node:
            raise ConnectionLimitReached(
                f"this node holds its limit of {self.max_per_node} connections; "
                "retry later or on another node", field="node")
        if open_for_user >= self.max_per_user:
            raise ConnectionLimitReached(
                f"this user already has {self.max_per_user} open connections, the limit",
                field="user")

    def is_idle(self, last_activity: float, now: float) -> bool:
        return now - last_activity > self.idle_timeout_s
