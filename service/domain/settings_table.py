"""The settings table: every environment variable the service reads, one row
each (service.domain.setting), in the order docs/configuration.md lists
them. One module per area holds the rows; this one puts them together.

Derived from it: ``service.config.Settings`` and ``Settings.from_env``
(service.config_values reads each row), the tunables (service.domain.tuning:
the ``live`` rows, in this order), the level presets
(service.domain.levels: the rows with ``per_level``), the OpenAPI schema of
the config, and docs/configuration.md (service.entrypoints.config_doc).
Pure data.

A new setting is a row in its area's module and a field of the same name in
``Settings`` (a row of kind SPECIAL also needs its reader in
``service.config_values.SPECIAL``); then ``make docs``.
tests/unit/test_settings_table.py holds the table to the code.
"""

from __future__ import annotations

from typing import Any

from service.domain import (
    settings_access,
    settings_delivery,
    settings_node,
    settings_storage,
    settings_telemetry,
)
from service.domain.setting import DEFAULT_LEVEL, LEVEL_NAMES, Kind, Setting, Unit

__all__ = ["DEFAULT_LEVEL", "LEVEL_NAMES", "SECTIONS", "SETTINGS", "Kind", "Setting", "Unit",
           "defaults", "levelled", "live"]

# (title, rows): the sections of docs/configuration.md. The live rows come in
# the order the control API lists its parameters (delivery, then storage).
SECTIONS: tuple[tuple[str, tuple[Setting, ...]], ...] = tuple(
    (area.SECTION, area.SETTINGS) for area in (
        settings_node, settings_access, settings_delivery, settings_storage,
        settings_telemetry))

SETTINGS: dict[str, Setting] = {s.env: s for _, rows in SECTIONS for s in rows}
assert len(SETTINGS) == sum(len(rows) for _, rows in SECTIONS), "a variable is listed twice"


def live() -> list[Setting]:
    """The rows PUT /api/v1/config may change, in the API's order."""
    return [s for s in SETTINGS.values() if s.live]


def levelled() -> list[Setting]:
    """The rows an optimization level sets."""
    return [s for s in SETTINGS.values() if s.per_level is not None]


def defaults(level: str = DEFAULT_LEVEL) -> dict[str, Any]:
    """Every setting's value at a level, by name (``max_connections``)."""
    return {s.name: s.at(level) for s in SETTINGS.values()}
