"""Notifications and the rules a publish request must follow. No I/O here."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from service.domain.errors import InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    from service.domain.idempotency import IdempotencyKey

# The rules a request is checked by, each declared once: validation below uses
# them, and the OpenAPI document (service.entrypoints.api_spec) is built from
# them. Patterns are matched whole (fullmatch: "$" would admit a "\n").
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_RECIPIENTS = 1000
USER_ID_MAX_LENGTH = 128
USER_ID_PATTERN = rf"[A-Za-z0-9_.@:+-]{{1,{USER_ID_MAX_LENGTH}}}"
CATEGORY_MAX_LENGTH = 64
CATEGORY_PATTERN = rf"[A-Za-z0-9_.:-]{{1,{CATEGORY_MAX_LENGTH}}}"
NOTIFICATION_ID_PATTERN = r"[0-9a-f]{32}"  # a uuid4's hex, as publishing makes it
MAX_OFFSET = 2**63 - 1  # a signed 64-bit column
_USER_ID = re.compile(USER_ID_PATTERN)
_CATEGORY = re.compile(CATEGORY_PATTERN)
_RECIPIENT_FIELDS = ("user_id", "user_ids", "broadcast")
_KNOWN_FIELDS = frozenset(_RECIPIENT_FIELDS + ("category", "priority", "payload"))


class Priority(enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @classmethod
    def parse(cls, value: Any) -> Priority:
        try:
            return cls(value)
        except ValueError:
            allowed = "|".join(p.value for p in cls)
            raise InvalidInput(
                f"priority must be one of {allowed}, not {value!r}", field="priority"
            ) from None


def validate_user_id(value: Any, field_name: str = "user_id") -> str:
    if not isinstance(value, str) or not _USER_ID.fullmatch(value):
        raise InvalidInput(
            f"a user id is 1-{USER_ID_MAX_LENGTH} characters of letters, digits and _.@:+-",
            field=field_name,
        )
    return value


@dataclass(frozen=True)
class Recipients:
    """Who a notification goes to: a list of users, or everyone (broadcast)."""

    user_ids: tuple[str, ...] = ()
    broadcast: bool = False

    @property
    def kind(self) -> str:
        if self.broadcast:
            return "broadcast"
        return "user" if len(self.user_ids) == 1 else "users"


@dataclass(frozen=True)
class PublishRequest:
    recipients: Recipients
    category: str
    priority: Priority
    payload_json: str  # encoded once here, stored and sent as is
    key: IdempotencyKey | None = None  # stored with the entry: a retry finds it

    @classmethod
    def from_body(cls, body: Any) -> PublishRequest:
        """Validate a decoded JSON body; raise InvalidInput naming the field."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object", field="body")
        unknown = sorted(set(body) - _KNOWN_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
        return cls(
            recipients=_parse_recipients(body),
            category=_parse_category(body.get("category")),
            priority=Priority.parse(body.get("priority", Priority.NORMAL.value)),
            payload_json=_encode_payload(body.get("payload")),
        )


def _parse_recipients(body: dict[str, Any]) -> Recipients:
    given = [name for name in _RECIPIENT_FIELDS if name in body]
    if len(given) != 1:
        raise InvalidInput(
            "give exactly one of user_id, user_ids or broadcast"
            + (f" (got {', '.join(given)})" if given else ""),
            field=given[1] if len(given) > 1 else "user_id",
        )
    name = given[0]
    if name == "user_id":
        return Recipients(user_ids=(validate_user_id(body["user_id"]),))
    if name == "broadcast":
        if body["broadcast"] is not True:
            raise InvalidInput("broadcast must be true when given", field="broadcast")
        return Recipients(broadcast=True)
    user_ids = body["user_ids"]
    if not isinstance(user_ids, list) or not user_ids:
        raise InvalidInput("user_ids must be a non-empty list", field="user_ids")
    if len(user_ids) > MAX_RECIPIENTS:
        raise InvalidInput(f"user_ids holds at most {MAX_RECIPIENTS} ids", field="user_ids")
    unique = dict.fromkeys(validate_user_id(u, "user_ids") for u in user_ids)
    return Recipients(user_ids=tuple(unique))


def _parse_category(value: Any) -> str:
    if value is None:
        raise InvalidInput("category is required", field="category")
    if not isinstance(value, str) or not _CATEGORY.fullmatch(value):
        raise InvalidInput(
            f"category is 1-{CATEGORY_MAX_LENGTH} characters of letters, digits and _.:-",
            field="category",
        )
    return value


def _encode_payload(value: Any) -> str:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidInput("payload must be a JSON object", field="payload")
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    size = len(encoded.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}",
            field="payload",
        )
    return encoded


class Notification:
    """One entry of the log: what one publish stored, at one offset.

    Offsets are global and only increase: a publish takes the next one, and
    every recipient's stream holds the entry at that same offset. A user's
    stream is therefore a subsequence of the log (its own entries and the
    broadcasts since the stream began), and a broadcast is the same bytes for
    every recipient. Its wire JSON is rendered once, here, by hand: id,
    category and priority are plain ASCII by validation, and the payload is
    stored encoded, so no JSON encoder is needed."""

    __slots__ = ("id", "offset", "category", "priority", "payload_json", "created_at",
                 "created_ts", "wire_json")

    def __init__(self, id: str, offset: int, category: str, priority: Priority,
                 payload_json: str, created_at: datetime) -> None:
        self.id = id
        self.offset = offset
        self.category = category
        self.priority = priority
        self.payload_json = payload_json
        self.created_at = created_at
        self.created_ts = created_at.timestamp()  # for cheap latency arithmetic
        self.wire_json = (
            f'{{"id":"{id}","offset":{offset},"category":"{category}",'
            f'"priority":"{priority.value}","payload":{payload_json},'
            f'"created_at":"{format_time(created_at)}"}}')

    def to_wire(self) -> dict[str, Any]:
        """The shape a Socket.IO client receives (the design's contract)."""
        wire: dict[str, Any] = json.loads(self.wire_json)
        return wire

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Notification) and self.offset == other.offset
                and self.id == other.id)

    def __hash__(self) -> int:
        return hash((self.offset, self.id))

    def __repr__(self) -> str:
        return f"Notification({self.id!r}, offset={self.offset})"


@dataclass(frozen=True)
class Appended:
    """A committed publish: its entry, and whose streams hold it."""

    notification: Notification
    user_ids: tuple[str, ...] | None  # None: a broadcast, to every stream
    recipients: int  # streams that hold it (for a broadcast: those that existed)
    origin: str | None = None  # the node that committed it, when not this one

    @property
    def offset(self) -> int:
        return self.notification.offset


@dataclass
class PublishResult:
    id: str
    created_at: datetime
    offset: int = 0
    recipients: int = 0
    user_ids: tuple[str, ...] | None = None  # None: a broadcast


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-11-26T20:32:54.123Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_offset(value: Any, field_name: str) -> int:
    """Offsets are non-negative integers; bool is not an integer here."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{field_name} must be a non-negative integer", field=field_name)
    if value > MAX_OFFSET:
        raise InvalidInput(f"{field_name} is out of range", field=field_name)
    return value
