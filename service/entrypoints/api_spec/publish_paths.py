"""Publishing and unread counts (the publish token), and the routes that take
no token: /healthz, /openapi.json and the Grafana redirect. Pure data."""

from __future__ import annotations

from typing import Any

from service.domain.idempotency import DEFAULT_WINDOW_S, KEY_MAX_LENGTH, KEY_PATTERN
from service.domain.model import (
    CATEGORY_MAX_LENGTH,
    CATEGORY_PATTERN,
    MAX_PAYLOAD_BYTES,
    MAX_RECIPIENTS,
    NOTIFICATION_ID_PATTERN,
    USER_ID_MAX_LENGTH,
    USER_ID_PATTERN,
    Priority,
)
from service.entrypoints.admin_api import OVERVIEW_DASHBOARD
from service.entrypoints.api_spec.builders import (
    anchored,
    answer,
    body,
    integer,
    kib,
    literal,
    param,
    ref,
)
from service.entrypoints.api_spec.common import PUBLIC, PUBLISH, errors
from service.entrypoints.publish_api import MAX_OFFSETS_IN_ANSWER
from service.service_layer.ports import UNREAD_CAP

USER_ID: dict[str, Any] = {"type": "string", "pattern": anchored(USER_ID_PATTERN),
           "minLength": 1, "maxLength": USER_ID_MAX_LENGTH,
           "description": f"1–{USER_ID_MAX_LENGTH} characters of letters, digits and `_.@:+-`"}
USER_ID_PARAMETER = param("user_id", "path", ref("UserId"),
                          "the user; a malformed one is a 422 (`field: user_id`)")
CATEGORY = {"type": "string", "pattern": anchored(CATEGORY_PATTERN), "minLength": 1,
            "maxLength": CATEGORY_MAX_LENGTH}
NOTIFICATION_ID = {"type": "string", "pattern": anchored(NOTIFICATION_ID_PATTERN)}
HEAD = integer(description="the log's newest offset")

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
        "category": {**CATEGORY, "description": f"required, 1–{CATEGORY_MAX_LENGTH} characters "
                                                f"of letters, digits and `_.:-`"},
        "priority": {"type": "string", "enum": [p.value for p in Priority], "default": "normal",
                     "description": "`low`, `normal` (default), `high` or `critical`: how soon "
                                    "it is sent (see [socketio.md](socketio.md)), whether it "
                                    "is throttled (`critical` never is) and what backpressure "
                                    "does with it"},
        "payload": {"type": "object", "default": {},
                    "description": f"a JSON object, at most {kib(MAX_PAYLOAD_BYTES)} encoded as "
                                   f"UTF-8 (default `{{}}`); delivered as given"},
    },
}

PUBLISH_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["id", "created_at", "offset", "recipients"],
    "properties": {
        "id": {**NOTIFICATION_ID, "description": "the notification's id"},
        "created_at": {"type": "string", "format": "date-time",
                       "description": "ISO 8601 UTC, with milliseconds"},
        "offset": integer(1, description="the log's offset of the entry, the same in every "
                                         "recipient's stream"),
        "recipients": integer(description="streams that hold it; for a broadcast, the streams "
                                          "that existed"),
        "offsets": {"type": "object", "additionalProperties": {"type": "integer"},
                    "description": f"user id → offset, for the first {MAX_OFFSETS_IN_ANSWER} "
                                   f"recipients (not for a broadcast)"},
        "offsets_truncated": {"const": True,
                              "description": f"present when `offsets` stops at "
                                             f"{MAX_OFFSETS_IN_ANSWER}"},
        "broadcast": {"const": True, "description": "present, instead of `offsets`, for a "
                                                    "broadcast"},
    },
}

PUBLISH_DESCRIPTION = f"""\
Appends one entry to the notification log for the recipients, and delivers it \
to those connected (see [socketio.md](socketio.md)); the others get it when \
they reconnect (the offline queue).

The answer, `202 Accepted`, comes once the entry is committed to the log.

Offsets are the log's, not per user: each publish takes the next one, and \
every recipient's stream holds the entry at that same offset. A user's \
stream is a subsequence of the log (their own entries and the broadcasts \
since their stream began), so its offsets only increase but are not \
consecutive. `offsets` repeats the offset per recipient (the first \
{MAX_OFFSETS_IN_ANSWER}, then `"offsets_truncated": true`). A broadcast's answer has `"broadcast": \
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
`IDEMPOTENCY_WINDOW` seconds ({DEFAULT_WINDOW_S / 3600:g} h by default); after that the key is new \
again. The same key with another body is refused with 409 \
`idempotency_conflict` (`field: Idempotency-Key`). A refused publish (4xx, \
503) stored nothing, so its key is still free."""

IDEMPOTENCY_KEY = param(
    "Idempotency-Key", "header",
    {"type": "string", "minLength": 1, "maxLength": KEY_MAX_LENGTH,
     "pattern": anchored(KEY_PATTERN)},
    f"1-{KEY_MAX_LENGTH} visible ASCII characters, unique per notification (a UUID, or your "
    "own order id): a retry with the same key and body is answered the first result and "
    "stores nothing. Malformed: 422 (`field: Idempotency-Key`)", required=False)

UNREAD_DESCRIPTION = f"""\
For an app's backend (a badge, a digest e-mail), with the publish token, as \
publishing.

- `unread`: entries of the user's stream above what they acknowledged (and \
above what the offline-queue bounds trimmed), counted up to {UNREAD_CAP:,}: \
`{UNREAD_CAP}` means "{UNREAD_CAP:,} or more".
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
        "parameters": [USER_ID_PARAMETER],
        "responses": {
            "200": answer("the count", {
                "type": "object", "required": ["user_id", "unread", "acked", "head"],
                "properties": {
                    "user_id": ref("UserId"),
                    "unread": integer(0, UNREAD_CAP, f"unread entries, up to {UNREAD_CAP:,}"),
                    "acked": integer(description="the highest offset the user acknowledged"),
                    "head": HEAD,
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
        "parameters": [USER_ID_PARAMETER],
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
        "description": f"Redirects the browser to `GRAFANA_URL` + `{OVERVIEW_DASHBOARD}`, the "
                       "provisioned overview dashboard. No token: Grafana asks for its own "
                       "login.",
        "responses": {"302": {
            "description": "to the Grafana dashboard",
            "headers": {"Location": {
                "required": True, "description": f"`GRAFANA_URL{OVERVIEW_DASHBOARD}`",
                # after GRAFANA_URL, whatever it is
                "schema": {"type": "string",
                           "pattern": literal(OVERVIEW_DASHBOARD).removeprefix("^")}}}}},
    }},
}

SCHEMAS: dict[str, Any] = {
    "UserId": USER_ID,
    "PublishRequest": PUBLISH_REQUEST,
    "PublishAnswer": PUBLISH_ANSWER,
    "Healthz": HEALTHZ,
    "Presence": PRESENCE,
}
