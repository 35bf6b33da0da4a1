"""The service's HTTP API as an OpenAPI 3.1 document, as Python data.

``SPEC`` is served at ``GET /openapi.json`` (service.entrypoints.openapi) and
rendered to docs/api.md (service.entrypoints.api_doc); tests check it
against the app's routes and the app against it. One module per area; the
prose of the docs lives in the descriptions; ``builders`` writes the dicts.

Every pattern and limit is imported from the code that checks it (the
domain's modules, service.entrypoints.http_input, the routes), never
repeated here, and the prose that states one is built from it:
tests/unit/test_openapi_sources.py fails on any other.
"""

from __future__ import annotations

from typing import Any

from service.entrypoints.api_spec import (
    common,
    control_paths,
    docs_paths,
    history_paths,
    performance_paths,
    publish_paths,
)

INTRO = """\
The HTTP API of the notification service: applications publish notifications \
and read unread counts and histories; admins read a node's state and change the \
configuration of every node, live. Users receive their notifications over \
Socket.IO, described in [socketio.md](socketio.md).

Every node serves this description as OpenAPI 3.1 at `GET /openapi.json`, \
with no token: generate a client from it, or test against it.

- Bodies and answers are JSON (`Content-Type: application/json`), except the \
Markdown optimization report.
- Authentication is a bearer token: `Authorization: Bearer <token>`. \
`PUBLISH_TOKEN` publishes and reads unread counts and users' histories; a \
user's own token (the one their client connects to Socket.IO with) reads and \
marks read that user's history only; `ADMIN_TOKEN` (and the \
named tokens of `ADMIN_TOKENS`) open the control API and the older admin \
routes, and the publish token opens none of them. The control log records \
the name of the admin token that made each change (`admin` for \
`ADMIN_TOKEN`). Admin tokens cannot publish unless `ADMIN_CAN_PUBLISH=1`. \
The tokens of `ALERT_WEBHOOK_TOKENS` (Grafana's) open \
`POST /api/v1/alerts/grafana` and nothing else. \
Tokens are compared in constant time. `PUBLISH_TOKEN` and `ADMIN_TOKEN` are \
generated for development and printed at start when unset (see \
[configuration](configuration.md)).
- No token is needed for `GET /healthz`, `GET /openapi.json`, \
`GET /admin/performance` and the docs (`GET /docs/<page>`).
- Every error is the same JSON object, described under [Errors](#errors)."""

TAGS = [
    {"name": "Publish",
     "description": "For an application's backend, with `Authorization: Bearer "
                    "$PUBLISH_TOKEN`."},
    history_paths.TAG,
    {"name": "Control API",
     "description": "Every route needs `Authorization: Bearer $ADMIN_TOKEN`; the publish "
                    "token is refused. The alert webhook also takes a token of "
                    "`ALERT_WEBHOOK_TOKENS`, which no other route takes. The control state "
                    "is an append-only event log: each "
                    "change is an event that records who made it (the admin token's name), "
                    "when and why, and every node applies it within a second. The effective "
                    "config is a fold over the log, so \"what was live at time T\" is a "
                    "query and a rollback is one more event."},
    {"name": "Older admin routes",
     "description": "The older design's routes, kept under `/admin/api/performance/`, with "
                    "`Authorization: Bearer $ADMIN_TOKEN`."},
    {"name": "Public",
     "description": "No token."},
]

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Notification service", "version": "1", "description": INTRO},
    "tags": TAGS,
    "paths": {**publish_paths.PATHS, **history_paths.PATHS, **control_paths.PATHS,
              **performance_paths.PATHS, **docs_paths.PATHS},
    "components": {
        "securitySchemes": common.SECURITY_SCHEMES,
        "schemas": {"Error": common.ERROR_SCHEMA, **common.parameter_schemas(),
                    **publish_paths.SCHEMAS, **history_paths.SCHEMAS, **control_paths.SCHEMAS,
                    **performance_paths.SCHEMAS},
        "responses": common.error_responses(),
        "parameters": control_paths.PARAMETERS,
    },
    "x-errors": [{"status": status, "error": code, "when": when}
                 for status, code, when in common.ERROR_CODES],
}
