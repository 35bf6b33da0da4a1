"""Connection limits follow the memory a connection costs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.capacity import (
    NODE_BASE_BYTES,
    connection_limit,
    connections_that_fit,
    send_queue_room,
)
from service.domain.levels import LEVELS

KIB, MIB = 1024, 1 << 20
PLANNED, UPSTREAM = 27 * KIB, 46 * KIB  # the figures of service.adapters.patches


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_at_the_planned_figure_every_level_keeps_its_limit(name):
    level = LEVELS[name]
    budget = level.memory_budget_mb * MIB
    assert send_queue_room(budget, level.max_connections, connection_bytes=PLANNED) > 0
    assert connection_limit(level.max_connections, budget, connection_bytes=PLANNED,
                            planned_connection_bytes=PLANNED) == level.max_connections


def test_balanced_at_the_upstream_figure_would_exceed_its_budget_and_is_cut_to_fit():
    level = LEVELS["balanced"]
    budget = level.memory_budget_mb * MIB
    assert send_queue_room(budget, level.max_connections, connection_bytes=UPSTREAM) < 0
    limit = connection_limit(level.max_connections, budget, connection_bytes=UPSTREAM,
                             planned_connection_bytes=PLANNED)
    assert limit == 8_804
    room = send_queue_room(budget, level.max_connections, connection_bytes=PLANNED)
    assert send_queue_room(budget, limit, connection_bytes=UPSTREAM) >= room  # same room left
    assert send_queue_room(budget, limit + 1, connection_bytes=UPSTREAM) < room


@given(limit=st.integers(0, 200_000), budget_mb=st.integers(1, 8192),
       planned=st.integers(1, 100 * KIB), actual=st.integers(1, 100 * KIB))
def test_the_limit_never_grows_and_leaves_send_queues_their_room(limit, budget_mb, planned,
                                                                    actual):
    budget = budget_mb * MIB
    got = connection_limit(limit, budget, connection_bytes=actual,
                           planned_connection_bytes=planned)
    assert 0 <= got <= limit
    room = send_queue_room(budget, limit, connection_bytes=planned)
    if got < limit:  # cut: as many as fit beside that room, and no more
        assert send_queue_room(budget, got, connection_bytes=actual) >= room
        assert send_queue_room(budget, got + 1, connection_bytes=actual) < room
    if actual <= planned:
        assert got == limit


def test_what_fits_beside_the_base_and_the_room():
    assert connections_that_fit(NODE_BASE_BYTES + 10 * KIB + 5 * KIB, connection_bytes=KIB,
                                room_bytes=5 * KIB) == 10
    assert connections_that_fit(NODE_BASE_BYTES, connection_bytes=KIB, room_bytes=KIB) == 0
    with pytest.raises(ValueError):
        connections_that_fit(MIB, connection_bytes=0, room_bytes=0)
