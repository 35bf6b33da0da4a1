"""The background writer: drains the telemetry ring into InfluxDB.

It runs as one greenlet. Each round it takes up to ``batch_size`` records,
encodes them as line protocol from the catalogue, gzips them and POSTs them
to /write. Delivery never waits for it: if InfluxDB is slow or down, only
this greenlet waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import gevent

from service.adapters.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from service.adapters.line_protocol import SchemaError, encode
from service.service_layer.telemetry import TelemetryRing

log = logging.getLogger(__name__)


class TagLimiter:
    """Keeps tag cardinality bounded: after ``limit`` distinct values of one
    tag, new values are written as ``other``."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._seen: dict[tuple[str, str], set[str]] = {}

    def __call__(self, measurement: str, tags: Mapping[str, str]) -> Mapping[str, str]:
        if not tags:
            return tags
        out = dict(tags)
        for key, value in tags.items():
            seen = self._seen.setdefault((measurement, key), set())
            if value not in seen:
                if len(seen) >= self.limit:
                    out[key] = "other"
                    continue
                seen.add(value)
        return out


class InfluxWriter:
    def __init__(
        self,
        ring: TelemetryRing,
        client: InfluxClient,
        common_tags: Mapping[str, str],
        *,
        batch_size: int = 5000,
        interval: float = 1.0,
        self_report_every: float = 10.0,
    ) -> None:
        self._ring = ring
        self._client = client
        self._common_tags = dict(common_tags)
        self._batch_size = batch_size
        self._interval = interval
        self._self_report_every = self_report_every
        self._limit_tags = TagLimiter()
        self._running = False
        self._database_ready = False
        self.written = 0
        self.spooled = 0
        self.dropped = 0
        self.dropped_by_reason: dict[str, int] = {}
        self.last_error: str | None = None
        self.last_success: float | None = None

    @property
    def reachable(self) -> bool:
        return self.last_error is None

    def run(self) -> None:
        """Loop until stop(); meant for sio.start_background_task or gevent.spawn."""
        self._running = True
        next_report = time.monotonic()
        while self._running:
            if time.monotonic() >= next_report:
                self.report_self()
                next_report = time.monotonic() + self._self_report_every
            if len(self._ring) < self._batch_size:
                gevent.sleep(self._interval)
            self.flush()

    def stop(self) -> None:
        self._running = False

    def report_self(self) -> None:
        self._ring.emit(
            "telemetry_self",
            {},
            {
                "emitted": self._ring.emitted,
                "written": self.written,
                "spooled": self.spooled,
                "dropped": self.total_dropped,
            },
        )

    @property
    def total_dropped(self) -> int:
        return self.dropped + self._ring.dropped_full

    def flush(self) -> int:
        """Write one batch; return how many records it carried."""
        records = self._ring.drain(self._batch_size)
        if not records:
            return 0
        lines = []
        for measurement, tags, fields, ts in records:
            try:
                lines.append(
                    encode(
                        measurement,
                        self._limit_tags(measurement, tags),
                        fields,
                        ts,
                        self._common_tags,
                    )
                )
            except (SchemaError, TypeError, ValueError) as exc:
                self._drop(1, "schema", str(exc))
        if lines:
            self._write(lines)
        return len(records)

    def _write(self, lines: list[str]) -> None:
        try:
            if not self._database_ready:
                self._client.ensure_database()
                self._database_ready = True
            self._client.write_lines(lines)
        except InfluxUnavailable as exc:
            # Durable spooling comes with the telemetry issue; until then the
            # loss is counted, never silent.
            self._drop(len(lines), "unavailable", str(exc))
            return
        except InfluxRejected as exc:
            self._drop(len(lines), "rejected", str(exc))
            return
        self.written += len(lines)
        self.last_error = None
        self.last_success = time.time()

    def _drop(self, count: int, reason: str, detail: str) -> None:
        if self.last_error != detail:
            log.warning("telemetry: dropped %d record(s) (%s): %s", count, reason, detail)
        if reason != "schema":
            self.last_error = detail
        self.dropped += count
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + count
