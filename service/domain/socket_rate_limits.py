"""Rate limits on the Socket.IO side: connection attempts and events, per IP
address and per user. Pure: the caller passes the clock.

Publishes are throttled per user and priority
(``service_layer/publish_throttle.py``); these limit what clients do, with
the same token buckets (``token_bucket.py``). A connection attempt costs a
token check and a read of the log, an event a parse and a reply, so a client
looping on either would take CPU from everyone else on the node. The per-IP
check on connect comes first, before the token is verified, so a flood of
forged tokens is refused at the price of a dictionary look-up.

Each limiter keeps one token bucket per key in an LRU of at most
``max_keys``. When a new key needs room, buckets untouched long enough to be
full again are forgotten first (that changes nothing), and only when more
keys than that are busy at once does the least recently used one go, and
come back with a full burst. Buckets are kept until room is needed: dropped
as soon as they were full, the bucket of every client acking a few times a
second was made anew on each ack.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable

from service.domain.token_bucket import Rate, Throttled, TokenBucket, parse_rate

# Defaults, per node (docs/configuration.md): what a real fleet never
# reaches, and a loop on one machine or one token is cut well below the node's
# connect rate (docs/benchmarks.md#connections).
# 1,000 at once: a campus behind one NAT reconnecting after a node restart;
# 50/s sustained is the churn of tens of thousands of browsers.
CONNECT_PER_IP = Rate(per_second=50, burst=1_000)
# A user holds at most MAX_CONNECTIONS_PER_USER (10; 50 at `maximum`), and
# socket.io-client waits 1-5 s between a tab's attempts: 200 at once and 10/s
# is far beyond a real user, and a reconnect loop (each attempt reads the log)
# gets 10/s instead of the node's all.
CONNECT_PER_USER = Rate(per_second=10, burst=200)
# Thousands of users acking behind one address; one machine can send 10^4+/s.
EVENT_PER_IP = Rate(per_second=2_000, burst=10_000)
# A client sends one ack per batch it receives (20/s per tab at `balanced`'s
# 50 ms, more when batches fill): 10 tabs of a busy user stay under 200/s.
# An ack refused is covered by the next one (acks are cumulative).
EVENT_PER_USER = Rate(per_second=200, burst=1_000)
# A connection whose events are refused faster than this is flooding, not
# merely busy: it is closed. A client over its limit by a little (a user with
# many tabs on a fast stream) is refused now and then, far below it.
FLOOD_REFUSALS = Rate(per_second=10, burst=50)
MAX_KEYS = 20_000  # per limiter: ~250 bytes a key with its name, 5 MB at most


class RateLimited(Throttled):
    """Over a Socket.IO rate limit; ``close`` is set when the connection
    should be closed because it keeps on."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, field: str,
                 close: bool = False) -> None:
        super().__init__(message, retry_after=retry_after, field=field)
        self.close = close


class KeyedLimiter:
    """A token bucket per key, in bounded memory."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int,
                 clock: Callable[[], float]) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a limiter needs a positive rate, a burst of 1 or more "
                             "and room for a key")
        self.rate, self.burst, self.max_keys = rate_per_s, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()  # least recent first

    def allow(self, key: str, now: float | None = None) -> float | None:
        """Take a token for ``key``: None if it had one, else the seconds
        until it will. ``now`` saves a clock reading when checking several."""
        now = self._clock() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take_one(now)
        return None if wait == 0.0 else wait

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _make_room(self, now: float) -> None:
        buckets = self._buckets
        if len(buckets) < self.max_keys:
            return
        # The least recently used are the likeliest to be full again: drop
        # those first (amortised: each key is dropped once per insertion).
        while buckets and next(iter(buckets.values())).is_full_at(now):
            buckets.popitem(last=False)
        while len(buckets) >= self.max_keys:  # every key busy: the oldest goes
            buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: str) -> bool:
        return key in self._buckets

    def bucket(self, key: str) -> TokenBucket | None:
        return self._buckets.get(key)


def limiter(rate: Rate | None, max_keys: int, clock: Callable[[], float]) -> KeyedLimiter | None:
    return None if rate is None else KeyedLimiter(rate.per_second, rate.burst, max_keys, clock)


def parse_limit(raw: str) -> Rate | None:
    """``RATE:BURST`` (per second, and most at once); ``0`` or ``off``: no limit."""
    return None if raw.strip() in ("0", "off") else parse_rate(raw)


def address_key(remote_addr: str | None) -> str:
    """The key of a client's address. An IPv6 host usually holds a whole /64,
    so that is the unit; an IPv4-mapped address counts as its IPv4 one."""
    try:
        ip = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return remote_addr or "unknown"  # e.g. a Unix socket: one key for all of them
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


class SocketRateLimits:
    """The four Socket.IO limits, each None when off, and the flood detector."""

    def __init__(self, *, connect_per_ip: Rate | None, connect_per_user: Rate | None,
                 event_per_ip: Rate | None, event_per_user: Rate | None,
                 clock: Callable[[], float], max_keys: int = MAX_KEYS) -> None:
        self.connect_per_ip = limiter(connect_per_ip, max_keys, clock)
        self.connect_per_user = limiter(connect_per_user, max_keys, clock)
        self.event_per_ip = limiter(event_per_ip, max_keys, clock)
        self.event_per_user = limiter(event_per_user, max_keys, clock)
        # per connection: refusals it may still take before it is closed
        self.refusals = KeyedLimiter(FLOOD_REFUSALS.per_second, FLOOD_REFUSALS.burst,
                                     max_keys, clock)
        self._clock = clock

    @property
    def limits_events(self) -> bool:
        return self.event_per_ip is not None or self.event_per_user is not None

    def check_connect_address(self, address: str) -> None:
        """Before the token is verified: RateLimited (``field: ip``) if this
        address tried too often."""
        wait = None if self.connect_per_ip is None else self.connect_per_ip.allow(address)
        if wait is not None:
            raise RateLimited(f"too many connection attempts from this address; retry in "
                              f"{_seconds(wait)} s", retry_after=wait, field="ip")

    def check_connect_user(self, user_id: str) -> None:
        """Once the token verified: RateLimited (``field: user``) if this user
        tried too often."""
        wait = None if self.connect_per_user is None else self.connect_per_user.allow(user_id)
        if wait is not None:
            raise RateLimited(f"too many connection attempts for this user; retry in "
                              f"{_seconds(wait)} s", retry_after=wait, field="user")

    def check_event(self, sid: str, user_id: str, address: str) -> None:
        """RateLimited (``field: event``) if the user's or the address's event
        rate is spent; with ``close`` set once this connection is flooding."""
        now = self._clock()
        wait, whose = None, ""
        if self.event_per_user is not None:
            wait, whose = self.event_per_user.allow(user_id, now), "this user"
        if wait is None and self.event_per_ip is not None:
            wait, whose = self.event_per_ip.allow(address, now), "this address"
        if wait is None:
            return
        flooding = self.refusals.allow(sid, now) is not None
        raise RateLimited(
            f"too many events from {whose}; this one was ignored"
            + ("; closing the connection" if flooding else f"; retry in {_seconds(wait)} s"),
            retry_after=wait, field="event", close=flooding)

    def closed(self, sid: str) -> None:
        """The connection is gone: its refusal count with it."""
        self.refusals.forget(sid)
