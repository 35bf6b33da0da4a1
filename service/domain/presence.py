"""Who is online: per node, and over the cluster. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodePresence:
    node: str
    connections: int
    users: int
    updated_at: float  # unix seconds of the node's last report


@dataclass(frozen=True)
class Presence:
    nodes: tuple[NodePresence, ...]
    users: int  # distinct users over all nodes (a user on two nodes counts once)
    source: str  # "redis": every node's last report; "local": this node alone

    @property
    def connections(self) -> int:
        return sum(n.connections for n in self.nodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "users": self.users,
            "source": self.source,
            "nodes": [{"node": n.node, "connections": n.connections, "users": n.users,
                       "updated_at": n.updated_at} for n in self.nodes],
        }
