"""Running one scheduled job: under its cluster-wide lock, timed, with its
outcome recorded in telemetry (``job_run``) and its errors logged.

``run_job`` never raises (but for the scheduler's own kills, which are not
``Exception``): the scheduler calls it on every tick, and one bad run must not
stop the next. Several nodes may schedule the same job; the lock lets one run
it at a time and the others record ``skipped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.service_layer.ports import JobLock, Telemetry

log = logging.getLogger(__name__)

OK, ERROR, SKIPPED = "ok", "error", "skipped"
ERROR_TEXT_MAX = 300  # characters of "Type: message" kept in job_run's ``error``


@dataclass(frozen=True)
class JobSpec:
    """A job: ``run`` does one run and returns how many items it produced
    (points, events); it raises when the run failed. ``name`` is the lock's
    name and the ``job`` tag (``job_names.JOB_NAMES``)."""

    name: str
    interval_s: float
    run: Callable[[], int]

    def __post_init__(self) -> None:
        if not self.name or self.interval_s <= 0:
            raise ValueError(f"job {self.name!r}: a name and a positive interval are needed")


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_TEXT_MAX else text[:ERROR_TEXT_MAX - 1] + "…"


def run_job(spec: JobSpec, lock: JobLock, telemetry: Telemetry | None,
            clock: Callable[[], float] = time.perf_counter) -> str:
    """Run ``spec`` once if its lock is free; return ``ok``, ``error`` or
    ``skipped``. A lock that cannot be taken because its store is down is an
    ``error`` too."""
    started = clock()
    items = 0
    failure: Exception | None = None
    try:
        with lock.hold(spec.name) as held:
            if held:
                items = int(spec.run())
    except Exception as exc:
        failure = exc
        held = True
    duration_ms = (clock() - started) * 1000.0
    outcome = ERROR if failure is not None else OK if held else SKIPPED
    fields: dict[str, object] = {"duration_ms": duration_ms,
                                 "items": items if outcome == OK else 0}
    if failure is not None:
        fields["error"] = error_text(failure)
        log.error("job %s failed after %.0f ms", spec.name, duration_ms, exc_info=failure)
    elif outcome == SKIPPED:
        log.debug("job %s skipped: another node holds its lock", spec.name)
    else:
        log.debug("job %s: %d items in %.0f ms", spec.name, items, duration_ms)
    if telemetry is not None:
        telemetry.emit("job_run", (("job", spec.name), ("outcome", outcome)), fields)
    return outcome
