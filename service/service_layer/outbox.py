"""Sending batches to a connection, or one batch to the connections in
step: encode once, compress if the client asked, bound the send queue, and
measure. The hub decides *what* to send; this decides *how*."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter

import gevent

from service.domain.batching import BatchPolicy, BatchQueue
from service.domain.compression import CompressionPolicy, deflate
from service.domain.connections import SlowConsumer
from service.domain.measurements import DELIVERED, DROPPED, RELOADED
from service.domain.model import Notification
from service.domain.wire import RawJSON
from service.service_layer.ports import Sender, Telemetry

log = logging.getLogger(__name__)

SENT_BATCHES = 4096  # per connection, for counting acks
RECENT_BATCHES = 64  # encoded batches kept for the next connections that send the same
RECENT_BATCH_MAX_CHARS = 64 * 1024
# A shared batch is sent in slices of this many connections, yielding to the
# loop after each: about a millisecond of sends, after which a publish waiting
# to be read or committed goes first (the hub keeps fan-out pieces in order).
FANOUT_SLICE = 128

_SLOW_CONSUMER = (("reason", "slow_consumer"),)
# why a batch went out: its size, its deadline, an entry that waits for
# nothing (critical), what waited flushed ahead of a replay, or a replay page
TRIGGERS = ("size", "timeout", "immediate", "catch_up", "replay")
_TAGS = {(mode, trigger): (("mode", mode), ("trigger", trigger))
         for mode in ("live", "replay") for trigger in TRIGGERS}
_CREATED_TS = attrgetter("created_ts")


@dataclass(eq=False)  # identity, not value: one object per open connection
class Connection:
    sid: str
    user_id: str
    delivered: int  # highest offset sent, or queued to be sent, on this connection
    acked: int  # highest offset this user acknowledged
    since: int = 0  # the stream began after this offset: earlier broadcasts are not its
    floor: int = 0  # the stream's trimmed offset when it connected
    catching_up: bool = True
    has_pending: bool = False
    last_activity: float = 0.0  # clock time of the client's last event
    close_reason: str | None = None  # set when the server closes it, for telemetry
    deferred: bool = False  # backpressure held an entry back: take none live until replayed
    accepts_deflate: bool = False  # the client asked for compressed large batches
    queue: BatchQueue[Notification] = field(default_factory=lambda: BatchQueue(BatchPolicy()))
    # (last offset, entries) of each batch sent and not yet acknowledged, to
    # count what an ack covers; the oldest are forgotten past the bound
    sent: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=SENT_BATCHES))

    def take_acked(self, offset: int) -> int:
        """How many entries sent here an ack up to ``offset`` newly covers."""
        covered = 0
        sent = self.sent
        while sent and sent[0][0] <= offset:
            last, count = sent.popleft()
            if last > self.acked:
                covered += count
        return covered


@dataclass(slots=True)
class _Encoded:
    """A batch as sent, kept for the next connections that send the same."""

    text: RawJSON
    deflated: bytes | None
    oldest: float  # the oldest entry's created_ts


class Outbox:
    def __init__(self, sender: Sender, telemetry: Telemetry | None,
                 compression: CompressionPolicy, clock: Callable[[], float],
                 pause: Callable[[], None] = lambda: gevent.sleep(0)) -> None:
        self._sender = sender
        self._pause = pause
        self._telemetry = telemetry
        self.compression = compression
        self._clock = clock
        self.sent_total = 0  # notifications sent since start, over all connections
        self._recent: dict[tuple[int, ...], _Encoded] = {}  # by the batch's offsets

    def tell_reload(self, conn: Connection, trimmed: int, epoch: int) -> None:
        """Entries this client never received are gone: say so before sending
        what follows, so that it reloads its state instead of showing a gap."""
        log.info("%s (%s) missed trimmed entries after %d: told to reload", conn.sid,
                 conn.user_id, conn.delivered)
        self._sender.send(conn.sid, "reload", {
            "reason": "trimmed", "epoch": epoch, "first_offset": trimmed + 1})
        conn.delivered = trimmed
        if self._telemetry is not None:
            self._telemetry.tally(RELOADED, ()).add(1)

    def send(
        self,
        conn: Connection,
        items: list[Notification],
        mode: str,
        queued: list[tuple[Notification, float]] | None = None,
        trigger: str = "replay",
    ) -> None:
        """Send one batch; ``queued`` holds its entries' queueing times (live)."""
        text, deflated, oldest = self._encode(items, conn.accepts_deflate)
        data: RawJSON | bytes = deflated or text
        if self._put(conn, items, data) and self._telemetry is not None:
            self._measure(items, len(text), len(data), _TAGS[mode, trigger], queued, oldest)

    def send_shared(
        self,
        conns: Iterable[Connection],
        queued: list[tuple[Notification, float]],
        trigger: str,
        still: Callable[[Connection], bool],
    ) -> None:
        """One live batch to many connections (a cohort's flush), to each
        that is ``still`` there when its turn comes: encoded once, and
        measured once for all of them, weighted by how many it reached.
        Measured per connection, the same figures worked out again for each
        one were most of telemetry's cost of delivery."""
        items = [n for n, _ in queued]
        waited_until = self._clock()
        first_sent = 0.0
        copies = wire_bytes = 0
        text, _, oldest = self._encode(items, False)
        # what a connection gets, by whether it takes compressed batches: made once
        encodings: dict[bool, RawJSON | bytes] = {False: text}
        for conn in conns:
            if not still(conn):  # sending to one may have closed another
                continue
            data = encodings.get(conn.accepts_deflate)
            if data is None:
                data = encodings[True] = self._encode(items, True)[1] or text
            if self._put(conn, items, data):
                if not copies:
                    first_sent = time.time()
                copies += 1
                wire_bytes += len(data)
                if not copies % FANOUT_SLICE:
                    self._pause()
        if copies and self._telemetry is not None:
            self._measure(items, len(text), wire_bytes, _TAGS["live", trigger], queued, oldest,
                          copies=copies, first_sent=first_sent, waited_until=waited_until)

    def _put(self, conn: Connection, items: list[Notification], data: RawJSON | bytes) -> bool:
        """Hand the batch to the connection's send queue, and remember it
        for counting acks. False if the client was too slow to take it."""
        try:
            self._sender.send(conn.sid, "notifications", data)
        except SlowConsumer:
            self.close_slow(conn, len(items))
            return False
        conn.take_acked(conn.acked)  # forget batches acked on another connection of the user
        conn.sent.append((items[-1].offset, len(items)))
        self.sent_total += len(items)
        return True

    def _encode(self, items: list[Notification], accepts_deflate: bool) -> tuple[
            RawJSON, bytes | None, float]:
        """The batch as JSON text, deflated when the client takes that and it
        is large, and its oldest entry's creation time (for telemetry). A
        broadcast batch is the same run of offsets for every connection that
        took it live, so all three are worked out once for all of them."""
        key = tuple([n.offset for n in items])
        encoded = self._recent.get(key)
        if encoded is None:
            text = RawJSON("[" + ",".join([n.wire_json for n in items]) + "]")
            encoded = _Encoded(text, None, min(map(_CREATED_TS, items)))
            if len(text) <= RECENT_BATCH_MAX_CHARS:  # bounded: at most 64 x 64 KiB (x2)
                self._recent[key] = encoded
                if len(self._recent) > RECENT_BATCHES:
                    del self._recent[next(iter(self._recent))]  # the oldest
        text = encoded.text
        if not self.compression.wants(accepts_deflate, len(text)):
            return text, None, encoded.oldest
        if encoded.deflated is None:
            encoded.deflated = deflate(text)
        return text, encoded.deflated, encoded.oldest

    def _measure(self, items: list[Notification], size: int, wire_bytes: int,
                 tags: tuple[tuple[str, str], ...],
                 queued: list[tuple[Notification, float]] | None, oldest: float, *,
                 copies: int = 1, first_sent: float | None = None,
                 waited_until: float | None = None) -> None:
        """Count the batch, sent ``copies`` times (``wire_bytes`` in all);
        maxima exactly, per-entry histograms when asked. A shared batch's
        latencies are taken at its first send and at its last, half the
        copies each: the two ends of the spread its sends took."""
        assert self._telemetry is not None  # callers measure only with telemetry
        now = time.time()
        summary = self._telemetry.tally(DELIVERED, tags)
        latency_max = (now - oldest) * 1000.0
        n = len(items)
        if queued is None:
            summary.add(n * copies, copies, size * copies, wire_bytes, peak=latency_max)
        else:
            clock = self._clock() if waited_until is None else waited_until
            wait_max = (clock - queued[0][1]) * 1000.0  # the queue is in arrival order
            summary.add(n * copies, copies, size * copies, wire_bytes, peak=latency_max,
                        peak2=wait_max)
        if summary.wants_detail():
            if first_sent is None or copies == 1:
                summary.observe("latency_ms", [(now - i.created_ts) * 1000.0 for i in items],
                                copies)
            else:
                early = copies // 2
                summary.observe("latency_ms",
                                [(first_sent - i.created_ts) * 1000.0 for i in items], early)
                summary.observe("latency_ms", [(now - i.created_ts) * 1000.0 for i in items],
                                copies - early)
            if queued is not None:
                summary.observe("wait_ms", [(clock - at) * 1000.0 for _, at in queued], copies)

    def close_slow(self, conn: Connection, unsent: int) -> None:
        """The client does not read: close it before it eats the node's memory.
        Its entries stay in the log; a reconnect replays them."""
        if conn.close_reason is None:
            log.info("closing %s (%s): slow consumer", conn.sid, conn.user_id)
            conn.close_reason = "slow_consumer"
            self._sender.disconnect(conn.sid)
        if self._telemetry is not None:
            self._telemetry.tally(DROPPED, _SLOW_CONSUMER).add(unsent)

