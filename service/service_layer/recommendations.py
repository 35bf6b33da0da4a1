"""Recommendations: listed, applied and dismissed through the control log.

A recommendation is issued (by the analysis jobs) as an event that carries
the change it proposes; applying it appends ``recommendation_applied`` with
that change, which the config projection folds in on every node. Deciding is
idempotent: applying an applied one (or dismissing a dismissed one) appends
nothing and answers its state. Two nodes deciding at once are serialised by
the log's sequence number: each appends only if the log is still where it
read the state, else it reads again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.domain.control import (
    RECOMMENDATION_APPLIED,
    RECOMMENDATION_DISMISSED,
    EventDraft,
    Recommendation,
    format_at,
    recommendation_states,
)
from service.domain.errors import ConflictError, InvalidInput, NotFound
from service.service_layer.live_config import LiveConfig, reason_text

STATUSES = ("issued", "applied", "dismissed")
DECIDE_ATTEMPTS = 5  # re-reads after a concurrent append before giving up with 409


def list_recommendations(config: LiveConfig, status: str | None = None) -> list[dict[str, Any]]:
    """Every recommendation in the order issued, or those in ``status``."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    states = recommendation_states(config.events()).values()
    return [as_dict(r) for r in states if status is None or r.status == status]


def get_recommendation(config: LiveConfig, recommendation_id: str) -> dict[str, Any]:
    return as_dict(_find(recommendation_states(config.events()), recommendation_id))


def apply_recommendation(config: LiveConfig, recommendation_id: Any, actor: str,
                         reason: Any = None,
                         expected_seq: int | None = None) -> dict[str, Any]:
    """Apply the change it carries. 404 if never issued, 409 if dismissed."""
    return _decide(config, RECOMMENDATION_APPLIED, recommendation_id, actor, reason,
                   expected_seq)


def dismiss_recommendation(config: LiveConfig, recommendation_id: Any, actor: str,
                           reason: Any = None,
                           expected_seq: int | None = None) -> dict[str, Any]:
    """Close it without applying. 404 if never issued, 409 if applied."""
    return _decide(config, RECOMMENDATION_DISMISSED, recommendation_id, actor, reason,
                   expected_seq)


def _decide(config: LiveConfig, kind: str, recommendation_id: Any, actor: str,
            reason: Any, expected_seq: int | None) -> dict[str, Any]:
    if not isinstance(recommendation_id, str) or not recommendation_id.strip():
        raise InvalidInput("recommendation_id must be a non-empty string",
                           field="recommendation_id")
    reason = reason_text(reason)
    wanted = "applied" if kind == RECOMMENDATION_APPLIED else "dismissed"
    for _attempt in range(DECIDE_ATTEMPTS):
        events = config.events()
        current = _find(recommendation_states(events), recommendation_id)
        if current.status == wanted:
            return {**as_dict(current), "changed": False}
        if current.status != "issued":
            undo = "roll the config back" if current.status == "applied" else "issue it again"
            raise ConflictError(f"recommendation {recommendation_id} is already "
                                f"{current.status}; {undo} instead", field="recommendation_id")
        payload = dict(current.issued) if kind == RECOMMENDATION_APPLIED else {
            "id": recommendation_id}
        draft = EventDraft(kind, payload, actor, reason)
        seen = events[-1].seq if events else 0
        try:
            # the caller's If-Match, else where we read: a concurrent decision
            # on another node makes this one read again, never apply twice
            config.append([draft], seen if expected_seq is None else expected_seq)
        except ConflictError:
            if expected_seq is not None:
                raise
            continue
        return {**get_recommendation(config, recommendation_id), "changed": True}
    raise ConflictError("the control log kept moving; try again", field="recommendation_id")


def _find(states: Mapping[str, Recommendation], recommendation_id: str) -> Recommendation:
    found = states.get(recommendation_id)
    if found is None or found.issued_at is None:
        raise NotFound(f"no recommendation {recommendation_id!r} was issued",
                       field="recommendation_id")
    return found


def as_dict(r: Recommendation) -> dict[str, Any]:
    """The issuing payload (change, evidence, expected effect, confidence) and
    the decision, if any."""
    issued = {k: v for k, v in r.issued.items() if k != "id"}
    return {
        "id": r.id,
        "status": r.status,
        "issued_at": format_at(r.issued_at) if r.issued_at else None,
        **issued,
        "decided_at": format_at(r.decided_at) if r.decided_at else None,
        "decided_by": r.decided_by,
        "decision_reason": r.reason or None,
    }
