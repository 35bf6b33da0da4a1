"""Grafana's notification policy tree (provisioning/alerting/policies.yml),
routed as Alertmanager routes, which Grafana's embedded Alertmanager is.

From prometheus/alertmanager dispatch/route.go:

- ``NewRoute``: a route starts from its parent's options, so a child without
  a ``receiver`` (or ``group_by``...) inherits its parent's;
- ``Match``: an alert that the route's matchers do not match gets nothing;
  otherwise its children are tried in order, each match is kept, and the
  search stops at the first child that matched unless that child has
  ``continue: true``; only when no child matched is the route itself the
  match.

Matchers are Grafana's provisioning forms: ``object_matchers`` (``[name, op,
value]``), ``matchers`` (``"name=value"`` strings) and the old ``match`` /
``match_re`` maps. A missing label is the empty string; regexes are anchored
(alertmanager pkg/labels, Matcher).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Matcher = tuple[str, str, str]


@dataclass
class Route:
    receiver: str
    matchers: list[Matcher] = field(default_factory=list)
    continue_: bool = False
    routes: list[Route] = field(default_factory=list)


def _matchers(policy: dict) -> list[Matcher]:
    found: list[Matcher] = [tuple(m) for m in policy.get("object_matchers") or []]
    for text in policy.get("matchers") or []:
        match = re.fullmatch(r'\s*([\w.]+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*', text)
        if not match:
            raise ValueError(f"matcher {text!r}")
        found.append((match[1], match[2], match[3]))
    found += [(k, "=", v) for k, v in (policy.get("match") or {}).items()]
    found += [(k, "=~", v) for k, v in (policy.get("match_re") or {}).items()]
    for name, op, _ in found:
        if op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"{name}: operator {op!r}")
    return found


def build(policy: dict, parent: Route | None = None) -> Route:
    receiver = policy.get("receiver") or (parent.receiver if parent else "")
    route = Route(receiver=receiver, matchers=_matchers(policy),
                  continue_=bool(policy.get("continue", False)))
    route.routes = [build(child, route) for child in policy.get("routes") or []]
    return route


def _matches(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    for name, op, value in matchers:
        actual = labels.get(name, "")
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op == "=~" and not re.fullmatch(f"(?:{value})", actual):
            return False
        if op == "!~" and re.fullmatch(f"(?:{value})", actual):
            return False
    return True


def match(route: Route, labels: dict[str, str]) -> list[Route]:
    """Alertmanager's Route.Match, line by line."""
    if not _matches(route.matchers, labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        matches = match(child, labels)
        found += matches
        if matches and not child.continue_:
            break
    if not found:
        found.append(route)
    return found


def receivers(policy: dict, labels: dict[str, str]) -> list[str]:
    """The contact points an alert with ``labels`` is sent to, in order."""
    return [route.receiver for route in match(build(policy), labels)]
