"""Idempotent publishing, as Stripe's API does it: a publisher that did not
hear the answer (a timeout, a reset, a node that died) sends the same
request again with the same ``Idempotency-Key``, and gets the first answer
back instead of a second entry.

The key is stored with the entries, in the same transaction, so a retry on
another node, or after a restart, finds it. A key is remembered for a window
(``IDEMPOTENCY_WINDOW``); after it, the same key is a new publish. The body
is remembered as a fingerprint: the same key with another body is refused
(409), since answering the first result would tell the publisher that its
second, different request was stored."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain.errors import IdempotencyConflict, InvalidInput

HEADER = "Idempotency-Key"
DEFAULT_WINDOW_S = 86_400.0
KEY_MAX_LENGTH = 255
KEY_PATTERN = rf"[\x21-\x7e]{{1,{KEY_MAX_LENGTH}}}"  # visible ASCII, as header values go
_KEY = re.compile(KEY_PATTERN)


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    fingerprint: str  # of the body: the same key must come with the same request


@dataclass(frozen=True)
class PriorPublish:
    """What the first publish with a key was answered."""

    fingerprint: str
    message_id: str
    offset: int
    created_at_us: int
    recipients: int

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created_at_us / 1_000_000, tz=UTC)


class KeysTaken(Exception):
    """Some publishes of a batch carry keys already stored: the rest of the
    batch can go on without them, and they are answered from what is stored
    (``priors``, read with the keys: a retry storm after an outage otherwise
    took a database connection per retried publish, emptied the pool, and
    held every commit up behind it)."""

    def __init__(self, priors: Mapping[str, PriorPublish | None]) -> None:
        super().__init__(f"{len(priors)} idempotency key(s) already stored")
        self.priors = priors  # None: stored by a publish of this same batch

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.priors)


def parse_key(value: str | None, body: Any) -> IdempotencyKey | None:
    """The header's key, with the body's fingerprint; None without a header."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise InvalidInput(f"{HEADER} is 1-{KEY_MAX_LENGTH} visible ASCII characters",
                           field=HEADER)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return IdempotencyKey(value, hashlib.sha256(canonical.encode()).hexdigest())


def check_same_request(key: IdempotencyKey, prior: PriorPublish) -> None:
    if prior.fingerprint != key.fingerprint:
        raise IdempotencyConflict(
            f"this {HEADER} was used with a different body; use a new key for a new "
            "notification", field=HEADER)
