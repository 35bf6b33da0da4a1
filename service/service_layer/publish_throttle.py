"""Per-user, per-priority rate limits on publishing, with bursts.

Each (user, priority) has a token bucket; a publish takes one token from the
bucket of each recipient, all or nothing. A broadcast takes one from a
node-wide bucket of its priority. When a bucket is empty the publish is
refused with ``Throttled`` (HTTP 429 with Retry-After) and nothing is stored:
the publisher slows down, and no user is flooded. ``critical`` is never
throttled. Limits are per node.

Memory stays bounded: a bucket untouched long enough to be full again is
forgotten, which changes nothing; past ``max_buckets`` the oldest go first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from service.domain.measurements import THROTTLED
from service.domain.model import Priority, PublishRequest
from service.domain.token_bucket import Rate, Throttled, TokenBucket
from service.service_layer.ports import Telemetry

BROADCAST = "*"  # the key of the node-wide broadcast buckets; not a valid user id


class PublishThrottle:
    def __init__(
        self,
        rates: Mapping[Priority, Rate | None],
        *,
        max_buckets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._rates = dict(rates)
        self._max = max_buckets
        self._clock = clock
        self._telemetry = telemetry
        self._buckets: dict[tuple[str, Priority], TokenBucket] = {}

    def set_rates(self, rates: Mapping[Priority, Rate | None]) -> None:
        """New rates, live. Buckets keep their tokens, capped at the new burst,
        so a change never hands everyone a fresh burst."""
        self._rates = dict(rates)
        for (_, priority), bucket in self._buckets.items():
            rate = self._rates.get(priority)
            if rate is not None:
                bucket.rate, bucket.burst = rate.per_second, rate.burst
                bucket.tokens = min(bucket.tokens, rate.burst)

    def admit(self, request: PublishRequest) -> None:
        """Take one token per recipient, or raise Throttled and take none."""
        rate = self._rates.get(request.priority)
        if rate is None:
            return
        now = self._clock()
        keys = [BROADCAST] if request.recipients.broadcast else list(request.recipients.user_ids)
        buckets = [self._bucket(key, request.priority, rate, now) for key in keys]
        retry_after = max((bucket.wait_for(now) for bucket in buckets), default=0.0)
        if retry_after > 0:
            if self._telemetry is not None:
                tags = (("priority", request.priority.value), ("reason", "rate"))
                self._telemetry.tally(THROTTLED, tags).add(1, len(keys))
            raise Throttled(
                f"{request.priority.value} notifications to "
                f"{'everyone' if request.recipients.broadcast else 'this recipient'} are over "
                f"{rate.per_second:g}/s (burst {rate.burst:g}); retry in {retry_after:.2f} s",
                retry_after=retry_after,
                field="priority",
            )
        for bucket in buckets:
            bucket.tokens -= 1.0

    def _bucket(self, key: str, priority: Priority, rate: Rate, now: float) -> TokenBucket:
        bucket = self._buckets.get((key, priority))
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._forget(now)
            bucket = self._buckets[(key, priority)] = TokenBucket.full(
                rate.per_second, rate.burst, now
            )
        return bucket

    def _forget(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.is_full_at(now)]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) >= self._max:  # all busy: the oldest go first
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)
