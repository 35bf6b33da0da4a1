"""What every recommendation rule shares: the proposal it gives, how sure it
is, and how a proposed value is kept within its tunable's range. Pure.
The rules are in ``advice`` (which holds ``RULES``) and ``advice_levers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.tuning import TUNABLES

Figures = Mapping[str, float | None]
Config = Mapping[str, Any]  # {"level": str, "parameters": {name: effective value}}
MIB = 2**20


@dataclass(frozen=True)
class Proposal:
    rule: str
    change: Mapping[str, Any]  # {"level": ...} or {"parameters": {name: value}}
    evidence: Mapping[str, float]
    expected_effect: str
    confidence: float  # 0-1: how far past its thresholds the evidence is

    @property
    def id(self) -> str:
        if "level" in self.change:
            return f"{self.rule}:level={self.change['level']}"
        (name, value), = self.change["parameters"].items()
        return f"{self.rule}:{name}={value}"

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, **self.change,
                "evidence": {k: round(v, 4) for k, v in self.evidence.items()},
                "expected_effect": self.expected_effect,
                "confidence": round(self.confidence, 2)}


def margin(value: float, threshold: float) -> float:
    """0.5 at the threshold, towards 1 as the value gets twice as far past it."""
    if threshold == 0:
        return 0.9
    return max(0.5, min(0.95, 0.5 + 0.45 * abs(value - threshold) / abs(threshold)))


def clamp(name: str, value: float) -> Any:
    t = TUNABLES[name]
    assert t.minimum is not None and t.maximum is not None, f"{name} has no range"
    return t.kind(min(t.maximum, max(t.minimum, value)))


def memory_share(f: Figures, config: Config) -> float | None:
    """The largest serving node's mean RSS over the memory budget."""
    rss = f.get("rss_node_max")
    return None if rss is None else rss / (config["parameters"]["memory_budget_mb"] * MIB)


def known(f: Figures, *names: str) -> tuple[float, ...] | None:
    """The figures named, or None if any is unknown."""
    values = tuple(v for name in names if (v := f.get(name)) is not None)
    return values if len(values) == len(names) else None
