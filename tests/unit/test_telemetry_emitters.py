"""The catalogue's ``emitted_by`` against the code: every place that emits,
tallies or writes a measurement is found by reading the source, and each
measurement must name exactly the modules that do, with paths that exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from service.domain import measurements
from service.domain.measurements import CATALOGUE, TallySpec

SERVICE = Path(measurements.__file__).parents[2]
TALLY_CONSTANTS = {name: spec.measurement for name, spec in vars(measurements).items()
                   if isinstance(spec, TallySpec)}
# telemetry.emit("m", ...), telemetry.tally(SPEC, ...), DataPoint("m", ...), encode("m", ...)
EMITS = re.compile(r"(?:\.emit|\.tally|\bDataPoint|\bencode)\(\s*"
                   r"(?:\"([a-z][a-z_0-9]*)\"|([A-Z][A-Z_0-9]*)\b)")


def emitters_in_code() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SERVICE.rglob("*.py"):
        module = ".".join(path.relative_to(SERVICE).with_suffix("").parts)
        for match in EMITS.finditer(path.read_text()):
            name = match.group(1) or TALLY_CONSTANTS.get(match.group(2))
            if name in CATALOGUE:
                found.setdefault(name, set()).add(module)
    return found


def resolve(dotted: str) -> str:
    """The module part of ``dotted`` (relative to ``service``), checking that
    what follows it exists in that module."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("service." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)  # AttributeError: a name that is not there
        return ".".join(parts[:cut])
    raise AssertionError(f"{dotted}: no such module under service/")


FOUND = emitters_in_code()


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_emitted_by_names_the_modules_that_emit_it(name):
    declared = {resolve(part.strip()) for part in CATALOGUE[name].emitted_by.split(",")}
    assert declared == FOUND.get(name, set())


def test_the_search_finds_emitters_of_each_kind():
    # a check of the check: a literal emit, a tally constant, a DataPoint and an encode
    assert "service_layer.backpressure" in FOUND["notify_backpressure"]
    assert "service_layer.acks" in FOUND["notify_ack"]
    assert FOUND["analysis_trend"] == {"service_layer.trend_job"}
    assert FOUND["analysis_regression"] == {"adapters.influx_analysis_writer"}
