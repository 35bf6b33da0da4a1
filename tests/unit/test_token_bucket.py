"""Token buckets never exceed their burst, nor their rate over time (hypothesis)."""

import math

from hypothesis import given
from hypothesis import strategies as st

from service.domain.token_bucket import TokenBucket

requests = st.lists(st.tuples(st.floats(0, 2), st.integers(1, 50)), max_size=200)


@given(rate=st.floats(1, 1000), burst=st.integers(1, 1000), requests=requests)
def test_granted_tokens_never_exceed_burst_plus_rate_times_time(rate, burst, requests):
    bucket = TokenBucket.full(rate, burst, now=0.0)
    now, granted = 0.0, []
    for advance, n in requests:
        now += advance
        wait = bucket.take(now, n)
        assert 0 <= bucket.tokens <= burst + 1e-9
        if wait == 0:
            granted.append((now, n))
        else:
            assert wait > 0
    for i, (start, _) in enumerate(granted):  # over every window of grants
        total = 0
        for end, n in granted[i:]:
            total += n
            assert total <= burst + rate * (end - start) + 1e-6


@given(rate=st.floats(1, 1000), burst=st.integers(1, 1000), n=st.integers(1, 1000))
def test_the_wait_it_gives_is_enough(rate, burst, n):
    bucket = TokenBucket.full(rate, burst, now=0.0)
    bucket.take(0.0, burst)  # empty it
    wait = bucket.take(0.0, n)
    if n > burst:
        assert math.isinf(wait)
    else:
        assert bucket.take(wait + 1e-9, n) == 0


def test_a_bucket_left_alone_long_enough_is_full_and_may_be_forgotten():
    bucket = TokenBucket.full(10, 20, now=0.0)
    bucket.take(0.0, 20)
    assert not bucket.is_full_at(1.0)
    assert bucket.is_full_at(2.0)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def request(**target):
    from service.domain.model import PublishRequest

    return PublishRequest.from_body({"category": "c", "priority": "low", **target})


def test_a_user_flood_is_refused_past_the_burst_and_let_in_at_the_rate():
    import pytest

    from service.domain.model import Priority
    from service.domain.token_bucket import Rate, Throttled
    from service.service_layer.publish_throttle import PublishThrottle

    clock = Clock()
    throttle = PublishThrottle({Priority.LOW: Rate(per_second=10, burst=3)}, clock=clock)
    for _ in range(3):
        throttle.admit(request(user_id="ann"))
    with pytest.raises(Throttled) as caught:
        throttle.admit(request(user_id="ann"))
    assert abs(caught.value.retry_after - 0.1) < 1e-9 and caught.value.field == "priority"
    throttle.admit(request(user_id="ben"))  # another user has a bucket of their own
    clock.now += caught.value.retry_after + 1e-9
    throttle.admit(request(user_id="ann"))  # one token came back, when it said


def test_a_multi_user_publish_is_all_or_nothing():
    import pytest

    from service.domain.model import Priority
    from service.domain.token_bucket import Rate, Throttled
    from service.service_layer.publish_throttle import PublishThrottle

    throttle = PublishThrottle({Priority.LOW: Rate(per_second=1, burst=1)}, clock=Clock())
    throttle.admit(request(user_id="ann"))
    with pytest.raises(Throttled):
        throttle.admit(request(user_ids=["ben", "ann"]))
    throttle.admit(request(user_id="ben"))  # ben's token was not taken by the refusal


def test_critical_is_never_throttled_and_buckets_stay_bounded():
    from service.domain.model import Priority, PublishRequest
    from service.domain.token_bucket import Rate
    from service.service_layer.publish_throttle import PublishThrottle

    clock = Clock()
    throttle = PublishThrottle({Priority.LOW: Rate(1, 1), Priority.CRITICAL: None},
                               max_buckets=10, clock=clock)
    for _ in range(100):
        throttle.admit(PublishRequest.from_body(
            {"user_id": "ann", "category": "c", "priority": "critical"}))
    for i in range(50):
        throttle.admit(request(user_id=f"u{i}"))
    assert len(throttle) <= 10
