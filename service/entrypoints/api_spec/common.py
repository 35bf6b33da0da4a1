"""The parts of the OpenAPI document every area shares: the error body and
the answers built on it, the security schemes, and the config's schemas
(derived from the tunables' table, so that a new tunable is documented and
checked without an edit here). Pure data; the builders are in
service.entrypoints.api_spec.builders."""

from __future__ import annotations

from typing import Any

from service.domain.control import EVENT_TYPES
from service.domain.levels import LEVELS
from service.domain.model import MAX_PAYLOAD_BYTES
from service.domain.tuning import TUNABLES
from service.entrypoints.api_spec.builders import answer, kib, literal, ref
from service.entrypoints.http_input import (
    BEARER_CHALLENGE,
    CONTROL_BODY_MAX,
    MAX_REQUEST_BYTES,
)

PUBLIC: list[dict[str, list[str]]] = []  # security: [] (no token)
PUBLISH: list[dict[str, list[str]]] = [{"publishToken": []}]
# either: a user's history takes the publish token or that user's own token
USER_OR_PUBLISH: list[dict[str, list[str]]] = [{"publishToken": []}, {"userToken": []}]
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
# either: the alert webhook takes an admin token or one of ALERT_WEBHOOK_TOKENS
ADMIN_OR_WEBHOOK: list[dict[str, list[str]]] = [{"adminToken": []}, {"alertWebhookToken": []}]


def errors(*names: str) -> dict[str, Any]:
    """The error answers an operation documents, by status; any other status
    (a 404 from routing, a 405) is an error body too (``default``)."""
    out = {str(ERROR_RESPONSES[name][0]): ref(name, "responses") for name in names}
    out["default"] = ref("Error", "responses")
    return out


# status, `error`, when: the table of docs/api.md's Errors section, and the
# codes the Error schema allows.
ERROR_CODES: list[tuple[int, str, str]] = [
    (400, "malformed_request", "the body is empty or not JSON (`field: body`)"),
    (401, "unauthorized", "missing or wrong bearer token (`field: Authorization`), with "
     f"`WWW-Authenticate: {BEARER_CHALLENGE}`. The control API never takes the publish "
     "token, and only the alert webhook takes a token of `ALERT_WEBHOOK_TOKENS`"),
    (403, "forbidden", "a user's token on another user's history or read mark (`field: "
     "user_id`): a user token opens its own user's only"),
    (404, "not_found", "no route at this path, a recommendation id that was never issued "
     "(`field: recommendation_id`), or no such page of the docs"),
    (405, "method_not_allowed", "the path exists, but not with this method"),
    (409, "conflict", "control API: `If-Match` names a config `seq` that is no longer the "
     "latest (`field: If-Match`); nothing was changed: read the config again, then decide. "
     "Also a decision on a recommendation already decided the other way (applying a dismissed "
     "one, dismissing an applied one: `field: recommendation_id`)"),
    (409, "idempotency_conflict", "publish API: this `Idempotency-Key` was stored with "
     "another body (`field: Idempotency-Key`); nothing was stored: use a new key for a new "
     "notification"),
    (409, "offset_out_of_range", "an offset beyond the log's head: a read mark's `offset` "
     "(`field: offset`), or Socket.IO's `last_offset` (see [socketio.md](socketio.md))"),
    (413, "payload_too_large", f"`payload` over {kib(MAX_PAYLOAD_BYTES)} (`field: payload`), "
     f"the body over {kib(MAX_REQUEST_BYTES)}, or a control API body over "
     f"{kib(CONTROL_BODY_MAX)} (`field: body`)"),
    (422, "invalid_input", "a field, query parameter or header breaks a rule; `field` names "
     "it. A body that lists its fields refuses any other, naming it (`unknown field(s): "
     "colour`, `field: colour`)"),
    (429, "overloaded", "the node is behind on delivery (backpressure) and this priority's "
     "action is `refuse` (`low`, by default): nothing was stored; retry after `Retry-After` "
     "seconds. See [operations](operations.md#backpressure-and-the-memory-budget)"),
    (429, "throttled", "a recipient already received its share of this priority "
     "(`THROTTLE`); nothing was stored; retry after `Retry-After` seconds. `critical` is "
     "never throttled (`field: priority`)"),
    (503, "storage_unavailable", "the notification log (for trends and the optimization "
     "report: InfluxDB) cannot be reached; retry after `Retry-After` seconds. Nothing was "
     "stored, unless the connection was lost during the commit itself: then the entry may "
     "be stored, and a retry with the same `Idempotency-Key` answers it. `error_id` names "
     "the node's log line that says why"),
    (503, "node_stopping", "the node was stopped (SIGTERM) before it answered: a publish "
     "may or may not be stored; retry on another node with the same `Idempotency-Key`"),
    (503, "storage_busy", "every database connection of this node is in use and none came "
     "free within the pool's timeout (a connect storm, a slow database): retry after "
     "`Retry-After` seconds (also `retry_after` in the body). Nothing was stored"),
    (500, "internal_error", "a bug: the answer carries `error_id`, which names the node's "
     "log line that holds the failure; the failure's own text is never sent"),
    (503, "presence_unavailable", "presence routes with `REDIS_URL` set: Redis, which holds "
     "every node's report, cannot be reached; retry after `Retry-After` seconds"),
]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error is this JSON object, whatever the route.",
    "required": ["error", "detail"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string", "enum": sorted({code for _, code, _ in ERROR_CODES}),
                  "description": "the kind of error, for programs"},
        "detail": {"type": "string", "description": "what went wrong and what to fix, for "
                                                    "people"},
        "field": {"type": "string", "description": "the body field, query parameter or "
                                                   "header at fault (`body`: the whole body)"},
        "error_id": {"type": "string", "description": "for failures of the node or of what "
                     "it depends on: the id under which the node logged what happened (the "
                     "answer never carries that text)"},
        "retry_after": {"type": "number", "description": "`storage_busy`: seconds to wait "
                        "before retrying, as `Retry-After`"},
    },
    "example": {"error": "invalid_input", "detail": "category is required",
                "field": "category"},
}


def error_of(*codes: str) -> dict[str, Any]:
    """The error body, with ``error`` one of ``codes``."""
    return {"allOf": [ref("Error"), {"properties": {"error": {"enum": list(codes)}}}]}


RETRY_AFTER = {"description": "seconds to wait before retrying", "required": True,
               "schema": {"type": "integer", "minimum": 1}}
WWW_AUTHENTICATE = {"description": f"`{BEARER_CHALLENGE}`", "required": True,
                    "schema": {"type": "string", "pattern": literal(BEARER_CHALLENGE)}}

# name: (status, description, codes, headers)
ERROR_RESPONSES: dict[str, tuple[int, str, tuple[str, ...], dict[str, Any]]] = {
    "MalformedRequest": (400, "the body is empty or not JSON", ("malformed_request",), {}),
    "Unauthorized": (401, "no bearer token, or not one this route takes", ("unauthorized",),
                     {"WWW-Authenticate": WWW_AUTHENTICATE}),
    "Forbidden": (403, "a user's token, for another user", ("forbidden",), {}),
    "NotFound": (404, "no such recommendation", ("not_found",), {}),
    "Conflict": (409, "the control log moved on since `If-Match`, or the state forbids it",
                 ("conflict",), {}),
    "OffsetOutOfRange": (409, "the offset is beyond the log's head",
                         ("offset_out_of_range",), {}),
    "IdempotencyConflict": (409, "the `Idempotency-Key` was stored with another body",
                            ("idempotency_conflict",), {}),
    "PayloadTooLarge": (413, "the body, or a field of it, is too large",
                        ("payload_too_large",), {}),
    "InvalidInput": (422, "a field, parameter or header breaks a rule: `field` names it",
                     ("invalid_input",), {}),
    "TooManyRequests": (429, "throttled or overloaded: nothing was stored",
                        ("throttled", "overloaded"), {"Retry-After": RETRY_AFTER}),
    "StorageUnavailable": (503, "the notification log (or InfluxDB, where the route reads "
                                "it) cannot be reached; retry after `Retry-After` seconds",
                           ("storage_unavailable", "storage_busy", "node_stopping"),
                           {"Retry-After": RETRY_AFTER}),
    "PresenceUnavailable": (503, "Redis cannot be reached; retry after `Retry-After` "
                                 "seconds", ("presence_unavailable",),
                            {"Retry-After": RETRY_AFTER}),
}


def error_responses() -> dict[str, Any]:
    out = {name: answer(description, error_of(*codes), headers=headers or None)
           for name, (_, description, codes, headers) in ERROR_RESPONSES.items()}
    out["Error"] = answer("an error (see [Errors](#errors))", ref("Error"))
    return out


SECURITY_SCHEMES = {
    "publishToken": {
        "type": "http", "scheme": "bearer",
        "description": "`Authorization: Bearer $PUBLISH_TOKEN`: for an application's backend "
                       "(publishing, unread counts).",
    },
    "adminToken": {
        "type": "http", "scheme": "bearer",
        "description": "`Authorization: Bearer $ADMIN_TOKEN`, or a named token of "
                       "`ADMIN_TOKENS`: the control API. The publish token is refused.",
    },
    "userToken": {
        "type": "http", "scheme": "bearer",
        "description": "`Authorization: Bearer <user token>`: the token a user's client "
                       "connects to Socket.IO with (`python -m service token USER_ID`, or a "
                       "JWT when a JWT key is configured: see [socketio.md](socketio.md)). It "
                       "opens that user's own history and read mark, and nothing else.",
    },
    "alertWebhookToken": {
        "type": "http", "scheme": "bearer",
        "description": "`Authorization: Bearer <token>`, a named token of "
                       "`ALERT_WEBHOOK_TOKENS` (Grafana's): taken by "
                       "`POST /api/v1/alerts/grafana` only; every other route refuses it "
                       "as it refuses an unknown token.",
    },
}

# -- the config ---------------------------------------------------------------
# TUNABLES are the live rows of the settings table (service.domain.settings_table):
# a row marked live is documented, with its range, without an edit here.

THROTTLE_PATTERN = (r"^(low|normal|high|critical)=(off|[0-9]{1,6}:[0-9]{1,7})"
                    r"(,(low|normal|high|critical)=(off|[0-9]{1,6}:[0-9]{1,7}))*$")


def _number(value: float | None) -> str:
    return f"{int(value):,}" if value is not None and float(value).is_integer() else str(value)


def _tunable(name: str, *, request: bool) -> dict[str, Any]:
    t = TUNABLES[name]
    where = f"`{t.env}` at start-up (see [configuration](configuration.md))"
    if t.kind is str:
        schema: dict[str, Any] = {
            "type": "string",
            "description": f"per priority, notifications per second and burst, "
                           f"`priority=RATE:BURST` or `priority=off`, comma-separated; "
                           f"priorities not named keep their value; {where}"}
        if request:
            schema["pattern"] = THROTTLE_PATTERN
    else:
        schema = {"type": "integer" if t.kind is int else "number",
                  "minimum": t.minimum, "maximum": t.maximum,
                  "description": f"{_number(t.minimum)}–{_number(t.maximum)}; {where}"}
    if request:
        schema["type"] = [schema["type"], "null"]
    return schema


def parameter_schemas() -> dict[str, Any]:
    return {
        "Parameters": {
            "type": "object",
            "description": "The effective value of every tunable.",
            "required": list(TUNABLES),
            "properties": {name: _tunable(name, request=False) for name in TUNABLES},
        },
        "ParameterValues": {
            "type": "object",
            "description": "Some tunables, by name.",
            "additionalProperties": False,
            "properties": {name: _tunable(name, request=False) for name in TUNABLES},
        },
        "ParameterChanges": {
            "type": "object",
            "description": "Tunables to override, by name; `null` removes an override. Each "
                           "value is checked against its range: a bad one is a 422 naming it "
                           "(`field: parameters.batch_size`), and nothing is applied.",
            "additionalProperties": False,
            "properties": {name: _tunable(name, request=True) for name in TUNABLES},
        },
    }


LEVEL = {"type": "string", "enum": list(LEVELS),
         "description": "the optimization level: a preset of every tunable (see "
                        "[configuration](configuration.md#optimization-levels))"}

CONFIG_PROPERTIES: dict[str, Any] = {
    "seq": {"type": "integer", "minimum": 0,
            "description": "the last control event this node has applied (of any type); the "
                           "`ETag`"},
    "level": LEVEL,
    "parameters": ref("Parameters"),
    "overrides": {"allOf": [ref("ParameterValues")],
                  "description": "the live overrides, set through this API"},
    "startup_overrides": {"allOf": [ref("ParameterValues")],
                          "description": "the tunables this node's environment set at start"},
}

CONFIG_EXAMPLE = {
    "seq": 7, "level": "balanced",
    "parameters": {"batch_size": 20, "batch_timeout_ms": 50.0, "...": "..."},
    "overrides": {"batch_size": 20}, "startup_overrides": {},
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The live tunables. Precedence: a live override, else the environment "
                   "variable given at start, else the level.",
    "required": list(CONFIG_PROPERTIES),
    "properties": CONFIG_PROPERTIES,
}

HISTORY_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["seq", "at", "actor", "type", "reason", "what", "payload"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1, "description": "the event's place in the log"},
        "at": {"type": "string", "format": "date-time",
               "description": "when, UTC with microseconds: copied into `/config/at?t=` it "
                              "finds this event"},
        "actor": {"type": "string", "description": "who: the admin token's name (`admin` for "
                                                   "`ADMIN_TOKEN`), or the job that issued it"},
        "type": {"type": "string", "enum": list(EVENT_TYPES)},
        "reason": {"type": "string", "description": "why, as given (may be empty)"},
        "what": {"type": "string", "description": "the change in a few words: `level -> "
                                                  "aggressive`, `batch_size=20; "
                                                  "batch_timeout_ms=default`, `rollback to #3`"},
        "payload": {"type": "object", "description": "the event's data, by type"},
    },
}
