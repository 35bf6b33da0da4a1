"""Sending batches to one connection: encode once, compress if the client
asked, bound the send queue, and measure. The hub decides *what* to send;
this decides *how*."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from service.domain.batching import BatchPolicy, BatchQueue
from service.domain.compression import CompressionPolicy, deflate
from service.domain.connections import SlowConsumer
from service.domain.model import Notification
from service.domain.telemetry import DELIVERED, DROPPED, RELOADED
from service.domain.wire import RawJSON
from service.service_layer.ports import Sender, Telemetry

log = logging.getLogger(__name__)

_SLOW_CONSUMER = (("reason", "slow_consumer"),)
_MODE_TAGS = {"live": (("mode", "live"),), "replay": (("mode", "replay"),)}
_CREATED_TS = attrgetter("created_ts")


@dataclass(eq=False)  # identity, not value: one object per open connection
class Connection:
    sid: str
    user_id: str
    delivered: int  # highest offset sent, or queued to be sent, on this connection
    acked: int  # highest offset this user acknowledged
    catching_up: bool = True
    has_pending: bool = False
    last_activity: float = 0.0  # clock time of the client's last event
    close_reason: str | None = None  # set when the server closes it, for telemetry
    trimmed: int = 0  # highest offset the offline-queue bounds removed, as last seen
    accepts_deflate: bool = False  # the client asked for compressed large batches
    queue: BatchQueue[Notification] = field(default_factory=lambda: BatchQueue(BatchPolicy()))


class Outbox:
    def __init__(self, sender: Sender, telemetry: Telemetry | None,
                 compression: CompressionPolicy, clock: Callable[[], float]) -> None:
        self._sender = sender
        self._telemetry = telemetry
        self.compression = compression
        self._clock = clock
        self.sent_total = 0  # notifications sent since start, over all connections

    def tell_reload(self, conn: Connection, trimmed: int, epoch: int) -> None:
        """Entries this client never received are gone: say so before sending
        what follows, so that it reloads its state instead of showing a gap."""
        missed = trimmed - conn.delivered
        log.info("%s (%s) missed %d trimmed entries: told to reload", conn.sid, conn.user_id,
                 missed)
        self._sender.send(conn.sid, "reload", {
            "reason": "trimmed", "epoch": epoch, "first_offset": trimmed + 1,
            "missed": missed})
        conn.delivered = conn.trimmed = trimmed
        if self._telemetry is not None:
            self._telemetry.tally(RELOADED, ()).add(1, missed)

    def send(
        self,
        conn: Connection,
        items: list[Notification],
        mode: str,
        queued: list[tuple[Notification, float]] | None = None,
    ) -> None:
        """Send one batch; ``queued`` holds its entries' queueing times (live)."""
        text = "[" + ",".join([n.wire_json for n in items]) + "]"
        data: RawJSON | bytes = RawJSON(text)
        if self.compression.wants(conn.accepts_deflate, len(text)):
            data = deflate(text)
        try:
            self._sender.send(conn.sid, "notifications", data)
        except SlowConsumer:
            self.close_slow(conn, len(items))
            return
        self.sent_total += len(items)
        if self._telemetry is not None:
            self._measure(items, len(text), len(data), mode, queued)

    def _measure(self, items: list[Notification], size: int, wire_size: int, mode: str,
                 queued: list[tuple[Notification, float]] | None) -> None:
        """Count the batch; maxima exactly, per-entry histograms when asked."""
        now = time.time()
        summary = self._telemetry.tally(DELIVERED, _MODE_TAGS[mode])
        latency_max = (now - min(map(_CREATED_TS, items))) * 1000.0
        if queued is None:
            summary.add(len(items), 1, size, wire_size, peak=latency_max)
        else:
            clock = self._clock()
            wait_max = (clock - queued[0][1]) * 1000.0  # the queue is in arrival order
            summary.add(len(items), 1, size, wire_size, peak=latency_max, peak2=wait_max)
        if summary.wants_detail():
            summary.observe("latency_ms", [(now - n.created_ts) * 1000.0 for n in items])
            if queued is not None:
                summary.observe("wait_ms", [(clock - at) * 1000.0 for _, at in queued])

    def close_slow(self, conn: Connection, unsent: int) -> None:
        """The client does not read: close it before it eats the node's memory.
        Its entries stay in the log; a reconnect replays them."""
        if conn.close_reason is None:
            log.info("closing %s (%s): slow consumer", conn.sid, conn.user_id)
            conn.close_reason = "slow_consumer"
            self._sender.disconnect(conn.sid)
        if self._telemetry is not None:
            self._telemetry.tally(DROPPED, _SLOW_CONSUMER).add(unsent)

