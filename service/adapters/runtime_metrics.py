"""Process, GC and ping/pong samples, emitted every ``interval`` seconds."""

from __future__ import annotations

import gc
import os
import resource
import time
from collections.abc import Callable, Sized
from typing import Any

import gevent

from service.service_layer.ports import Telemetry


class GcPauses:
    """Collects GC pause times through gc.callbacks (cheap: two clock reads
    per collection)."""

    def __init__(self) -> None:
        self._started = 0.0
        self.pause_ms = 0.0
        self.pause_ms_max = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            elapsed = (time.perf_counter() - self._started) * 1000.0
            self.pause_ms += elapsed
            self.pause_ms_max = max(self.pause_ms_max, elapsed)

    def take(self) -> tuple[float, float]:
        taken = (self.pause_ms, self.pause_ms_max)
        self.pause_ms = self.pause_ms_max = 0.0
        return taken

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_snapshot(handlers: Sized | None = None) -> dict:
    """What ``GET …/metrics`` shows of the process: a soak reads these to see
    that nothing grows (memory, descriptors, request and WebSocket greenlets)."""
    return {"rss_bytes": rss_bytes(), "cpu_seconds": round(cpu_seconds(), 3),
            "open_fds": open_fds(),
            "handler_greenlets": len(handlers) if handlers is not None else 0}


def process_fields(gc_pauses: GcPauses, started: float, handlers: Sized | None) -> dict:
    gen = gc.get_stats()
    pause, pause_max = gc_pauses.take()
    return {
        "rss_bytes": rss_bytes(),
        "cpu_seconds": cpu_seconds(),
        "open_fds": open_fds(),
        "gc_gen0": gen[0]["collections"],
        "gc_gen1": gen[1]["collections"],
        "gc_gen2": gen[2]["collections"],
        "gc_pause_ms": pause,
        "gc_pause_ms_max": pause_max,
        "handler_greenlets": len(handlers) if handlers is not None else 0,
        "uptime_s": time.time() - started,
    }


def ping_fields(eio_sockets: dict, ping_timeout: float, now: float | None = None) -> dict:
    """Engine.IO sets ``last_ping`` when it sends a ping and clears it on the pong."""
    now = time.time() if now is None else now
    awaiting = late = 0
    for sock in list(eio_sockets.values()):
        sent = getattr(sock, "last_ping", None)
        if sent:
            awaiting += 1
            if now - sent > ping_timeout / 2:
                late += 1
    return {"connections": len(eio_sockets), "awaiting_pong": awaiting, "late_pong": late}


class RuntimeSampler:
    """Emits ``process`` (and, in a server, ``notify_ping``) every interval,
    plus whatever extra emitters it is given (database statistics)."""

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        interval: float = 10.0,
        handlers: Sized | None = None,
        eio_sockets: dict | None = None,
        ping_timeout: float = 8.0,
        extra: list[Callable[[Telemetry], Any]] | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._interval = interval
        self._handlers = handlers
        self._eio_sockets = eio_sockets
        self._ping_timeout = ping_timeout
        self._extra = extra or []
        self._gc = GcPauses()
        self._started = time.time()
        self._running = False

    def sample(self) -> None:
        self._telemetry.emit("process", (), process_fields(self._gc, self._started,
                                                           self._handlers))
        if self._eio_sockets is not None:
            self._telemetry.emit("notify_ping", (),
                                 ping_fields(self._eio_sockets, self._ping_timeout))
        for emit in self._extra:
            emit(self._telemetry)

    def run(self) -> None:
        self._running = True
        while self._running:
            self.sample()
            gevent.sleep(self._interval)

    def stop(self) -> None:
        self._running = False
        self._gc.close()
