"""/api/v1/config, /api/v1/recommendations and /api/v1/alerts/grafana: the
control API (admin token; the webhook also takes ALERT_WEBHOOK_TOKENS). Pure data."""

from __future__ import annotations

from typing import Any

from service.domain.alerts import MAX_ALERTS, MAX_MARK, STATES
from service.domain.control import MAX_REASON, MAX_TEXT
from service.entrypoints.api_spec.builders import anchored, answer, body, integer, param, ref
from service.entrypoints.api_spec.common import (
    ADMIN,
    ADMIN_OR_WEBHOOK,
    CONFIG_EXAMPLE,
    CONFIG_PROPERTIES,
    CONFIG_SCHEMA,
    HISTORY_EVENT,
    LEVEL,
    errors,
)
from service.entrypoints.http_input import ETAG_PATTERN, IF_MATCH_PATTERN
from service.service_layer.live_config import HISTORY_DEFAULT, HISTORY_MAX
from service.service_layer.recommendations import STATUSES

TAG = ["Control API"]
ETAG = {"ETag": {"required": True, "description": "`\"<seq>\"`: send it back as `If-Match`",
                 "schema": {"type": "string", "pattern": anchored(ETAG_PATTERN)}}}
IF_MATCH = param(
    "If-Match", "header", {"type": "string", "pattern": anchored(IF_MATCH_PATTERN)},
    "the `ETag` (a config `seq`) you read: change only if no control event was appended "
    "since, else 409 `conflict` and nothing is appended. Absent or `*`: change whatever is "
    "there", required=False)
REASON = {"type": "string", "maxLength": MAX_REASON,
          "description": f"why, for the audit trail: at most {MAX_REASON} characters"}
# as issued: an id longer than the control log takes was never issued (404)
ISSUED_ID = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
RECOMMENDATION_ID = param("recommendation_id", "path", ISSUED_ID, "as issued")
RECOMMENDATION_STATUS = {"type": "string", "enum": list(STATUSES)}

PUT_DESCRIPTION = """\
Changes the tunables **live on every node**, without dropping a connection: \
`level` swaps the presets; `parameters` overrides single ones (`null` removes \
an override). Precedence: a live override, else the environment variable \
given at start, else the level. Open connections batch by the new rules from \
their next notification. Each value is checked against its range; a bad one \
gets 422 naming it (`field: parameters.batch_size`), and nothing is applied.

The change is appended to the control event log (a `level_set` and/or a \
`parameter_overridden` event, in one transaction), applied here before the \
answer, and on every other node within a second. It is also logged and \
written to InfluxDB as `config_change`, which Grafana draws as an annotation. \
Send `If-Match: <seq>` (the `ETag` you read) to change only what you read: if \
any control event was appended since, the answer is `409 conflict` \
(`field: If-Match`) and nothing is appended. The answer is the new config, \
with its `ETag`."""

RECOMMENDATIONS_DESCRIPTION = """\
The analysis jobs issue recommendations (a level or parameters to change, \
with the evidence) as control events; an admin applies or dismisses each. \
Applying one appends `recommendation_applied` with the change it carries, \
which every node folds into its config, so it is audited and undone like \
any other change (a rollback). Deciding is idempotent: applying an applied \
one, or dismissing a dismissed one, appends nothing and answers 200 with \
`changed: false`. Applying a dismissed one, or dismissing an applied one, \
is a 409."""

RECOMMENDATION: dict[str, Any] = {
    "type": "object",
    "description": "A recommendation: what the analysis jobs issued (the change it "
                   "proposes, the evidence, the expected effect) and the decision, if any.",
    "required": ["id", "status", "issued_at"],
    "properties": {
        "id": {"type": "string"},
        "status": {**RECOMMENDATION_STATUS,
                   "description": "`issued` (waiting for a decision), `applied` or "
                                  "`dismissed`"},
        "issued_at": {"type": ["string", "null"], "format": "date-time"},
        "level": {**LEVEL, "description": "the level applying it sets"},
        "parameters": {"type": "object", "description": "the parameters applying it "
                                                        "overrides"},
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "decided_by": {"type": ["string", "null"], "description": "the admin token's name"},
        "decision_reason": {"type": ["string", "null"]},
        "changed": {"type": "boolean", "description": "in a decision's answer: whether this "
                                                      "request appended the decision"},
    },
}

ALERT: dict[str, Any] = {
    "type": "object",
    "required": ["status", "labels"],
    "properties": {
        "status": {"type": "string", "enum": list(STATES)},
        "labels": {"type": "object", "required": ["alertname"],
                   "additionalProperties": {"type": "string"},
                   "properties": {"alertname": {"type": "string", "minLength": 1}},
                   "description": "the rule's labels; `alertname` names the alert"},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "`summary` becomes the event's reason"},
        "startsAt": {"type": "string", "maxLength": MAX_MARK},
        "endsAt": {"type": "string"},
        "generatorURL": {"type": "string"},
        "fingerprint": {"type": "string", "maxLength": MAX_MARK,
                        "description": "with `status` and `startsAt`: a repeat of an alert "
                                       "already recorded is not recorded again"},
        "values": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "silenceURL": {"type": "string"}, "dashboardURL": {"type": "string"},
        "panelURL": {"type": "string"}, "valueString": {"type": "string"},
    },
}

GRAFANA_WEBHOOK: dict[str, Any] = {
    "type": "object",
    "description": "Grafana's webhook contact point payload, as Grafana sends it. Fields "
                   "this service does not read are ignored, not refused: Grafana adds some "
                   "in new versions.",
    "required": ["alerts"],
    "properties": {
        "receiver": {"type": "string"},
        "status": {"type": "string", "enum": list(STATES)},
        "orgId": {"type": "integer"},
        "alerts": {"type": "array", "items": ref("GrafanaAlert"), "minItems": 1,
                   "maxItems": MAX_ALERTS, "description": f"1–{MAX_ALERTS} alerts"},
        "groupLabels": {"type": "object"}, "commonLabels": {"type": "object"},
        "commonAnnotations": {"type": "object"}, "externalURL": {"type": "string"},
        "version": {"type": "string"}, "groupKey": {"type": "string"},
        "truncatedAlerts": {"type": "integer", "minimum": 0}, "title": {"type": "string"},
        "state": {"type": "string"}, "message": {"type": "string"},
    },
}

GRAFANA_EXAMPLE = {
    "receiver": "notify-control", "status": "firing", "orgId": 1,
    "alerts": [{"status": "firing",
                "labels": {"alertname": "NotifyMemoryCritical", "node": "web-1-8000"},
                "annotations": {"summary": "RSS over the memory budget"},
                "startsAt": "2026-11-26T20:30:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana:3000/alerting/grafana/abc/view",
                "fingerprint": "c6eadffa33fcdf37", "values": {"B": 561.2}}],
    "groupLabels": {"alertname": "NotifyMemoryCritical"}, "commonLabels": {},
    "commonAnnotations": {}, "externalURL": "http://grafana:3000/", "version": "1",
    "groupKey": "{}:{alertname=\"NotifyMemoryCritical\"}", "truncatedAlerts": 0,
    "title": "[FIRING:1] NotifyMemoryCritical", "state": "alerting", "message": "...",
}

GRAFANA_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["recorded", "mitigations"],
    "properties": {
        "received": integer(description="alerts in the payload"),
        "recorded": integer(description="alerts recorded as `alert_received` events (repeats "
                                        "are not)"),
        "repeats": integer(description="alerts already recorded, not recorded again"),
        "events": {"type": "array", "items": {"type": "integer"},
                   "description": "the `seq` of each event recorded"},
        "mitigations": {"type": "array", "items": ref("Mitigation"),
                        "description": "the documented mitigations the firing alerts "
                                       "triggered (see [operations](operations.md))"},
    },
}

MITIGATION: dict[str, Any] = {
    "type": "object",
    "required": ["alert", "action", "applied"],
    "properties": {
        "alert": {"type": "string"},
        "action": {"type": "string", "description": "e.g. `level_set`"},
        "level": LEVEL,
        "applied": {"type": "boolean", "description": "false when already in force (`why`)"},
        "why": {"type": "string"},
        "seq": {"type": "integer", "description": "the event that applied it"},
        "undo": {"type": "object", "description": "the rollback that undoes it: "
                                                  "`{to_seq}`"},
    },
}


def _decision(verb: str, effect: str) -> dict[str, Any]:
    return {
        "operationId": f"{verb}Recommendation", "tags": TAG, "security": ADMIN,
        "summary": f"{verb.capitalize()} a recommendation",
        "description": effect,
        "parameters": [RECOMMENDATION_ID, IF_MATCH],
        "requestBody": body({"type": "object", "additionalProperties": False,
                             "properties": {"reason": ref("Reason")}},
                            {"reason": "p99 is over budget since the last deploy"},
                            required=False, description="optional: `{reason?}`"),
        "responses": {"200": answer("the recommendation and the config now live",
                                    ref("Decision"), headers=ETAG),
                      **errors("MalformedRequest", "Unauthorized", "NotFound", "Conflict",
                               "PayloadTooLarge", "InvalidInput")},
    }


PATHS: dict[str, Any] = {
    "/api/v1/config": {
        "get": {"operationId": "getConfig", "tags": TAG, "security": ADMIN,
                "summary": "The live tunables",
                "description": "`seq` is the last control event this node has applied; the "
                               "answer's `ETag` is `\"<seq>\"`. `parameters` holds the "
                               "effective value of every tunable (see "
                               "[configuration](configuration.md)).",
                "responses": {"200": answer("the config", ref("Config"), CONFIG_EXAMPLE,
                                            headers=ETAG), **errors("Unauthorized")}},
        "put": {"operationId": "changeConfig", "tags": TAG, "security": ADMIN,
                "summary": "Change the tunables, live",
                "description": PUT_DESCRIPTION,
                "parameters": [IF_MATCH],
                "requestBody": body({
                    "type": "object", "additionalProperties": False,
                    "anyOf": [{"required": ["level"]}, {"required": ["parameters"]}],
                    "description": "Give `level` and/or `parameters`.",
                    "properties": {"level": LEVEL, "parameters": ref("ParameterChanges"),
                                   "reason": ref("Reason")}},
                    {"parameters": {"batch_size": 20, "batch_timeout_ms": None},
                     "reason": "p99 over budget"}),
                "responses": {"200": answer("the new config", ref("Config"), headers=ETAG),
                              **errors("MalformedRequest", "Unauthorized", "Conflict",
                                       "PayloadTooLarge", "InvalidInput")}},
    },
    "/api/v1/config/rollback": {"post": {
        "operationId": "rollbackConfig", "tags": TAG, "security": ADMIN,
        "summary": "Roll the config back",
        "description": "The level and live overrides become what they were right after event "
                       "`to_seq` (`0`: before any event, the start-up settings). The rollback "
                       "is one more event, so it can itself be rolled back. `to_seq` above "
                       "the current `seq` is a 422; `If-Match` works as for `PUT`. Answers "
                       "the new config.",
        "parameters": [IF_MATCH],
        "requestBody": body({"type": "object", "additionalProperties": False,
                             "required": ["to_seq"],
                             "properties": {"to_seq": integer(
                                 description="the event to go back to (its `seq` in the "
                                             "history); `0`: the start-up settings"),
                                            "reason": ref("Reason")}},
                            {"to_seq": 3, "reason": "undo the batch experiment"}),
        "responses": {"200": answer("the new config", ref("Config"), headers=ETAG),
                      **errors("MalformedRequest", "Unauthorized", "Conflict",
                               "PayloadTooLarge", "InvalidInput")},
    }},
    "/api/v1/config/history": {"get": {
        "operationId": "configHistory", "tags": TAG, "security": ADMIN,
        "summary": "The audit trail",
        "description": "The last `limit` control events, newest last: who changed what, "
                       "when and why.",
        "parameters": [param("limit", "query", integer(1, HISTORY_MAX, default=HISTORY_DEFAULT),
                             f"1–{HISTORY_MAX} (default {HISTORY_DEFAULT}), else 422 "
                             "`field: limit`")],
        "responses": {"200": answer("the events", {
            "type": "object", "required": ["events"],
            "properties": {"events": {"type": "array", "items": ref("HistoryEvent")}}}, {
            "events": [{"seq": 3, "at": "2026-11-26T20:38:00.551234Z", "actor": "admin",
                        "type": "parameter_overridden", "reason": "p99 over budget",
                        "what": "batch_size=20; batch_timeout_ms=default",
                        "payload": {"batch_size": 20, "batch_timeout_ms": None}}]}),
            **errors("Unauthorized", "InvalidInput")},
    }},
    "/api/v1/config/at": {"get": {
        "operationId": "configAt", "tags": TAG, "security": ADMIN,
        "summary": "The config that was live at a time",
        "description": "`seq` is the last event at or before `t`. Start-up overrides are this "
                       "node's.",
        "parameters": [param("t", "query", {"type": "string", "format": "date-time"},
                             "ISO 8601, e.g. `2026-01-31T12:00:00Z`; no offset means UTC; a "
                             "bad or missing `t` is 422 `field: t`", required=True)],
        "responses": {"200": answer("the config then", ref("ConfigAt")),
                      **errors("Unauthorized", "InvalidInput")},
    }},
    "/api/v1/recommendations": {"get": {
        "operationId": "listRecommendations", "tags": TAG, "security": ADMIN,
        "summary": "Recommendations",
        "description": RECOMMENDATIONS_DESCRIPTION,
        "parameters": [ref("RecommendationStatus", "parameters")],
        "responses": {"200": answer("in the order issued", ref("RecommendationList")),
                      **errors("Unauthorized", "InvalidInput")},
    }},
    "/api/v1/recommendations/{recommendation_id}": {"get": {
        "operationId": "getRecommendation", "tags": TAG, "security": ADMIN,
        "summary": "One recommendation",
        "parameters": [RECOMMENDATION_ID],
        "responses": {"200": answer("the recommendation", ref("Recommendation")),
                      **errors("Unauthorized", "NotFound")},
    }},
    "/api/v1/recommendations/{recommendation_id}/apply": {"post": _decision(
        "apply", "Applies the change it carries, live on every node, as one "
                 "`recommendation_applied` event. Applying an applied one changes nothing "
                 "(200, `changed: false`); a dismissed one is a 409.")},
    "/api/v1/recommendations/{recommendation_id}/dismiss": {"post": _decision(
        "dismiss", "Closes it without applying (`recommendation_dismissed`). Dismissing a "
                   "dismissed one changes nothing (200, `changed: false`); an applied one is "
                   "a 409: roll the config back instead.")},
    "/api/v1/alerts/grafana": {"post": {
        "operationId": "grafanaAlert", "tags": TAG, "security": ADMIN_OR_WEBHOOK,
        "summary": "Grafana's alert webhook",
        "description": "For a Grafana webhook contact point, with a token of "
                       "`ALERT_WEBHOOK_TOKENS` as its bearer credentials: such a token "
                       "opens this route and no other, and its name is the actor recorded. "
                       "An admin token is taken too. Each alert is recorded as an `alert_received` "
                       "event (a repeat of one already recorded is not). A firing alert that "
                       "has a documented mitigation applies it, as one more control event, "
                       "and the answer names the rollback that undoes it.",
        "requestBody": body(ref("GrafanaWebhook"), GRAFANA_EXAMPLE),
        "responses": {"200": answer("what was recorded and done", ref("GrafanaAnswer"), {
            "received": 1, "recorded": 1, "repeats": 0, "events": [12],
            "mitigations": [{"alert": "NotifyMemoryCritical", "action": "level_set",
                             "level": "conservative", "applied": True, "seq": 13,
                             "undo": {"to_seq": 12}}]}),
            **errors("MalformedRequest", "Unauthorized", "PayloadTooLarge", "InvalidInput")},
    }},
}

SCHEMAS: dict[str, Any] = {
    "Config": CONFIG_SCHEMA,
    "ConfigAt": {**CONFIG_SCHEMA, "required": ["t", *CONFIG_PROPERTIES],
                 "description": "The config that was live at `t`, on this node's start-up "
                                "settings.",
                 "properties": {"t": {"type": "string", "format": "date-time",
                                      "description": "the time asked, in UTC"},
                                **CONFIG_PROPERTIES}},
    "HistoryEvent": HISTORY_EVENT,
    "Reason": REASON,
    "Recommendation": RECOMMENDATION,
    "RecommendationList": {"type": "object", "required": ["recommendations"],
                           "properties": {"recommendations": {
                               "type": "array", "items": ref("Recommendation")}}},
    "Decision": {"type": "object", "required": ["recommendation", "config"],
                 "properties": {"recommendation": ref("Recommendation"),
                                "config": ref("Config")}},
    "GrafanaWebhook": GRAFANA_WEBHOOK,
    "GrafanaAlert": ALERT,
    "GrafanaAnswer": GRAFANA_ANSWER,
    "Mitigation": MITIGATION,
}

PARAMETERS: dict[str, Any] = {
    "RecommendationStatus": param("status", "query", RECOMMENDATION_STATUS,
                                  "only those in this state (else 422 `field: status`)"),
}
