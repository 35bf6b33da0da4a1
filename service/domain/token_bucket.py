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


@dataclass(slots=True)  # one per key, and many keys: half the memory, faster attributes
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

    def take_one(self, now: float) -> float:
        """``take(now, 1)`` in one call: the per-event limits run it on every
        Socket.IO event, and the three calls of take() cost twice as much."""
        tokens = self.tokens
        if now > self.updated:
            tokens = min(self.burst, tokens + (now - self.updated) * self.rate)
            self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return float("inf") if self.burst < 1.0 else (1.0 - tokens) / self.rate

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
            rates[Priority(name.strip())] = parse_rate(value)
        except ValueError:
            raise ValueError(
                f"throttle takes priority=RATE:BURST or priority=off, comma-separated "
                f"(e.g. high=500:1000,low=off), not {part!r}") from None
    return rates


def parse_rate(value: str) -> Rate | None:
    """``RATE:BURST`` (per second, and most at once), or ``off`` for None.
    ValueError if it is neither, or out of range."""
    value = value.strip()
    if value == "off":
        return None
    per_second, burst = (float(v) for v in value.split(":"))  # ValueError unless two
    if not (0 < per_second <= 1e6 and 1 <= burst <= 1e7):  # NaN fails too
        raise ValueError(f"rate {per_second:g}/s or burst {burst:g} out of range")
    return Rate(per_second=per_second, burst=burst)


def format_rates(rates: dict[Priority, Rate | None]) -> str:
    return ",".join(f"{p.value}={_format_rate(rates.get(p))}" for p in Priority)


def _format_rate(rate: Rate | None) -> str:
    return "off" if rate is None else f"{rate.per_second:g}:{rate.burst:g}"

