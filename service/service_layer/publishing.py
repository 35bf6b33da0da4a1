"""Publishing: validate, append durably, hand to live delivery, record."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from service.domain.errors import StorageUnavailable, new_error_id
from service.domain.idempotency import (
    IdempotencyKey,
    KeysTaken,
    PriorPublish,
    check_same_request,
    parse_key,
)
from service.domain.measurements import PUBLISHED
from service.domain.model import Appended, PublishRequest, PublishResult, utcnow
from service.service_layer.ports import Telemetry


def publish(
    body: Any,
    idempotency_key: str | None = None,
    *,
    append: Callable[[PublishRequest, str, datetime], Appended],
    telemetry: Telemetry | None,
    admit: Callable[[PublishRequest], None] | None = None,
    prior: Callable[[str], PriorPublish | None] = lambda key: None,
) -> PublishResult:
    """Accept one publish request.

    ``append`` stores the entry durably and hands it to live delivery
    (``WriteBatcher.append``, which commits it with the publishes that came
    at the same time). The 202 that follows means the entry is committed, so
    a crash after the answer loses nothing the publisher was told about.

    With an ``Idempotency-Key`` already stored (``prior`` finds it), the
    answer is the first publish's, and nothing new is stored.
    """
    started = time.perf_counter()
    request = PublishRequest.from_body(body)
    key = parse_key(idempotency_key, body)
    if key is not None:
        request = replace(request, key=key)
    if admit is not None:
        admit(request)  # may refuse (Throttled) before anything is stored
    result = PublishResult(id=uuid.uuid4().hex, created_at=utcnow())
    for _attempt in range(2):
        try:
            appended = append(request, result.id, result.created_at)
            break
        except KeysTaken as taken:
            if key is None:  # only a publish that carries a key can find it taken
                raise
            stored = taken.priors.get(key.key) or prior(key.key)
            if stored is not None:
                return answered_before(request, key, stored)
            # the publish that held the key failed, or its window ended: append this one
    else:
        raise StorageUnavailable("the notification log did not take this publish; retry",
                                 error_id=new_error_id())
    result.offset, result.recipients = appended.offset, appended.recipients
    result.user_ids = appended.user_ids
    if telemetry is None:
        return result
    duration_ms = (time.perf_counter() - started) * 1000.0
    tags = (
        ("priority", request.priority.value),
        ("category", request.category),
        ("target", request.recipients.kind),
    )
    telemetry.tally(PUBLISHED, tags).add(
        appended.recipients, 1, len(request.payload_json), duration_ms, peak=duration_ms
    )
    return result


def answered_before(request: PublishRequest, key: IdempotencyKey,
                    stored: PriorPublish) -> PublishResult:
    """The first publish's answer, for a retry of the same request."""
    check_same_request(key, stored)
    recipients = request.recipients
    return PublishResult(
        id=stored.message_id, created_at=stored.created_at, offset=stored.offset,
        recipients=stored.recipients,
        user_ids=None if recipients.broadcast else tuple(sorted(recipients.user_ids)))
