"""The background writer: drains the telemetry ring into InfluxDB.

One greenlet. Each round it takes up to ``batch_size`` records, encodes them
as line protocol from the catalogue, gzips them and POSTs them to /write.
Delivery never waits for it: if InfluxDB is slow or down, only this greenlet
waits, and batches go to the disk spool until InfluxDB answers again.

- Unreachable or 5xx: the batch is spooled; retries follow a capped
  exponential backoff with jitter. Spooled batches are replayed oldest first,
  and new batches queue behind them, so the order is kept.
- 4xx: the batch itself is wrong (or the credentials are). A partial write
  (400) keeps InfluxDB's valid points and counts the rest as dropped; other
  4xx answers are retried ``max_rejections`` times, then dropped and counted.
- Replays never duplicate: every point keeps the exact timestamp it was
  emitted with, so writing a batch twice overwrites it with itself.
- Every write names the ``raw`` retention policy (``RAW_POLICY``): on
  InfluxDB 2.x a write without one goes to the default DBRP mapping, whatever
  that is. A write refused because the policy is missing (a database made by
  someone else, or a policy dropped since) runs ``prepare`` (which makes the
  policies) and is tried once more at once; refused again, it is a 4xx as above.
"""

from __future__ import annotations

import gzip
import logging
import random
import re
import time
from collections.abc import Callable, Mapping

import gevent

from service.adapters.influx import (
    RAW_POLICY,
    InfluxClient,
    InfluxRejected,
    InfluxUnavailable,
)
from service.adapters.line_protocol import LineEncoder, SchemaError
from service.adapters.telemetry_spool import DiskSpool, Segment
from service.service_layer.telemetry import TelemetryRing

log = logging.getLogger(__name__)
_PARTIAL = re.compile(r"dropped=(\d+)")


class Backoff:
    """Capped exponential backoff with jitter: base·2ⁿ, at most ``cap``,
    each delay drawn from [½, 1] of that so that nodes do not retry in step."""

    def __init__(self, base: float = 0.5, cap: float = 30.0,
                 rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self._rng = base, cap, rng
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self.failures = 0


class InfluxWriter:
    def __init__(
        self,
        ring: TelemetryRing,
        client: InfluxClient,
        common_tags: Mapping[str, str],
        *,
        spool: DiskSpool | None = None,
        batch_size: int = 5000,
        interval: float = 1.0,
        self_report_every: float = 10.0,
        backoff: Backoff | None = None,
        max_rejections: int = 3,
        prepare: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ring = ring
        self._client = client
        self._spool = spool
        self._batch_size = batch_size
        self._interval = interval
        self._self_report_every = self_report_every
        self._backoff = backoff or Backoff()
        self._max_rejections = max_rejections
        self._prepare = prepare or client.ensure_database
        self._clock = clock
        self._encoder = LineEncoder(common_tags)
        self._running = False
        self._prepared = False
        self._retry_at = 0.0
        self._rejections: dict[int, int] = {}
        self.written = 0
        self.spooled = 0
        self.dropped = 0
        self.dropped_by_reason: dict[str, int] = {}
        self.posts = 0
        self.in_flight = 0
        self._pending: gevent.Greenlet | None = None
        self.last_error: str | None = None
        self.last_write_ms: float = 0.0

    # -- status -------------------------------------------------------------
    @property
    def total_dropped(self) -> int:
        return self.dropped + self._ring.dropped_full

    @property
    def spool_bytes(self) -> int:
        return self._spool.bytes if self._spool is not None else 0

    @property
    def backlog(self) -> int:
        """Lines waiting in the spool."""
        return self._spool.lines if self._spool is not None else 0

    # -- loop -----------------------------------------------------------------
    def run(self) -> None:
        """Loop until stop(); for sio.start_background_task or gevent.spawn."""
        self._running = True
        next_report = self._clock()
        while self._running:
            if self._clock() >= next_report:
                self.report_self()
                next_report = self._clock() + self._self_report_every
            if len(self._ring) < self._batch_size:
                gevent.sleep(self._interval)
            try:
                self.step(wait=False)
            except Exception:  # keep the writer alive: telemetry must not stop for good
                log.exception("telemetry: writer round failed")
        self.join()

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        """Write (or spool) everything still in memory; for shutdown."""
        self._running = False
        self.join()
        self.report_self()
        while len(self._ring):
            self.step(replay=False)
        if self._spool is not None and len(self._spool) and self._clock() >= self._retry_at:
            self._replay()

    def report_self(self) -> None:
        reasons = dict(self.dropped_by_reason)
        if self._ring.dropped_full:
            reasons["ring_full"] = self._ring.dropped_full
        for reason, count in reasons.items():
            self._ring.emit("telemetry_dropped", (("reason", reason),), {"count": count})
        self._ring.emit(
            "telemetry_self",
            (),
            {
                "emitted": self._ring.emitted,
                "written": self.written,
                "spooled": self.spooled,
                "dropped": self.total_dropped,
                "queued": len(self._ring),
                "spool_bytes": self.spool_bytes,
                "write_ms": self.last_write_ms,
            },
        )

    def step(self, *, replay: bool = True, wait: bool = True) -> int:
        """One round: write (or spool) one batch, then replay the spool if due.
        Returns how many records left the ring.

        With ``wait=False`` (the run loop) the POST runs in its own greenlet
        while the next round encodes the next batch, so encoding overlaps
        InfluxDB's work; POSTs still go out one at a time, in order.
        """
        self._ring.flush_tallies()
        records = self._ring.drain(self._batch_size)
        body, lines = self._encode(records) if records else (b"", 0)
        self.in_flight += lines  # neither in the ring nor in the spool until delivered
        self.join()
        if lines:
            if wait:
                self._deliver(body, lines)
            else:
                self._pending = gevent.spawn(self._deliver, body, lines)
                gevent.sleep(0)  # let the POST go out before the next batch is encoded
        if replay and self._spool is not None and len(self._spool):
            if self._clock() >= self._retry_at:
                self.join()
                self._replay()
        return len(records)

    def join(self) -> None:
        """Wait for the POST in flight, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.join()

    # -- internals ------------------------------------------------------------
    def _encode(self, records: list) -> tuple[bytes, int]:
        encode = self._encoder.encode
        try:  # the common case, in one loop
            lines = self._encoder.encode_many(records)
        except (SchemaError, KeyError, TypeError, ValueError):
            lines = []  # a bad record: once more, one by one, dropping what fails
            for measurement, tags, fields, ts in records:
                try:
                    lines.append(encode(measurement, tags, fields, ts))
                except (SchemaError, KeyError, TypeError, ValueError) as exc:
                    self._drop(1, "schema", str(exc))
        if not lines:
            return b"", 0
        return gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=1), len(lines)

    def _deliver(self, body: bytes, lines: int) -> None:
        try:
            self._write_or_spool(body, lines)
        except Exception as exc:  # a bug here must cost this batch, counted, not the writer
            log.exception("telemetry: unexpected error writing a batch")
            self._drop(lines, "error", str(exc))
        finally:
            self.in_flight -= lines

    def _write_or_spool(self, body: bytes, lines: int) -> None:
        """Write now if nothing waits before this batch; otherwise queue it."""
        waiting = self._spool is not None and len(self._spool) > 0
        if waiting or self._clock() < self._retry_at:
            self._to_spool(body, lines, "unavailable")
            return
        try:
            self._post(body)
        except InfluxUnavailable as exc:
            self._unavailable(exc)
            self._to_spool(body, lines, "unavailable")
        except InfluxRejected as exc:
            self._rejected(exc, body, lines, segment=None)
        else:
            self._succeeded(lines)

    def _replay(self) -> None:
        assert self._spool is not None
        while (segment := self._spool.oldest()) is not None:
            try:
                self._post(self._spool.read(segment))
            except InfluxUnavailable as exc:
                self._unavailable(exc)
                return
            except InfluxRejected as exc:
                if not self._rejected(exc, None, segment.lines, segment=segment):
                    return
                continue
            except OSError as exc:  # the file went missing or unreadable
                log.error("telemetry spool: cannot read %s: %s", segment.path, exc)
                self._spool.remove(segment)
                self._drop(segment.lines, "spool_unreadable", str(exc))
                continue
            self._spool.remove(segment)
            self._succeeded(segment.lines)

    def _post(self, body: bytes) -> None:
        self.posts += 1
        if not self._prepared:
            self._prepare()
            self._prepared = True
        started = time.perf_counter()
        try:
            self._client.write_gzip(body, retention_policy=RAW_POLICY)
        except InfluxRejected as exc:
            if not _missing_policy(exc):
                raise
            log.warning("telemetry: %s; making the retention policies", exc)
            self._prepare()  # made by someone else, or dropped since: make it, once
            self._client.write_gzip(body, retention_policy=RAW_POLICY)
        self.last_write_ms = (time.perf_counter() - started) * 1000.0

    def _succeeded(self, lines: int) -> None:
        self.written += lines
        self.last_error = None
        self._backoff.reset()
        self._retry_at = 0.0

    def _unavailable(self, exc: Exception) -> None:
        self._prepared = False  # InfluxDB may come back empty: recreate the database
        delay = self._backoff.next_delay()
        self._retry_at = self._clock() + delay
        if self.last_error != str(exc):
            log.warning("telemetry: InfluxDB unavailable (%s); retrying in %.1fs", exc, delay)
        self.last_error = str(exc)

    def _rejected(self, exc: InfluxRejected, body: bytes | None, lines: int,
                  segment: Segment | None) -> bool:
        """Handle a 4xx. Returns True when the batch is finished with (written
        in part, or dropped), False when it stays queued for another try."""
        message = str(exc)
        partial = _PARTIAL.search(message)
        if exc.status == 400 and partial:
            bad = min(lines, int(partial.group(1)))
            log.warning("telemetry: InfluxDB refused %d of %d line(s): %s", bad, lines, message)
            self._finish(segment)
            self._succeeded(lines - bad)
            self._drop(bad, "rejected", message)
            return True
        if (exc.status == 404 and "database not found" in message) or _missing_policy(exc):
            self._prepared = False  # recreate it, then try again at once
        key = segment.sequence if segment is not None else -1
        attempts = self._rejections.get(key, 0) + 1
        if exc.status == 400 or attempts >= self._max_rejections:
            log.error("telemetry: dropping %d line(s) that InfluxDB refused: %s", lines, message)
            self._rejections.pop(key, None)
            self._finish(segment)
            self._drop(lines, f"http_{exc.status}", message)
            return True
        self.last_error = message
        self._retry_at = self._clock() + self._backoff.next_delay()
        if segment is None and body is not None:
            new = self._to_spool(body, lines, "rejected")
            if new is not None:
                self._rejections[new.sequence] = attempts
        else:
            self._rejections[key] = attempts
        return False

    def _finish(self, segment: Segment | None) -> None:
        if segment is not None and self._spool is not None:
            self._spool.remove(segment)

    def _to_spool(self, body: bytes, lines: int, reason: str) -> Segment | None:
        if self._spool is None:
            self._drop(lines, reason, self.last_error or reason)
            return None
        try:
            segment, evicted = self._spool.put(body, lines)
        except OSError as exc:
            log.error("telemetry spool: cannot write: %s", exc)
            self._drop(lines, "spool_error", str(exc))
            return None
        if evicted:
            self._drop(evicted, "spool_full", "the spool is full; the oldest data was dropped")
        if segment is None:
            self._drop(lines, "spool_full", "a batch larger than the whole spool was dropped")
            return None
        self.spooled += lines
        return segment

    def _drop(self, count: int, reason: str, detail: str) -> None:
        self.dropped += count
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + count
        if reason in ("schema", "spool_full"):
            log.warning("telemetry: dropped %d record(s) (%s): %s", count, reason, detail)


def _missing_policy(exc: InfluxRejected) -> bool:
    return "retention policy not found" in str(exc)
