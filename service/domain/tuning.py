"""The parameters an admin may change at run time, with their allowed ranges.

The effective value of each is, by precedence: a live override (set through
the control API), else an environment variable given at start-up, else the
optimization level's preset. Changing the level swaps the presets and keeps
the overrides. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.errors import InvalidInput
from service.domain.levels import LEVELS
from service.domain.throttle import format_rates, parse_rates


@dataclass(frozen=True)
class Tunable:
    name: str
    env: str  # the environment variable that sets it at start-up
    kind: type  # int, float or str
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None  # for parameters no level sets

    def check(self, value: Any) -> Any:
        """The value, converted, or InvalidInput naming the parameter."""
        field = f"parameters.{self.name}"
        if self.kind is str:
            if not isinstance(value, str):
                raise InvalidInput(f"{self.name} must be a string", field=field)
            _parse_throttle(value, field)  # to refuse it now, naming it
            return value.strip()
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                self.kind is int and not float(value).is_integer()):
            expected = "an integer" if self.kind is int else "a number"
            raise InvalidInput(f"{self.name} must be {expected}", field=field)
        if not self.minimum <= value <= self.maximum:
            raise InvalidInput(
                f"{self.name} must be between {self.minimum:g} and {self.maximum:g}, "
                f"not {value:g}", field=field)
        return self.kind(value)


def _parse_throttle(value: str, field: str) -> dict:
    try:
        return parse_rates(value, LEVELS["balanced"].throttle)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from None


TUNABLES: dict[str, Tunable] = {t.name: t for t in (
    Tunable("batch_size", "BATCH_SIZE", int, 1, 1_000),
    Tunable("batch_timeout_ms", "BATCH_TIMEOUT_MS", float, 1, 1_000),
    Tunable("max_connections", "MAX_CONNECTIONS", int, 1, 1_000_000),
    Tunable("max_connections_per_user", "MAX_CONNECTIONS_PER_USER", int, 1, 10_000),
    Tunable("send_queue_max_bytes", "SEND_QUEUE_MAX_BYTES", int, 16 * 1024, 1 << 30),
    Tunable("throttle", "THROTTLE", str),
    Tunable("gc_gen0_threshold", "GC_GEN0_THRESHOLD", int, 100, 10_000_000),
    Tunable("offline_queue_max", "OFFLINE_QUEUE_MAX", int, 1, 10_000_000),
    Tunable("memory_budget_mb", "MEMORY_BUDGET_MB", int, 16, 1 << 20),
    Tunable("idle_timeout", "IDLE_TIMEOUT", float, 1, 7 * 86_400, default=300.0),
    Tunable("compression_min_bytes", "COMPRESSION_MIN_BYTES", int, 0, 1 << 24, default=4096),
    Tunable("write_batch_size", "WRITE_BATCH_SIZE", int, 1, 10_000),
    Tunable("write_batch_window_ms", "WRITE_BATCH_WINDOW_MS", float, 0, 100, default=0.0),
    # 0 entries turns the query cache off; the byte bound is split 7:1 (user:global)
    Tunable("cache_entries", "CACHE_ENTRIES", int, 0, 1_000_000),
    Tunable("cache_ttl_s", "CACHE_TTL_S", float, 1, 7 * 86_400),
    Tunable("cache_max_bytes", "CACHE_MAX_BYTES", int, 0, 1 << 34, default=64 << 20),
    Tunable("cache_compress_min_bytes", "CACHE_COMPRESS_MIN_BYTES", int, 0, 1 << 24,
            default=2048),
)}


def preset(level: str) -> dict[str, Any]:
    """The level's value of every tunable (a default where no level sets one)."""
    values = {}
    for name, tunable in TUNABLES.items():
        value = getattr(LEVELS[level], name, tunable.default)
        values[name] = format_rates(value) if name == "throttle" else value
    return values


def check_level(level: Any) -> str:
    if not isinstance(level, str) or level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}", field="level")
    return level


def check_parameters(parameters: Any) -> dict[str, Any]:
    """Validate a ``{name: value}`` object; ``None`` removes a live override."""
    if not isinstance(parameters, Mapping):
        raise InvalidInput("parameters must be an object {name: value}", field="parameters")
    unknown = sorted(set(parameters) - set(TUNABLES))
    if unknown:
        raise InvalidInput(f"unknown parameter(s): {', '.join(unknown)}; tunable: "
                           f"{', '.join(TUNABLES)}", field=f"parameters.{unknown[0]}")
    return {name: None if value is None else TUNABLES[name].check(value)
            for name, value in parameters.items()}


def effective(level: str, *overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The level's presets with each layer of overrides applied in turn. A
    throttle override names only some priorities (``low=off``): the others
    keep what the layers below give them."""
    values = preset(level)
    for layer in overrides:
        for name, value in layer.items():
            if value is None:
                continue
            if name == "throttle":
                value = format_rates(parse_rates(value, parse_rates(values[name], {})))
            values[name] = value
    return values
