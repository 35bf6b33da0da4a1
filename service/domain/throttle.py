"""Token buckets: a steady rate with a burst. Pure: the caller passes the time."""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.errors import ServiceError
from service.domain.model import Priority


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


def parse_rates(raw: str, defaults: dict[Priority, Rate | None]) -> dict[Priority, Rate | None]:
    """``high=500:1000,low=off``: per priority, rate per second and burst; ``off``
    lifts the limit. Priorities not named keep their default. ValueError names
    the bad part."""
    rates = dict(defaults)
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, _, value = part.partition("=")
        try:
            priority = Priority(name.strip())
            if value.strip() == "off":
                rates[priority] = None
                continue
            per_second, burst = (float(v) for v in value.split(":"))
            if not (0 < per_second <= 1e6 and 1 <= burst <= 1e7):
                raise ValueError
        except ValueError:
            raise ValueError(
                f"throttle takes priority=RATE:BURST or priority=off, comma-separated "
                f"(e.g. high=500:1000,low=off), not {part!r}") from None
        rates[priority] = Rate(per_second=per_second, burst=burst)
    return rates


def format_rates(rates: dict[Priority, Rate | None]) -> str:
    return ",".join(f"{p.value}=off" if rates.get(p) is None
                    else f"{p.value}={rates[p].per_second:g}:{rates[p].burst:g}"
                    for p in Priority)

