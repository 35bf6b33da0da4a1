"""Connections: Socket.IO connections opened, closed and refused, ping/pong
health, and presence and the relay between the nodes of a cluster."""

from __future__ import annotations

from service.domain.measurements.measurement import INT, Field, Measurement

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(
        name="cluster",
        description=(
            "Presence and the relay between nodes, every `PRESENCE_INTERVAL` "
            "(5 s), from each node of a cluster (`REDIS_URL` set): this node's "
            "`connections` and `users`; the cluster as Redis shows it "
            "(`cluster_nodes`, `cluster_connections`, and `cluster_users`, where a "
            "user on two nodes counts once), which every node reports alike; "
            "`redis_up` (1 or 0); and the entries this node announced "
            "(`relay_sent`), left to the log follower (`relay_unsent`: Redis was "
            "down) and received (`relay_received`), as counters since start."
        ),
        emitted_by="service_layer.cluster.run_presence",
        tags=(),
        field_specs={
            "connections": Field(INT),
            "users": Field(INT),
            "cluster_nodes": Field(INT),
            "cluster_connections": Field(INT),
            "cluster_users": Field(INT),
            "redis_up": Field(INT),
            "relay_sent": Field(INT),
            "relay_unsent": Field(INT),
            "relay_received": Field(INT),
        },
        # what Redis says of the cluster: absent while it cannot be read
        optional_fields=("cluster_nodes", "cluster_connections", "cluster_users"),
        example_query=(
            'SELECT last("cluster_users") FROM "cluster" WHERE $timeFilter '
            'GROUP BY time($__interval)'
        ),
    ),
    Measurement(
        name="notify_connection",
        description=(
            "Socket.IO connections opened, closed and refused, with the reason; "
            "`active` is the node's connection count just after the event. "
            "`rate_limited`: refused for too many connection attempts from the "
            "address or the user, or closed for flooding events."
        ),
        emitted_by="entrypoints.sockets",
        tags=("event", "reason"),
        tag_values={
            "event": ("opened", "closed", "refused"),
            "reason": (
                "ok",
                "client_disconnect",
                "server_disconnect",
                "ping_timeout",
                "transport_close",
                "transport_error",
                "idle",
                "slow_consumer",
                "other",
                "unauthorized",
                "invalid_input",
                "offset_out_of_range",
                "connection_limit",
                "storage_unavailable",
                "rate_limited",
                "internal_error",
            ),
        },
        field_specs={
            "count": Field(INT, "sum"),
            "active": Field(INT, "max"),
        },
        example_query=(
            'SELECT last("active") FROM "notify_connection" WHERE $timeFilter '
            'GROUP BY time($__interval), "node"'
        ),
    ),
    Measurement(
        name="notify_ping",
        description=(
            "Engine.IO ping/pong health, sampled every 10 s: connections, those "
            "waiting for a pong, and those waiting longer than half the pong "
            "timeout. Connections closed for a missed pong appear in "
            "`notify_connection` with reason `ping_timeout`."
        ),
        emitted_by="adapters.runtime_metrics.RuntimeSampler",
        tags=(),
        field_specs={
            "connections": Field(INT, "mean"),
            "awaiting_pong": Field(INT, "mean"),
            "late_pong": Field(INT, "max"),
        },
        example_query=(
            'SELECT max("late_pong") FROM "notify_ping" WHERE $timeFilter '
            'GROUP BY time($__interval), "node"'
        ),
    ),
)
