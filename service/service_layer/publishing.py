"""Publishing: validate, append durably, hand to live delivery, record."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from service.domain.model import Appended, PublishRequest, PublishResult, utcnow
from service.domain.telemetry import PUBLISHED
from service.service_layer.ports import Telemetry


def publish(
    body: Any,
    *,
    append: Callable[[PublishRequest, str, datetime], Appended],
    telemetry: Telemetry | None,
    admit: Callable[[PublishRequest], None] | None = None,
) -> PublishResult:
    """Accept one publish request.

    ``append`` stores the entry durably and hands it to live delivery
    (``WriteBatcher.append``, which commits it with the publishes that came
    at the same time). The 202 that follows means the entry is committed, so
    a crash after the answer loses nothing the publisher was told about.
    """
    started = time.perf_counter()
    request = PublishRequest.from_body(body)
    if admit is not None:
        admit(request)  # may refuse (Throttled) before anything is stored
    result = PublishResult(id=uuid.uuid4().hex, created_at=utcnow())
    appended = append(request, result.id, result.created_at)
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
