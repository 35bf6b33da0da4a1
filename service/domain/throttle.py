"""Token buckets: a steady rate with a burst. Pure: the caller passes the time."""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.errors import ServiceError


class Throttled(ServiceError):
    """Over a rate limit: nothing was stored; retry after ``retry_after`` seconds."""

    code = "throttled"

    def __init__(self, message: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # most tokens it holds
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, now: float, n: float = 1.0) -> float:
        """Seconds until n tokens are there: 0 if they are now."""
        self._refill(now)
        if n <= self.tokens:
            return 0.0
        if n > self.burst:
            return float("inf")
        return (n - self.tokens) / self.rate

    def take(self, now: float, n: float = 1.0) -> float:
        """Take n tokens if there are enough and return 0; otherwise take
        nothing and return how many seconds until there will be."""
        wait = self.wait_for(now, n)
        if wait == 0.0:
            self.tokens -= n
        return wait

    def is_full_at(self, now: float) -> bool:
        """Untouched since long enough to be full again: forgetting it loses nothing."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: float

