"""How many connections a node's memory budget holds.

A level's connection limit was set from one memory figure per idle
connection, over a base (the node's RSS with no connection), and leaves the
rest of the budget to send queues (docs/configuration.md; the figures are in
docs/library-patches.md, "Memory per connection"). When a connection costs
more than that figure (a library patch left out), the limit must shrink so
that the connections and the room left for send queues still fit.
"""

from __future__ import annotations

# RSS of a node with no connection (docs/library-patches.md, "Memory per connection")
NODE_BASE_BYTES = 72 << 20


def send_queue_room(budget_bytes: int, connections: int, *, connection_bytes: int,
                    base_bytes: int = NODE_BASE_BYTES) -> int:
    """What the budget leaves for send queues once ``connections`` idle
    connections and the base are in (negative: they do not fit)."""
    return budget_bytes - base_bytes - connections * connection_bytes


def connections_that_fit(budget_bytes: int, *, connection_bytes: int, room_bytes: int,
                         base_bytes: int = NODE_BASE_BYTES) -> int:
    """How many idle connections fit the budget beside the base and
    ``room_bytes`` kept for send queues."""
    if connection_bytes <= 0:
        raise ValueError("a connection costs some memory")
    return max(0, (budget_bytes - base_bytes - room_bytes) // connection_bytes)


def connection_limit(level_limit: int, budget_bytes: int, *, connection_bytes: int,
                     planned_connection_bytes: int, base_bytes: int = NODE_BASE_BYTES) -> int:
    """The level's limit, or fewer if connections cost ``connection_bytes``
    rather than the ``planned_connection_bytes`` the limit was set from:
    as many as fit while leaving send queues the room the level leaves them.
    At the planned figure, the level's limit itself."""
    room = send_queue_room(budget_bytes, level_limit, connection_bytes=planned_connection_bytes,
                           base_bytes=base_bytes)
    fit = connections_that_fit(budget_bytes, connection_bytes=connection_bytes,
                               room_bytes=room, base_bytes=base_bytes)
    return min(level_limit, fit)
