"""The batcher never loses or reorders a user's notifications (hypothesis)."""

from hypothesis import given
from hypothesis import strategies as st

from service.domain.batching import BatchPolicy, BatchQueue
from service.domain.model import Priority

priorities = st.sampled_from(list(Priority))
steps = st.lists(
    st.tuples(st.lists(priorities, max_size=8), st.floats(min_value=0, max_value=0.3)),
    max_size=40,
)


@given(steps=steps, max_size=st.integers(1, 20), max_wait=st.floats(0.001, 0.2))
def test_batches_are_the_queue_in_order_with_nothing_lost(steps, max_size, max_wait):
    queue: BatchQueue[int] = BatchQueue(BatchPolicy(max_size=max_size, max_wait_s=max_wait))
    now, next_id, sent = 0.0, 0, []
    for priorities_added, advance in steps:
        entries = []
        for p in priorities_added:
            entries.append((next_id, p))
            next_id += 1
        for batch in queue.add(entries, now):
            assert 0 < len(batch) <= max_size
            sent.extend(e for e, _ in batch)
        now += advance
        for batch in queue.due(now):
            assert 0 < len(batch) <= max_size
            sent.extend(e for e, _ in batch)
            # nothing waited longer than its priority allows, beyond one step
            assert all(now - queued <= max_wait * 2 + advance + 1e-9 for _, queued in batch)
    for batch in queue.take_all():
        sent.extend(e for e, _ in batch)
    assert sent == list(range(next_id))


def test_critical_goes_at_once_with_what_was_before_it():
    queue: BatchQueue[str] = BatchQueue(BatchPolicy(max_size=10, max_wait_s=0.05))
    assert queue.add([("a", Priority.LOW), ("b", Priority.NORMAL)], now=0.0) == []
    [batch] = queue.add([("c", Priority.CRITICAL)], now=0.01)
    assert [e for e, _ in batch] == ["a", "b", "c"]


def test_the_most_urgent_entry_sets_the_deadline():
    queue: BatchQueue[str] = BatchQueue(BatchPolicy(max_size=10, max_wait_s=0.1))
    queue.add([("low", Priority.LOW)], now=0.0)
    assert queue.deadline == 0.2
    queue.add([("high", Priority.HIGH)], now=0.01)
    assert queue.deadline == 0.01 + 0.025
    assert queue.due(0.03) == []
    assert [e for e, _ in queue.due(0.04)[0]] == ["low", "high"]


def test_the_size_trigger_fires_at_max_size():
    queue: BatchQueue[int] = BatchQueue(BatchPolicy(max_size=3, max_wait_s=1))
    out = queue.add([(i, Priority.NORMAL) for i in range(7)], now=0.0)
    assert [[e for e, _ in b] for b in out] == [[0, 1, 2], [3, 4, 5]]
    assert [e for e, _ in queue.items] == [6]
