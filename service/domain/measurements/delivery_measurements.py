"""Delivery: what became of each new stream entry (dispatch), what reached
connections, acknowledgements, drops and reloads, the offline queue's bounds,
backpressure and send queues, and the node's books of its entries."""

from __future__ import annotations

from service.domain.measurements.measurement import FLOAT, INT, Field, Measurement

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(
        name="notify_dispatch",
        description=(
            "What became of each new stream entry when it was handed to live "
            "delivery on this node: `live` (sent at once to a connection of its "
            "user), `queued` (left in the offline queue: the user has no ready "
            "connection here, it is replayed on reconnect), `deferred` (held back by "
            "backpressure: the user's connections get it from the log once the node "
            "has caught up) or `dropped` (the hand-off "
            "failed; the entry stays in the log). Per node, the sum of `count` over "
            "these outcomes equals `notify_publish` `count`. With several nodes, an "
            "entry committed on another node and sent here to connections of its "
            "users counts as `relayed` (users, once each), and nothing else: its "
            "own node accounted for it."
        ),
        emitted_by="service_layer.fan_out.FanOutInTurn, service_layer.hand_off.HandOff",
        tags=("outcome",),
        tag_values={"outcome": ("live", "queued", "deferred", "dropped", "relayed")},
        field_specs={
            "count": Field(INT, "sum"),
        },
        kind="summary",
        example_query=(
            'SELECT sum("count") FROM "notify_dispatch" WHERE $timeFilter '
            'GROUP BY time($__interval), "outcome"'
        ),
    ),
    Measurement(
        name="notify_delivery",
        description=(
            "Notifications sent to connections: `count` notifications in "
            "`batches` batches (one batch is one `notifications` event to one "
            "connection) of `bytes` JSON, `wire_bytes` as sent (smaller where a "
            "large batch went compressed to a client that asked for it), and the "
            "publish-to-send latency over "
            "the interval (p50, p95, p99 within 2 %, and max); `wait_ms` is how long "
            "live entries waited in their connection's batch. `mode` is `live`, or "
            "`replay` (read back from the log: offline queue, reconnect, or a gap). "
            "`trigger` says why a batch went out: `size` (it was full), `timeout` "
            "(its deadline came), `immediate` (a `critical` entry waits for "
            "nothing), `catch_up` (what waited, flushed ahead of a replay) or "
            "`replay` (a page read back from the log). "
            "Counts and maxima are exact. Percentiles use every batch until 1,024 "
            "entries in an interval, then a random half, quarter... of the batches, "
            "weighted, so their cost stays flat at any rate (a few % of sampling error). "
            "A batch of broadcasts shared by the connections in step is measured once "
            "for all of them: its latencies as of its first send and its last, half "
            "the connections each."
        ),
        emitted_by="service_layer.outbox.Outbox",
        tags=("mode", "trigger"),
        tag_values={"mode": ("live", "replay"),
                    "trigger": ("size", "timeout", "immediate", "catch_up", "replay")},
        field_specs={
            "count": Field(INT, "sum"),
            "batches": Field(INT, "sum"),
            "bytes": Field(INT, "sum"),
            "wire_bytes": Field(INT, "sum"),
            "latency_ms_p50": Field(FLOAT, "p50"),
            "latency_ms_p95": Field(FLOAT, "p95"),
            "latency_ms_p99": Field(FLOAT, "p99"),
            "latency_ms_max": Field(FLOAT, "max"),
            "wait_ms_p50": Field(FLOAT, "p50"),
            "wait_ms_p95": Field(FLOAT, "p95"),
            "wait_ms_p99": Field(FLOAT, "p99"),
            "wait_ms_max": Field(FLOAT, "max"),
        },
        kind="summary",
        # a replayed batch never waited in a connection's batch queue
        optional_fields=("wait_ms_p50", "wait_ms_p95", "wait_ms_p99", "wait_ms_max"),
        example_query=(
            'SELECT sum("count") FROM "notify_delivery" WHERE $timeFilter '
            'GROUP BY time($__interval), "mode"'
        ),
    ),
    Measurement(
        name="notify_ack",
        description=(
            "Acknowledgements from clients: `acks` events, covering `count` "
            "stream entries not acknowledged before. A read mark over HTTP "
            "(`POST /api/v1/users/<id>/read`) is one too."
        ),
        emitted_by="service_layer.acks.AckBuffer, service_layer.user_history.History",
        tags=(),
        field_specs={
            "count": Field(INT, "sum"),
            "acks": Field(INT, "sum"),
        },
        kind="summary",
        example_query=(
            'SELECT sum("count") FROM "notify_ack" WHERE $timeFilter GROUP BY time($__interval)'
        ),
    ),
    Measurement(
        name="notify_drop",
        description=(
            "Notifications not delivered live, with the reason: `handoff_error`, "
            "`slow_consumer` (the client was closed for reading too slowly), "
            "`disconnected` (it left with a batch still waiting). They stay in the "
            "log, and a reconnect replays them. Per node, dispatched `live` = "
            "delivered `live` + dropped `slow_consumer` + `disconnected`."
        ),
        emitted_by=("service_layer.delivery.DeliveryHub, service_layer.hand_off.HandOff, "
                    "service_layer.outbox.Outbox"),
        tags=("reason",),
        tag_values={"reason": ("handoff_error", "slow_consumer", "disconnected")},
        field_specs={
            "count": Field(INT, "sum"),
        },
        kind="summary",
        example_query=(
            'SELECT sum("count") FROM "notify_drop" WHERE $timeFilter '
            'GROUP BY time($__interval), "reason"'
        ),
    ),
    Measurement(
        name="notify_offline_trim",
        description=(
            "One run of the offline-queue bounds (`OFFLINE_QUEUE_MAX` entries and "
            "`OFFLINE_QUEUE_MAX_AGE` per user, oldest first): `streams` trimmed, "
            "`entries` removed, of which `unacked` the users had not acknowledged "
            "(each such stream's epoch moved on: `epochs_bumped`), message bodies "
            "no longer referred to (`messages`), and the run's `duration_ms`. "
            "What is enqueued and replayed is in `notify_dispatch` "
            "(`outcome=queued`) and `notify_delivery` (`mode=replay`)."
        ),
        emitted_by="service_layer.offline.trim_offline_queues",
        tags=(),
        field_specs={
            "streams": Field(INT),
            "entries": Field(INT),
            "unacked": Field(INT),
            "messages": Field(INT),
            "epochs_bumped": Field(INT),
            "duration_ms": Field(FLOAT),
        },
        example_query=(
            'SELECT sum("unacked") FROM "notify_offline_trim" WHERE $timeFilter '
            "GROUP BY time($__interval)"
        ),
    ),
    Measurement(
        name="notify_reload",
        description=(
            "Clients told to `reload` because entries they had not received were "
            "trimmed: `count` clients."
        ),
        emitted_by="service_layer.outbox.Outbox",
        tags=(),
        field_specs={
            "count": Field(INT, "sum"),
        },
        kind="summary",
        example_query=(
            'SELECT sum("count") FROM "notify_reload" WHERE $timeFilter '
            "GROUP BY time($__interval)"
        ),
    ),
    Measurement(
        name="notify_backpressure",
        description=(
            "The node started (`event=engaged`) or stopped (`released`) pushing "
            "back: bytes queued for clients over all connections against the "
            "high-water mark, or memory (`rss_bytes`) against the level's "
            "`memory_budget_bytes`. On release, `refused` publishes and `deferred` "
            "entries during the episode. See docs/operations.md."
        ),
        emitted_by="service_layer.backpressure.Backpressure",
        tags=("event",),
        tag_values={"event": ("engaged", "released")},
        field_specs={
            "queued_bytes": Field(INT),
            "rss_bytes": Field(INT),
            "memory_budget_bytes": Field(INT),
            "refused": Field(INT),
            "deferred": Field(INT),
        },
        example_query=(
            'SELECT "queued_bytes", "rss_bytes" FROM "notify_backpressure" '
            "WHERE $timeFilter"
        ),
    ),
    Measurement(
        name="notify_queues",
        description=(
            "Send-queue depth, sampled twice a second: the most bytes waiting for "
            "clients over all connections (`queued_bytes_max`) and the most "
            "connections with anything waiting (`backlogged_connections_max`), per "
            "interval, over `samples` samples."
        ),
        emitted_by="service_layer.backpressure.Backpressure",
        tags=(),
        field_specs={
            "samples": Field(INT, "sum"),
            "queued_bytes_max": Field(INT, "max"),
            "backlogged_connections_max": Field(INT, "max"),
        },
        kind="summary",
        example_query=(
            'SELECT max("queued_bytes_max") FROM "notify_queues" WHERE $timeFilter '
            "GROUP BY time($__interval)"
        ),
    ),
    Measurement(
        name="notify_books",
        description=(
            "The node's books of the stream entries committed on it, cumulative since "
            "the process started, every 10 s, read in one step (no other work runs "
            "between the figures): `published` (entries committed here, one per "
            "recipient, as `notify_publish` `count`), their dispatch outcomes `live`, "
            "`queued`, `deferred` and `dropped` (as `notify_dispatch`), `pending` "
            "(committed, no outcome yet: waiting for the hand-off to delivery, or "
            "held back in offset order) and `unaccounted` = published - live - "
            "queued - deferred - dropped - pending, which must be 0: more is an "
            "entry whose outcome was lost, less one counted twice. Entries committed "
            "on other nodes are in their books (here they count as `relayed` in "
            "`notify_dispatch`). Per interval: "
            "`non_negative_difference(last(\"published\"))`."
        ),
        emitted_by="service_layer.books.Books",
        tags=(),
        field_specs={
            "published": Field(INT, "last"),
            "live": Field(INT, "last"),
            "queued": Field(INT, "last"),
            "deferred": Field(INT, "last"),
            "dropped": Field(INT, "last"),
            "pending": Field(INT, "last"),
            "unaccounted": Field(INT, "last"),
        },
        example_query=(
            'SELECT last("unaccounted") FROM "raw"."notify_books" WHERE $timeFilter '
            'GROUP BY time($__interval), "node"'
        ),
    ),
)
