"""The parameters an admin may change at run time, with their allowed ranges:
the live rows of the settings table (service.domain.settings_table).

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
from service.domain.model import Priority
from service.domain.settings_table import LEVEL_NAMES, SETTINGS, Kind, Setting, live
from service.domain.token_bucket import Rate, format_rates, parse_rates


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
        if self.minimum is None or self.maximum is None:
            raise TypeError(f"{self.name}: a number needs its range")  # the table says it
        if not self.minimum <= value <= self.maximum:
            raise InvalidInput(
                f"{self.name} must be between {self.minimum:g} and {self.maximum:g}, "
                f"not {value:g}", field=field)
        return self.kind(value)


def _parse_throttle(value: str, field: str) -> dict[Priority, Rate | None]:
    try:
        return parse_rates(value, SETTINGS["THROTTLE"].value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from None


_KINDS: dict[Kind, type] = {Kind.INT: int, Kind.FLOAT: float, Kind.RATES: str}


def _tunable(setting: Setting) -> Tunable:
    return Tunable(setting.name, setting.env, _KINDS[setting.kind], setting.minimum,
                   setting.maximum, None if setting.per_level else setting.default)


# the settings table's live rows (service.domain.settings_table), in its order
TUNABLES: dict[str, Tunable] = {s.name: _tunable(s) for s in live()}


def preset(level: str) -> dict[str, Any]:
    """The level's value of every tunable (a default where no level sets one)."""
    values: dict[str, Any] = {}
    for setting in live():
        value = setting.at(level)
        values[setting.name] = format_rates(value) if setting.kind is Kind.RATES else value
    return values


def check_level(level: Any) -> str:
    if not isinstance(level, str) or level not in LEVEL_NAMES:
        raise InvalidInput(f"level must be one of {', '.join(LEVEL_NAMES)}", field="level")
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
