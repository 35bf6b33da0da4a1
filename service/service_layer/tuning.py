"""Changing the tunable parameters of a running node, without dropping a
connection: validate against ``service.domain.tuning``, then hand the new
values to the components (the wiring decides which component takes which)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from service.domain.errors import InvalidInput
from service.domain.tuning import check_level, check_parameters, effective
from service.service_layer.ports import Telemetry

log = logging.getLogger(__name__)
_FIELDS = frozenset({"level", "parameters", "reason"})


class LiveConfig:
    def __init__(self, level: str, startup: Mapping[str, Any],
                 apply: Callable[[dict[str, Any]], None], telemetry: Telemetry | None) -> None:
        self.level = level
        self.startup = dict(startup)  # set by environment variables at start-up
        self.overrides: dict[str, Any] = {}  # set live
        self.values = effective(level, self.startup)
        self._apply = apply
        self._telemetry = telemetry

    def snapshot(self) -> dict[str, Any]:
        return {"level": self.level, "parameters": dict(self.values),
                "overrides": dict(self.overrides), "startup_overrides": dict(self.startup)}

    def change(self, body: Any, actor: str = "admin") -> dict[str, Any]:
        """``{level?, parameters?: {name: value | null}, reason?}``: a level
        swaps the presets; a parameter overrides one (null removes the override)."""
        if not isinstance(body, Mapping) or not body or not set(body) & {"level", "parameters"}:
            raise InvalidInput("give level and/or parameters", field="body")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
        level = check_level(body["level"]) if "level" in body else self.level
        overrides = {**self.overrides, **check_parameters(body.get("parameters", {}))}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        values = effective(level, self.startup, overrides)
        changed = {k: v for k, v in values.items() if self.values[k] != v}
        self._apply(values)
        previous_level = self.level
        self.level, self.overrides, self.values = level, overrides, values
        text = self._describe(previous_level, changed, body.get("reason"))
        log.info("config changed by %s: %s", actor, text)
        if self._telemetry is not None:
            kind = "level" if level != previous_level else "parameter"
            self._telemetry.emit("config_change", (("kind", kind),),
                                 {"level": level, "text": text, "actor": actor})
        return self.snapshot()

    def _describe(self, previous_level: str, changed: dict[str, Any], reason: Any) -> str:
        parts = [f"level {previous_level} -> {self.level}"] if previous_level != self.level else []
        parts += [f"{k}={v}" for k, v in changed.items()]
        text = "; ".join(parts) or "no change"
        return f"{text} ({str(reason)[:200]})" if reason else text
