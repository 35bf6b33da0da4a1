"""The TTL + LRU cache: bounds, expiry, compression, statistics, groups."""

from __future__ import annotations

import pickle

from service.domain.cache import TtlLruCache, split_bounds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs) -> tuple[TtlLruCache, Clock]:
    clock = Clock()
    options = {"max_entries": 3, "max_bytes": 1 << 20, "ttl_s": 60.0, "clock": clock}
    return TtlLruCache(**{**options, **kwargs}), clock


def test_the_least_recently_used_goes_first():
    cache, _ = make()
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # now b is the least recent
    cache.put("d", "D")
    assert "b" not in cache and all(k in cache for k in "acd")
    assert cache.stats.evictions_lru == 1
    assert cache.stats.evictions_ttl == cache.stats.evictions_bytes == 0


def test_entries_expire_after_the_ttl_by_the_injected_clock():
    cache, clock = make()
    cache.put("a", 1)
    clock.now += 59.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    assert cache.stats.evictions_ttl == 1 and cache.stats.misses == 1
    cache.put("b", 2)
    clock.now += 30
    cache.put("c", 3)
    clock.now += 30  # b has expired, c has not
    assert cache.purge_expired() == 1
    assert "c" in cache and len(cache) == 1


def test_expired_entries_make_room_before_live_ones_are_evicted():
    cache, clock = make(max_entries=2)
    cache.put("old", 1)
    clock.now += 50
    cache.put("new", 2)
    clock.now += 20  # old expired
    cache.put("newer", 3)
    assert "new" in cache and "newer" in cache
    assert cache.stats.evictions_ttl == 1 and cache.stats.evictions_lru == 0


def test_the_byte_bound_counts_the_encoded_values():
    one = len(pickle.dumps("x" * 100))
    cache, _ = make(max_entries=100, max_bytes=one * 3)
    for key in "abc":
        cache.put(key, "x" * 100)
    assert cache.bytes == one * 3
    cache.put("d", "x" * 100)
    assert "a" not in cache and cache.bytes == one * 3
    assert cache.stats.evictions_bytes == 1
    assert cache.put("huge", "y" * one * 4) is False  # alone over the bound: not stored
    assert "huge" not in cache and len(cache) == 3


def test_large_values_are_stored_compressed_and_come_back_whole():
    value = {"page": [f"the same words again {i} " * 20 for i in range(50)]}
    plain, _ = make()
    packed, _ = make(compress_min_bytes=1024)
    plain.put("k", value)
    packed.put("k", value)
    assert packed.bytes < plain.bytes / 5
    assert packed.get("k") == value
    packed.put("small", [1, 2, 3])  # under the threshold: stored as is
    assert packed.get("small") == [1, 2, 3]


def test_a_hit_is_a_copy():
    cache, _ = make()
    cache.put("k", [1, 2])
    cache.get("k").append(3)
    assert cache.get("k") == [1, 2]


def test_statistics_count_every_outcome():
    cache, _ = make()
    cache.put("a", 1, group="u1")
    cache.put("b", 2, group="u1")
    assert cache.get("a") == 1 and cache.get("zz") is None and cache.get("b") == 2
    assert cache.invalidate("a") and not cache.invalidate("a")
    snap = cache.snapshot()
    assert (snap.hits, snap.misses, snap.invalidations, snap.entries) == (2, 1, 1, 1)
    assert cache.peek("b") == 2 and cache.snapshot().hits == 2  # peek counts nothing


def test_a_group_is_invalidated_through_its_index():
    cache, _ = make(max_entries=10)
    for i in range(3):
        cache.put(("page", "u1", i), i, group="u1")
        cache.put(("page", "u2", i), i, group="u2")
    assert cache.invalidate_group("u1") == 3
    assert cache.group_keys("u1") == () and len(cache.group_keys("u2")) == 3
    assert all(("page", "u2", i) in cache for i in range(3))
    assert cache.stats.invalidations == 3
    cache.invalidate(("page", "u2", 0))
    cache.put(("page", "u2", 1), 9, group="u2")  # replaced: still one key
    assert sorted(cache.group_keys("u2")) == [("page", "u2", 1), ("page", "u2", 2)]
    assert cache.invalidate_group("nobody") == 0


def test_resizing_evicts_down_to_the_new_bounds():
    cache, clock = make(max_entries=10)
    for i in range(10):
        cache.put(i, i)
    cache.resize(max_entries=4)
    assert len(cache) == 4 and all(i in cache for i in range(6, 10))
    clock.now += 30
    cache.resize(ttl_s=10)
    assert len(cache) == 0 and cache.stats.evictions_ttl == 4


def test_the_levels_split_the_bounds():
    bounds = split_bounds(5_000, 64 << 20)
    assert bounds["user"] == (5_000, (64 << 20) * 7 // 8)
    assert bounds["global"] == (500, 8 << 20)
    assert split_bounds(0, 0)["global"] == (0, 0)
