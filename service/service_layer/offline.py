"""The offline queue's bounds, applied in the background.

The offline queue is the unacknowledged tail of each user's stream (the log
keeps it; nothing is held in memory). A user who never comes back must not
grow it forever, so every ``interval`` the streams are trimmed to the
newest ``keep`` entries and to ``max_age_s``, oldest first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent

from service.domain.errors import StorageUnavailable
from service.service_layer.ports import StreamTrimmer, Telemetry, TrimResult

log = logging.getLogger(__name__)


def trim_offline_queues(trimmer: StreamTrimmer, *, keep: int, max_age_s: float | None,
                        telemetry: Telemetry | None) -> TrimResult:
    started = time.perf_counter()
    result = trimmer.trim(keep, max_age_s)
    if result.skipped or not result.streams:
        return result
    duration_ms = (time.perf_counter() - started) * 1000.0
    log.info("offline queues trimmed: %d entries of %d streams (%d not acknowledged)",
             result.entries, result.streams, result.unacked)
    if telemetry is not None:
        telemetry.emit("notify_offline_trim", (), {
            "streams": result.streams, "entries": result.entries, "unacked": result.unacked,
            "messages": result.messages, "epochs_bumped": result.epochs_bumped,
            "duration_ms": duration_ms})
    return result


def run_offline_trimmer(trimmer: StreamTrimmer, *, interval: float, keep: Callable[[], int],
                        max_age_s: float | None, telemetry: Telemetry | None) -> None:
    """For sio.start_background_task: trim every ``interval`` seconds, to
    ``keep()`` entries (read each time: the level may change)."""
    while True:
        gevent.sleep(interval)
        try:
            trim_offline_queues(trimmer, keep=keep(), max_age_s=max_age_s,
                                telemetry=telemetry)
        except StorageUnavailable as exc:
            log.warning("offline queue trim skipped: %s", exc)
        except Exception:  # never let one bad run stop the bounds for good
            log.exception("offline queue trim failed")
