"""Publishing and unread counts (the publish token), and the routes that take
no token: /healthz, /openapi.json and the Grafana redirect. Pure data."""

from __future__ import annotations

from typing import Any

from service.domain.model import MAX_RECIPIENTS, Priority
from service.entrypoints.api_spec.common import PUBLIC, PUBLISH, answer, body, errors, ref

USER_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.@:+-]{1,128}$",
           "minLength": 1, "maxLength": 128,
           "description": "1–128 characters of letters, digits and `_.@:+-`"}

PUBLISH_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": "Give exactly one of `user_id`, `user_ids` and `broadcast`. Other fields "
                   "are refused (422 naming the first unknown one).",
    "additionalProperties": False,
    "required": ["category"],
    "oneOf": [{"required": ["user_id"]}, {"required": ["user_ids"]},
              {"required": ["broadcast"]}],
    "properties": {
        "user_id": {**USER_ID, "description": "one user id: " + USER_ID["description"]},
        "user_ids": {"type": "array", "items": ref("UserId"), "minItems": 1,
                     "maxItems": MAX_RECIPIENTS,
                     "description": f"a list of 1–{MAX_RECIPIENTS} user ids (duplicates are "
                                    f"removed)"},
        "broadcast": {"const": True,
                      "description": "`true`: every user who has a stream (has connected or "
                                     "been sent a notification) when it is published"},
        "category": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$", "minLength": 1,
                     "maxLength": 64,
                     "description": "required, 1–64 characters of letters, digits and `_.:-`"},
        "priority": {"type": "string", "enum": [p.value for p in Priority], "default": "normal",
                     "description": "`low`, `normal` (default), `high` or `critical`: how soon "
                                    "it is sent (see [socketio.md](socketio.md)), whether it "
                                    "is throttled (`critical` never is) and what backpressure "
                                    "does with it"},
        "payload": {"type": "object", "default": {},
                    "description": "a JSON object, at most 64 KiB encoded as UTF-8 (default "
                                   "`{}`); delivered as given"},
    },
}

PUBLISH_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["id", "created_at", "offset", "recipients"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$",
               "description": "the notification's id"},
        "created_at": {"type": "string", "format": "date-time",
                       "description": "ISO 8601 UTC, with milliseconds"},
        "offset": {"type": "integer", "minimum": 1,
                   "description": "the log's offset of the entry, the same in every "
                                  "recipient's stream"},
        "recipients": {"type": "integer", "minimum": 0,
                       "description": "streams that hold it; for a broadcast, the streams "
                                      "that existed"},
        "offsets": {"type": "object", "additionalProperties": {"type": "integer"},
                    "description": f"user id → offset, for the first {MAX_RECIPIENTS} "
                                   f"recipients (not for a broadcast)"},
        "offsets_truncated": {"const": True,
                              "description": f"present when `offsets` stops at "
                                             f"{MAX_RECIPIENTS}"},
        "broadcast": {"const": True, "description": "present, instead of `offsets`, for a "
                                                    "broadcast"},
    },
}

PUBLISH_DESCRIPTION = """\
Appends one entry to the notification log for the recipients, and delivers it \
to those connected (see [socketio.md](socketio.md)); the others get it when \
they reconnect (the offline queue).

The answer, `202 Accepted`, comes once the entry is committed to the log.

Offsets are the log's, not per user: each publish takes the next one, and \
every recipient's stream holds the entry at that same offset. A user's \
stream is a subsequence of the log (their own entries and the broadcasts \
since their stream began), so its offsets only increase but are not \
consecutive. `offsets` repeats the offset per recipient (the first 1000, \
then `"offsets_truncated": true`). A broadcast's answer has `"broadcast": \
true` instead of `offsets`, and `recipients` counts the streams that existed.

A publish may be refused with 429 before anything is stored: `throttled` \
when a recipient already had its share of this priority (`THROTTLE`), \
`overloaded` when the node is behind on delivery and this priority's \
backpressure action is `refuse`. Retry after `Retry-After` seconds.

**Retries.** A publisher that did not get an answer (a timeout, a reset \
connection, a node that went down) cannot know whether the entry was \
stored. Send an `Idempotency-Key` with every publish and retry with the \
same key and the same body, on any node: a key already stored answers the \
first publish's `202` again (same `id`, `offset`, `created_at`) and stores \
nothing. The key is stored with the entry, in the same transaction, for \
`IDEMPOTENCY_WINDOW` seconds (24 h by default); after that the key is new \
again. The same key with another body is refused with 409 \
`idempotency_conflict` (`field: Idempotency-Key`). A refused publish (4xx, \
503) stored nothing, so its key is still free."""

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": "^[\\x21-\\x7e]+$"},
    "description": "1-255 visible ASCII characters, unique per notification (a UUID, or "
                   "your own order id): a retry with the same key and body is answered the "
                   "first result and stores nothing. Malformed: 422 "
                   "(`field: Idempotency-Key`)",
}

UNREAD_DESCRIPTION = """\
For an app's backend (a badge, a digest e-mail), with the publish token, as \
publishing.

- `unread`: entries of the user's stream above what they acknowledged (and \
above what the offline-queue bounds trimmed), counted up to 1,000: `1000` \
means "1,000 or more".
- `acked`: the highest offset the user acknowledged. A user with no stream \
yet has `unread` 0 and `acked` equal to `head` (a stream would begin there).
- `head`: the log's newest offset.

Served through the [query cache](operations.md#query-result-cache), exact \
for writes made through the same node. Acks reach the log in batches every \
500 ms, so a count falls that long after a client acks."""

PRESENCE_DESCRIPTION = """\
Online users and open connections, per node and in total. With `REDIS_URL` \
set (`source: redis`), every node reports to Redis every `PRESENCE_INTERVAL` \
(5 s), and `users` counts each user once however many nodes they are \
connected to; a node that stops reporting leaves the answer three intervals \
later. Without it (`source: local`), the answer is this node's. A 503 \
(`presence_unavailable`) while Redis does not answer."""

PRESENCE: dict[str, Any] = {
    "type": "object",
    "required": ["node", "connections", "users", "source", "nodes"],
    "properties": {
        "node": {"type": "string", "description": "the node that answered"},
        "connections": {"type": "integer", "minimum": 0,
                        "description": "open Socket.IO connections, all nodes"},
        "users": {"type": "integer", "minimum": 0,
                  "description": "distinct users connected, all nodes"},
        "source": {"type": "string", "enum": ["redis", "local"]},
        "nodes": {"type": "array", "items": {
            "type": "object", "required": ["node", "connections", "users", "updated_at"],
            "properties": {
                "node": {"type": "string"},
                "connections": {"type": "integer", "minimum": 0},
                "users": {"type": "integer", "minimum": 0},
                "updated_at": {"type": "number",
                               "description": "Unix time of the node's last report"}}}},
    },
}

HEALTHZ: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"],
                   "description": "`ok`; `degraded` while the log answers but a part does "
                                  "not (say, InfluxDB); `unavailable` (503) when the log does "
                                  "not answer"},
        "node": {"type": "string", "description": "the node id (`NODE_ID`)"},
        "components": {"type": "object",
                       "description": "`delivery`, `storage` and `telemetry`: each "
                                      "`healthy`, `warning` or `critical`",
                       "additionalProperties": {"type": "string",
                                                "enum": ["healthy", "warning", "critical"]}},
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/notifications": {"post": {
        "operationId": "publishNotification", "tags": ["Publish"], "security": PUBLISH,
        "summary": "Publish a notification",
        "description": PUBLISH_DESCRIPTION,
        "parameters": [IDEMPOTENCY_KEY],
        "requestBody": body(ref("PublishRequest"), {
            "user_ids": ["alice", "bob"], "category": "order.shipped", "priority": "high",
            "payload": {"order": 1234, "text": "Your order is on its way"}}),
        "responses": {
            "202": answer("committed to the log", ref("PublishAnswer"), {
                "id": "8719c6d898834778a6a51a3847d7f2e2",
                "created_at": "2026-11-26T20:38:00.551Z", "offset": 412, "recipients": 2,
                "offsets": {"alice": 412, "bob": 412}}),
            **errors("MalformedRequest", "Unauthorized", "IdempotencyConflict",
                     "PayloadTooLarge", "InvalidInput", "TooManyRequests", "StorageUnavailable"),
        },
    }},
    "/api/v1/users/{user_id}/unread": {"get": {
        "operationId": "getUnread", "tags": ["Publish"], "security": PUBLISH,
        "summary": "A user's unread count",
        "description": UNREAD_DESCRIPTION,
        "parameters": [{"name": "user_id", "in": "path", "required": True,
                        "schema": ref("UserId"),
                        "description": "the user; a malformed one is a 422 "
                                       "(`field: user_id`)"}],
        "responses": {
            "200": answer("the count", {
                "type": "object", "required": ["user_id", "unread", "acked", "head"],
                "properties": {
                    "user_id": ref("UserId"),
                    "unread": {"type": "integer", "minimum": 0, "maximum": 1000,
                               "description": "unread entries, up to 1,000"},
                    "acked": {"type": "integer", "minimum": 0,
                              "description": "the highest offset the user acknowledged"},
                    "head": {"type": "integer", "minimum": 0,
                             "description": "the log's newest offset"},
                }}, {"user_id": "alice", "unread": 3, "acked": 12, "head": 40}),
            **errors("Unauthorized", "InvalidInput", "StorageUnavailable"),
        },
    }},
    "/api/v1/presence": {"get": {
        "operationId": "getPresence", "tags": ["Publish"], "security": PUBLISH,
        "summary": "Who is online: per node and in total",
        "description": PRESENCE_DESCRIPTION,
        "responses": {
            "200": answer("the cluster's presence", ref("Presence"), {
                "node": "web-1-8000", "connections": 5012, "users": 4980,
                "source": "redis", "nodes": [
                    {"node": "web-1-8000", "connections": 2507, "users": 2490,
                     "updated_at": 1795811880.551},
                    {"node": "web-2-8000", "connections": 2505, "users": 2491,
                     "updated_at": 1795811878.102}]}),
            **errors("Unauthorized", "PresenceUnavailable"),
        },
    }},
    "/api/v1/users/{user_id}/presence": {"get": {
        "operationId": "getUserPresence", "tags": ["Publish"], "security": PUBLISH,
        "summary": "Is this user online, and on which nodes",
        "description": "This node's part is current; other nodes' as they last reported "
                       "(every `PRESENCE_INTERVAL`, 5 s).",
        "parameters": [{"name": "user_id", "in": "path", "required": True,
                        "schema": ref("UserId"),
                        "description": "the user; a malformed one is a 422 "
                                       "(`field: user_id`)"}],
        "responses": {
            "200": answer("the user's presence", {
                "type": "object", "required": ["user_id", "online", "nodes"],
                "properties": {
                    "user_id": ref("UserId"),
                    "online": {"type": "boolean",
                               "description": "connected to at least one node"},
                    "nodes": {"type": "array", "items": {"type": "string"},
                              "description": "the nodes the user is connected to"},
                }}, {"user_id": "alice", "online": True, "nodes": ["web-2-8000"]}),
            **errors("Unauthorized", "InvalidInput", "PresenceUnavailable"),
        },
    }},
    "/healthz": {"get": {
        "operationId": "healthz", "tags": ["Public"], "security": PUBLIC,
        "summary": "Is this node serving?",
        "description": "For load balancers and probes, with no token. 200 while the "
                       "notification log answers (`degraded` when, say, InfluxDB is "
                       "unreachable); 503 when the log does not.",
        "responses": {
            "200": answer("serving", ref("Healthz"), {
                "status": "ok", "node": "web-1-8000",
                "components": {"delivery": "healthy", "storage": "healthy",
                               "telemetry": "healthy"}}),
            "503": answer("the notification log does not answer", ref("Healthz"),
                          {"status": "unavailable"}),
        },
    }},
    "/openapi.json": {"get": {
        "operationId": "openapi", "tags": ["Public"], "security": PUBLIC,
        "summary": "This API's OpenAPI document",
        "description": "The OpenAPI 3.1 document this page is generated from, with no token: "
                       "for client generators and contract tests.",
        "responses": {"200": answer("the document", {"type": "object",
                                                     "required": ["openapi", "paths"]})},
    }},
    "/admin/performance": {"get": {
        "operationId": "adminPerformancePage", "tags": ["Public"], "security": PUBLIC,
        "summary": "The older admin page: now Grafana's overview dashboard",
        "description": "Redirects the browser to `GRAFANA_URL` + `/d/notify-overview`, the "
                       "provisioned overview dashboard. No token: Grafana asks for its own "
                       "login.",
        "responses": {"302": {
            "description": "to the Grafana dashboard",
            "headers": {"Location": {
                "required": True, "description": "`GRAFANA_URL/d/notify-overview`",
                "schema": {"type": "string", "pattern": "/d/notify-overview$"}}}}},
    }},
}

SCHEMAS: dict[str, Any] = {
    "UserId": USER_ID,
    "PublishRequest": PUBLISH_REQUEST,
    "PublishAnswer": PUBLISH_ANSWER,
    "Healthz": HEALTHZ,
    "Presence": PRESENCE,
}
