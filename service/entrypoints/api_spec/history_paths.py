"""A user's notification history and read mark: the publish token, or the
user's own token. Pure data."""

from __future__ import annotations

from typing import Any

from service.domain.history import DEFAULT_LIMIT, MAX_LIMIT
from service.domain.model import MAX_OFFSET, Priority
from service.entrypoints.api_spec.builders import answer, body, integer, param, ref
from service.entrypoints.api_spec.common import USER_OR_PUBLISH, errors
from service.entrypoints.api_spec.publish_paths import (
    CATEGORY,
    HEAD,
    NOTIFICATION_ID,
    USER_ID_PARAMETER,
)
from service.service_layer.ports import UNREAD_CAP

TAG = {"name": "Notification history",
       "description": "A user's notifications and their read state, for an application's "
                      "backend (`Authorization: Bearer $PUBLISH_TOKEN`, any user) or for the "
                      "user's own client (`Authorization: Bearer <user token>`, the token it "
                      "connects to Socket.IO with: that user only; another user's token is a "
                      "403 `forbidden`)."}

OFFSET = integer(0, MAX_OFFSET)
PRIORITY = {"type": "string", "enum": [p.value for p in Priority]}

HISTORY_ITEM: dict[str, Any] = {
    "type": "object",
    "description": "A notification exactly as the Socket.IO `notifications` event delivers "
                   "it, with its read state.",
    "required": ["id", "offset", "category", "priority", "payload", "created_at", "read"],
    "properties": {
        "id": NOTIFICATION_ID,
        "offset": integer(1, description="the log's offset: the cursor to page on"),
        "category": {"type": "string"},
        "priority": PRIORITY,
        "payload": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time",
                       "description": "ISO 8601 UTC, with milliseconds"},
        "read": {"type": "boolean",
                 "description": "`true` when `offset` ≤ `acked`: acknowledged over Socket.IO "
                                "or marked read with `POST .../read`"},
    },
}

HISTORY_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["items", "user_id", "has_more", "next_before", "next_after", "acked", "head"],
    "properties": {
        "items": {"type": "array", "items": ref("HistoryItem"), "maxItems": MAX_LIMIT,
                  "description": "in offset order, oldest first, whichever way the page goes"},
        "user_id": ref("UserId"),
        "has_more": {"type": "boolean",
                     "description": "more matching entries lie beyond this page in the "
                                    "direction asked: older ones for `before` (or no cursor), "
                                    "newer ones for `after`"},
        "next_before": {"type": ["integer", "null"], "minimum": 0,
                        "description": "`before` for the page of older entries; `null` when "
                                       "a backward page shows there are none"},
        "next_after": integer(description="`after` for the page of newer entries, or to poll "
                                          "for new ones"),
        "acked": integer(description="the user's acknowledged offset: entries at or below it "
                                     "are read"),
        "head": HEAD,
    },
}

HISTORY_DESCRIPTION = """\
A page of the user's stream (their own notifications and the broadcasts since \
their stream began), each item as the Socket.IO `notifications` event delivers \
it plus `read`. Offsets are the cursor, and pages go either way:

- no cursor: the newest `limit` entries (the first page of an inbox);
- `before=B`: the newest `limit` entries with offset < B (older: pass \
`next_before`);
- `after=A`: the oldest `limit` entries with offset > A (newer: pass \
`next_after`; an empty page means nothing new yet, poll again with the same \
cursor).

Giving both `before` and `after` is a 422 (`field: before`). Items always come \
oldest first. `category` and `priority` filter the entries before the page is \
cut, so a filtered page holds up to `limit` matching entries. Entries the \
offline-queue bounds trimmed (`OFFLINE_QUEUE_MAX`, `OFFLINE_QUEUE_MAX_AGE`) \
are gone from the history too. A user with no stream yet has no entries, and \
`acked` equal to `head`.

Served through the [query cache](operations.md#query-result-cache), as the \
unread count is: a publish to the user, an ack, a read mark or a trim drops \
the user's cached pages. Socket.IO acks reach the log in batches every \
500 ms, so `read` turns `true` that long after a client acks.

```sh
curl -H "Authorization: Bearer $PUBLISH_TOKEN" \\
  "http://127.0.0.1:8000/api/v1/users/alice/notifications?limit=20&priority=high"
# the next (older) page: before=<next_before>
curl -H "Authorization: Bearer $USER_TOKEN" \\
  "http://127.0.0.1:8000/api/v1/users/alice/notifications?before=17&limit=20"
```"""

READ_DESCRIPTION = """\
Marks every entry of the user's stream up to `offset` read: the same \
acknowledged offset a Socket.IO `ack {offset}` moves, written at once (not \
with the next 500 ms batch), so the unread count, the history's `read` flags \
and what a reconnecting client is replayed all follow it as soon as this \
answers. Acks never go back: an `offset` below the user's current mark \
changes nothing, and the answer's `acked` stays where it was. An `offset` \
beyond the log's head is a 409 `offset_out_of_range` (`field: offset`), as a \
Socket.IO `last_offset` beyond it is. A user with no stream yet has nothing \
to mark.

```sh
curl -X POST -H "Authorization: Bearer $PUBLISH_TOKEN" \\
  -H "Content-Type: application/json" -d '{"offset": 17}' \\
  http://127.0.0.1:8000/api/v1/users/alice/read
```"""

READ_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["offset"],
    "properties": {"offset": {**OFFSET, "description": "mark read up to and including this "
                                                       "offset"}},
}

PARAMETERS = [
    USER_ID_PARAMETER,
    param("before", "query", OFFSET,
          "entries with offset < this, the newest first (not with `after`)", required=False),
    param("after", "query", OFFSET,
          "entries with offset > this, the oldest first (not with `before`)", required=False),
    param("limit", "query", integer(1, MAX_LIMIT, default=DEFAULT_LIMIT),
          f"1–{MAX_LIMIT} (default {DEFAULT_LIMIT}), else 422 `field: limit`", required=False),
    param("category", "query", CATEGORY, "only this category", required=False),
    param("priority", "query", PRIORITY, "only this priority", required=False),
]

PATHS: dict[str, Any] = {
    "/api/v1/users/{user_id}/notifications": {"get": {
        "operationId": "getNotificationHistory", "tags": [TAG["name"]],
        "security": USER_OR_PUBLISH,
        "summary": "A user's notifications, paged by offset, with their read state",
        "description": HISTORY_DESCRIPTION,
        "parameters": PARAMETERS,
        "responses": {
            "200": answer("a page", ref("HistoryPage"), {
                "items": [{"id": "8719c6d898834778a6a51a3847d7f2e2", "offset": 17,
                           "category": "order.shipped", "priority": "high",
                           "payload": {"order": 1234}, "created_at": "2026-11-26T20:38:00.551Z",
                           "read": True},
                          {"id": "0c5be1f0a3f84c2c9d2b6d1e4f0a9b11", "offset": 40,
                           "category": "chat", "priority": "normal",
                           "payload": {"text": "hi"}, "created_at": "2026-11-26T20:41:12.002Z",
                           "read": False}],
                "user_id": "alice", "has_more": True, "next_before": 17, "next_after": 40,
                "acked": 30, "head": 41}),
            **errors("Unauthorized", "Forbidden", "InvalidInput", "StorageUnavailable"),
        },
    }},
    "/api/v1/users/{user_id}/read": {"post": {
        "operationId": "markRead", "tags": [TAG["name"]], "security": USER_OR_PUBLISH,
        "summary": "Mark a user's notifications read up to an offset",
        "description": READ_DESCRIPTION,
        "parameters": [USER_ID_PARAMETER],
        "requestBody": body(ref("ReadRequest"), {"offset": 17}),
        "responses": {
            "200": answer("the read mark", {
                "type": "object", "required": ["user_id", "acked", "unread", "head"],
                "properties": {
                    "user_id": ref("UserId"),
                    "acked": integer(description="the user's acknowledged offset now (never "
                                                 "lower than before)"),
                    "unread": integer(0, UNREAD_CAP, f"unread entries left, up to "
                                                     f"{UNREAD_CAP:,}"),
                    "head": HEAD,
                }}, {"user_id": "alice", "acked": 17, "unread": 3, "head": 41}),
            **errors("MalformedRequest", "Unauthorized", "Forbidden", "OffsetOutOfRange",
                     "PayloadTooLarge", "InvalidInput", "StorageUnavailable"),
        },
    }},
}

SCHEMAS: dict[str, Any] = {
    "HistoryItem": HISTORY_ITEM,
    "HistoryPage": HISTORY_PAGE,
    "ReadRequest": READ_REQUEST,
}
