"""Reading a request: its JSON body, bounded, and its If-Match header. Each
failure is the service's own error type, so the answer is the usual JSON."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from flask import request

from service.domain.errors import InvalidInput, MalformedRequest, PayloadTooLarge

# The limits and patterns a request is held to here, each declared once: the
# OpenAPI document (service.entrypoints.api_spec) is built from them.
MAX_REQUEST_BYTES = 256 * 1024  # every body (MAX_CONTENT_LENGTH): a 64 KiB payload, escaped
CONTROL_BODY_MAX = 64 * 1024  # a control change is a few fields, never a data dump
IF_MATCH_PATTERN = r'\*|(W/)?"?[0-9]+"?'  # "*", or a config seq as an ETag gives it
ETAG_PATTERN = r'"[0-9]+"'  # a config's ETag: set_etag(str(seq)) quotes the seq
BEARER_CHALLENGE = 'Bearer realm="notify"'  # WWW-Authenticate of every 401
# Objects and arrays nested deeper than this are refused. Python's JSON
# decoder and encoder recurse: a body nested about 950 deep (a few KB) got
# past the decoder and then failed re-encoding its payload, and deeper ones
# failed decoding, both as a 500.
MAX_JSON_DEPTH = 64
# JSON may escape half of a surrogate pair alone ("\ud800"): valid JSON, but
# no UTF-8 text, so storing or re-encoding it failed (a 500). Bodies that may
# hold one are checked after decoding; the others cost this search only.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_IF_MATCH = re.compile(IF_MATCH_PATTERN)


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
        # NaN, Infinity and numbers too large for a float are not JSON: stored,
        # they were sent on to every client, whose JSON.parse refused the whole
        # batch (and the same batch again on each reconnect)
        value = json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)
    except RecursionError:
        raise MalformedRequest(f"the body is nested more than {MAX_JSON_DEPTH} levels deep",
                               field="body") from None
    except json.JSONDecodeError as exc:  # where, not the parser's own words
        raise MalformedRequest(f"the body is not valid JSON (line {exc.lineno}, column "
                               f"{exc.colno})", field="body") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedRequest("the body is not valid JSON (UTF-8 text expected)",
                               field="body") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        _check_depth(value)
    if _SURROGATE_ESCAPE.search(raw):
        _check_text(value)
    return value


def _not_json(constant: str) -> Any:
    raise MalformedRequest(f"the body is not valid JSON: {constant} is not a JSON number",
                           field="body")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedRequest(f"the body is not valid JSON: {text[:40]} is out of range",
                               field="body")
    return value


def _top_level(value: Any) -> list[tuple[str, Any]]:
    """(field, value) pairs, so that an error names the body's field."""
    if isinstance(value, dict):
        return [(key if isinstance(key, str) and key.isprintable() else "body", item)
                for key, item in value.items()]
    return [("body", value)]


def _check_depth(value: Any) -> None:
    """Without recursion: the point is to find what would make it fail."""
    base = 1 if isinstance(value, dict) else 0
    for name, item in _top_level(value):
        stack = [(item, base)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, dict | list):
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    raise InvalidInput(f"{name} is nested more than {MAX_JSON_DEPTH} levels deep",
                                       field=name)
                stack.extend((child, depth) for child in
                             (node.values() if isinstance(node, dict) else node))


def _check_text(value: Any) -> None:
    for name, item in _top_level(value):
        try:
            json.dumps([name, item], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{name if name != 'body' else 'the body'} holds half of a "
                               "UTF-16 surrogate pair, which is not text", field=name) from None


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
    if not _IF_MATCH.fullmatch(header):
        raise InvalidInput('If-Match must be a config seq, as in ETag: "12"', field="If-Match")
    return int(header.removeprefix("W/").strip('"'))
