"""The cache-ceiling simulation counts hits as a cache would."""

from bench.cache_ceiling import simulate


def test_hits_misses_eviction_and_publish_invalidation():
    warm = [("publish", "a"), ("unread", "a"), ("page", "a"), ("publish", "a")]
    measured = [("unread", "a"), ("page", "a"), ("unread", "b"), ("unread", "b")]
    # the publish dropped a's page; b is new once, then a hit
    assert simulate(warm, measured, 100, per_user=False, patch=False, tinylfu=False) == 0.5
    # patched pages survive the publish
    assert simulate(warm, measured, 100, per_user=False, patch=True, tinylfu=False) == 0.75
    # one entry: b's first lookup evicts a, so nothing of a is left to hit
    assert simulate([("unread", "a")], [("unread", "b"), ("unread", "a")], 1,
                    per_user=False, patch=False, tinylfu=False) == 0.0
    # a page of a user who has no stream is never stored
    assert simulate([("page", "z")], [("page", "z")], 100, per_user=False, patch=False,
                    tinylfu=False) == 0.0
