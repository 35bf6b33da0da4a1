"""Reading a request: its JSON body, bounded, and its If-Match header. Each
failure is the service's own error type, so the answer is the usual JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flask import request

from service.domain.errors import InvalidInput, MalformedRequest, PayloadTooLarge

CONTROL_BODY_MAX = 64 * 1024  # a control change is a few fields, never a data dump


def json_body(max_bytes: int | None = None) -> Any:
    """The parsed body. The app's MAX_CONTENT_LENGTH bounds every request;
    ``max_bytes`` bounds this route's more tightly."""
    length = request.content_length
    if max_bytes is not None and length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the request body is over {max_bytes} bytes", field="body")
    raw = request.get_data(cache=False)
    if max_bytes is not None and len(raw) > max_bytes:  # chunked: no Content-Length
        raise PayloadTooLarge(f"the request body is over {max_bytes} bytes", field="body")
    if not raw:
        raise MalformedRequest("the body is empty; send a JSON object", field="body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}", field="body") from None


def json_object(allowed: Iterable[str], *, optional: bool = False,
                max_bytes: int = CONTROL_BODY_MAX) -> dict[str, Any]:
    """A JSON object with only ``allowed`` fields: 422 names any other.
    ``optional``: no body at all reads as ``{}``."""
    if optional and not request.get_data(cache=True):
        return {}
    body = json_body(max_bytes)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    return body


def if_match() -> int | None:
    """The control log seq the client last read, from ``If-Match`` ("5", 5
    or W/"5"); none or ``*`` means change whatever is there."""
    header = request.headers.get("If-Match", "").strip()
    if not header or header == "*":
        return None
    value = header.removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidInput('If-Match must be a config seq, as in ETag: "12"', field="If-Match")
    return int(value)
