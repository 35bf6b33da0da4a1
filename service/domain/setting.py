"""One row of the settings table (service.domain.settings_table): what a
setting is called, how it is given, what it may be and what it means.

Everything else about a setting is derived from its row: the field of
``service.config.Settings`` and how ``Settings.from_env`` reads it, the
tunables the control API may change (``service.domain.tuning``), the level
presets (``service.domain.levels``), the OpenAPI schema of the config, and
docs/configuration.md. Pure data: no I/O, no parsing of the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

# The optimization levels, from lowest latency to most throughput per CPU.
LEVEL_NAMES: tuple[str, ...] = ("conservative", "balanced", "aggressive", "maximum")
DEFAULT_LEVEL = "balanced"  # OPTIMIZATION_LEVEL unset: a setting's default is this level's


class Kind(Enum):
    """How a variable's text is read (service.config_values does the reading)."""

    INT = "integer"  # a whole number, not negative
    FLOAT = "number"  # a number of seconds, milliseconds...: positive (0 allowed if minimum is 0)
    # `1` or `0`: a flag off by default is on only at `1`; one on by default, off only at `0`
    FLAG = "flag"
    TEXT = "text"  # taken as given
    RATES = "rates"  # per priority, `priority=RATE:BURST` or `priority=off` (THROTTLE)
    LIMIT = "limit"  # `RATE:BURST`, or `0` for no limit (the Socket.IO rate limits)
    DURATION = "duration"  # an InfluxQL duration: `12h`, `7d`, `52w` or `INF`
    SPECIAL = "special"  # read by its own function in service.config_values


class Unit(Enum):
    """What a number counts: the docs show it in a readable form too."""

    NONE = ""
    BYTES = "bytes"
    SECONDS = "s"
    MILLISECONDS = "ms"
    MEGABYTES = "MB"


@dataclass(frozen=True)
class Setting:
    """A setting. ``default`` is the value when the variable is unset; a
    setting with ``per_level`` takes its default from the optimization level
    instead (one value per level of LEVEL_NAMES)."""

    env: str  # the environment variable
    kind: Kind
    meaning: str  # markdown: one cell of the docs' table
    default: Any = None
    per_level: tuple[Any, ...] | None = None
    minimum: float | None = None  # the range a value must lie in (a live one: the control API's)
    maximum: float | None = None
    live: bool = False  # changed at run time through PUT /api/v1/config
    # a value below this is raised to it without an error (it was always so)
    floor: float | None = None
    # the maximum is checked as "must be at most", before the range (a float
    # a level does not set, and WRITE_BATCH_WINDOW_MS: their messages say so)
    capped: bool = False
    unit: Unit = Unit.NONE
    shown_default: str = ""  # the docs' default where the value alone would not say it
    read_by: str = ""  # the module that reads it, where the row-by-row reading does not

    def __post_init__(self) -> None:
        if self.per_level is not None and len(self.per_level) != len(LEVEL_NAMES):
            raise ValueError(f"{self.env}: one value per level, {len(LEVEL_NAMES)}")
        if self.live and self.kind not in (Kind.INT, Kind.FLOAT, Kind.RATES):
            raise ValueError(f"{self.env}: only numbers and rates are live")
        if self.live and self.kind is not Kind.RATES and None in (self.minimum, self.maximum):
            raise ValueError(f"{self.env}: a live number needs its range")

    @property
    def name(self) -> str:
        """The setting's name: the Settings field, and the tunable's name."""
        return self.env.lower()

    @property
    def value(self) -> Any:
        """The default: the default level's value for a setting a level sets."""
        return self.at(DEFAULT_LEVEL)

    def at(self, level: str) -> Any:
        """The value at an optimization level (the default where no level sets it)."""
        if self.per_level is None:
            return self.default
        return self.per_level[LEVEL_NAMES.index(level)]
