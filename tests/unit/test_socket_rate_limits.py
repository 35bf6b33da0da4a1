"""The Socket.IO rate limits: per key, never more than the burst plus the
rate over time, in bounded memory (hypothesis); and what they refuse."""

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.config import ConfigError, Settings
from service.domain.socket_rate_limits import (
    FLOOD_REFUSALS,
    KeyedLimiter,
    RateLimited,
    SocketRateLimits,
    address_key,
    parse_limit,
)
from service.domain.token_bucket import Rate, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# (seconds to advance, key): a few keys, so that buckets are shared and drained
calls = st.lists(st.tuples(st.floats(0, 0.5), st.integers(0, 5)), max_size=300)


@given(rate=st.floats(0.1, 100), burst=st.integers(1, 20), calls=calls)
def test_a_key_never_gets_more_than_burst_plus_rate_times_elapsed(rate, burst, calls):
    # room for every key: forgetting only full buckets must never hand out more
    clock = Clock()
    limiter = KeyedLimiter(rate, burst, max_keys=6, clock=clock)
    allowed: dict[int, list[float]] = defaultdict(list)
    for advance, key in calls:
        clock.now += advance
        wait = limiter.allow(str(key))
        if wait is None:
            allowed[key].append(clock.now)
        else:
            assert wait > 0
    for times in allowed.values():
        for i, start in enumerate(times):  # over every window of allowances
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + rate * (times[j] - start) + 1e-6


@given(rate=st.floats(0.1, 100), burst=st.integers(1, 20),
       steps=st.lists(st.floats(-0.1, 0.5), max_size=100))
def test_take_one_is_take_of_one(rate, burst, steps):
    # the limiters' fast path must agree with the bucket the publish throttle uses
    one, general = TokenBucket.full(rate, burst, 0.0), TokenBucket.full(rate, burst, 0.0)
    now = 0.0
    for step in steps:  # a step back: a clock that is not monotonic refills nothing
        now += step
        assert one.take_one(now) == pytest.approx(general.take(now, 1.0))
        assert (one.tokens, one.updated) == pytest.approx((general.tokens, general.updated))


@given(max_keys=st.integers(1, 10), calls=st.lists(
    st.tuples(st.floats(0, 2), st.integers(0, 1000)), max_size=300))
def test_key_memory_stays_bounded(max_keys, calls):
    clock = Clock()
    limiter = KeyedLimiter(5, 10, max_keys=max_keys, clock=clock)
    for advance, key in calls:
        clock.now += advance
        limiter.allow(str(key))
        assert len(limiter) <= max_keys


def test_a_refused_key_is_told_how_long_to_wait_and_that_is_enough():
    clock = Clock()
    limiter = KeyedLimiter(2, 3, max_keys=10, clock=clock)
    assert [limiter.allow("a") for _ in range(3)] == [None] * 3
    wait = limiter.allow("a")
    assert wait == pytest.approx(0.5)
    assert limiter.allow("b") is None  # other keys are not affected
    clock.now += wait
    assert limiter.allow("a") is None


def test_idle_keys_are_forgotten_when_room_is_needed_and_the_busy_one_kept():
    clock = Clock()
    limiter = KeyedLimiter(1, 2, max_keys=3, clock=clock)
    limiter.allow("idle")
    clock.now += 10  # "idle" is full again: forgetting it loses nothing
    limiter.allow("busy")
    limiter.allow("busy")
    limiter.allow("new")
    assert len(limiter) == 3  # kept while there is room
    limiter.allow("x")  # no room: the full one goes, not a busy one
    assert len(limiter) == 3
    assert "idle" not in limiter and "new" in limiter
    assert limiter.allow("busy") is not None  # still remembered as spent


def test_a_key_that_keeps_coming_back_keeps_its_bucket():
    clock = Clock()
    limiter = KeyedLimiter(1000, 1000, max_keys=10, clock=clock)
    limiter.allow("a")
    bucket = limiter.bucket("a")
    for key in "bcdef":
        clock.now += 1.0  # every bucket full again by now
        limiter.allow(key)
        limiter.allow("a")
    assert limiter.bucket("a") is bucket  # not made anew on each event


def test_idle_keys_are_forgotten_before_a_busy_one_is_evicted():
    clock = Clock()
    limiter = KeyedLimiter(1, 2, max_keys=3, clock=clock)
    limiter.allow("idle")
    clock.now += 10
    limiter.allow("busy")
    limiter.allow("busy")
    limiter.allow("new")
    limiter.allow("x")
    assert limiter.allow("busy") is not None  # spent, and now the most recently used
    limiter.allow("y")  # over max_keys: the least recently used ("new") goes
    assert len(limiter) == 3
    assert limiter.allow("busy") is not None  # still remembered as spent
    assert limiter.allow("new") is None  # back with a full burst


def limits(clock, **rates):
    off = dict(connect_per_ip=None, connect_per_user=None, event_per_ip=None,
               event_per_user=None)
    return SocketRateLimits(**{**off, **rates}, clock=clock)


def test_connection_attempts_are_refused_per_address_with_a_reason():
    clock = Clock()
    socket_limits = limits(clock, connect_per_ip=Rate(1, 2))
    socket_limits.check_connect_address("10.0.0.1")
    socket_limits.check_connect_address("10.0.0.1")
    with pytest.raises(RateLimited) as caught:
        socket_limits.check_connect_address("10.0.0.1")
    assert caught.value.to_dict() == {
        "error": "rate_limited", "field": "ip",
        "detail": "too many connection attempts from this address; retry in 1 s"}
    socket_limits.check_connect_address("10.0.0.2")
    socket_limits.check_connect_user("alice")  # per user: off


def test_connection_attempts_are_refused_per_user():
    clock = Clock()
    socket_limits = limits(clock, connect_per_user=Rate(0.1, 1))
    socket_limits.check_connect_user("alice")
    with pytest.raises(RateLimited) as caught:
        socket_limits.check_connect_user("alice")
    assert caught.value.field == "user" and "retry in 10 s" in caught.value.message
    socket_limits.check_connect_user("bob")


def test_events_over_the_limit_are_refused_and_a_flood_closes_its_connection():
    clock = Clock()
    socket_limits = limits(clock, event_per_user=Rate(10, 5), event_per_ip=Rate(1000, 1000))
    for _ in range(5):
        socket_limits.check_event("s1", "alice", "10.0.0.1")
    refusals = 0
    while True:
        with pytest.raises(RateLimited) as caught:
            socket_limits.check_event("s1", "alice", "10.0.0.1")
        refusals += 1
        assert caught.value.field == "event"
        if caught.value.close:
            break
    assert refusals == FLOOD_REFUSALS.burst + 1
    assert "closing the connection" in caught.value.message
    socket_limits.check_event("s2", "bob", "10.0.0.1")  # others go on
    socket_limits.closed("s1")
    assert len(socket_limits.refusals) == 0


def test_a_client_a_little_over_its_limit_is_refused_now_and_then_but_not_closed():
    clock = Clock()
    socket_limits = limits(clock, event_per_user=Rate(10, 10))
    refused = 0
    for _ in range(2_000):  # 20 events a second against 10: half refused, for 100 s
        clock.now += 0.05
        try:
            socket_limits.check_event("s1", "alice", "10.0.0.1")
        except RateLimited as exc:
            assert not exc.close
            refused += 1
    assert 900 <= refused <= 1100


def test_the_address_limit_applies_when_the_user_limit_lets_through():
    clock = Clock()
    socket_limits = limits(clock, event_per_user=Rate(100, 100), event_per_ip=Rate(1, 2))
    socket_limits.check_event("a", "alice", "10.0.0.1")
    socket_limits.check_event("b", "bob", "10.0.0.1")
    with pytest.raises(RateLimited) as caught:
        socket_limits.check_event("c", "carol", "10.0.0.1")
    assert "this address" in caught.value.message
    socket_limits.check_event("d", "dave", "10.0.0.2")


@pytest.mark.parametrize(("remote", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    (None, "unknown"),
    ("", "unknown"),
])
def test_addresses_are_keyed_by_host_or_ipv6_slash_64(remote, key):
    assert address_key(remote) == key


@pytest.mark.parametrize(("raw", "rate"), [("0", None), ("off", None), ("50:1000", Rate(50, 1000)),
                                           (" 0.5:3 ", Rate(0.5, 3))])
def test_limits_are_rate_colon_burst_or_zero(raw, rate):
    assert parse_limit(raw) == rate


@pytest.mark.parametrize("name", ["CONNECT_RATE_PER_IP", "CONNECT_RATE_PER_USER",
                                  "EVENT_RATE_PER_IP", "EVENT_RATE_PER_USER"])
@pytest.mark.parametrize("raw", ["50", "50/100", "-1:10", "5:0", "nan:5", "1:2:3", "fast"])
def test_a_bad_limit_setting_is_named(tmp_path, name, raw):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"VAR_DIR": str(tmp_path), name: raw})
    assert name in str(caught.value)


def test_limit_settings_have_defaults_and_zero_turns_one_off(tmp_path):
    settings = Settings.from_env({"VAR_DIR": str(tmp_path), "EVENT_RATE_PER_IP": "0",
                                  "CONNECT_RATE_PER_USER": "1:5"})
    assert settings.event_rate_per_ip is None
    assert settings.connect_rate_per_user == Rate(1, 5)
    assert settings.connect_rate_per_ip == Rate(50, 1000)
    assert settings.event_rate_per_user == Rate(200, 1000)
