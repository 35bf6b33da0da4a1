"""Backpressure at run time: sample the pressure, and apply the policy of
``service.domain.backpressure_policy`` to publishes, deliveries and connections."""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from service.domain.backpressure_policy import Action, BackpressurePolicy, Overloaded
from service.domain.connections import ConnectionLimitReached
from service.domain.measurements import QUEUES, THROTTLED
from service.domain.model import Priority, PublishRequest
from service.service_layer.ports import Telemetry

log = logging.getLogger(__name__)
SAMPLE_INTERVAL_S = 0.5


class Backpressure:
    def __init__(
        self,
        policy: BackpressurePolicy,
        *,
        queued_bytes: Callable[[], tuple[int, int]],  # (bytes, connections with any)
        rss_bytes: Callable[[], int],
        telemetry: Telemetry | None,
        on_release: Callable[[], None] = lambda: None,
    ) -> None:
        self.policy = policy
        self._queued_bytes = queued_bytes
        self._rss_bytes = rss_bytes
        self._telemetry = telemetry
        self.on_release = on_release  # set by the wiring: the hub resumes deferred entries
        self.engaged = False
        self.over_budget = False
        self.refused = 0  # publishes refused during the current episode
        self.deferred = 0  # entries deferred during the current episode
        self.last_queued_bytes = 0

    # -- the decisions, on the hot path: attribute reads only ----------------
    def admit(self, request: PublishRequest) -> None:
        """Refuse a publish (Overloaded, 429) if its priority's action says so."""
        if self.engaged and self.policy.action(request.priority) is Action.REFUSE:
            self.refused += 1
            if self._telemetry is not None:
                self._telemetry.tally(THROTTLED, (("priority", request.priority.value),
                                                  ("reason", "backpressure"))).add(1, 1)
            raise Overloaded(
                f"this node is behind on delivery; {request.priority.value} notifications "
                f"are refused until it catches up: retry in {self.policy.retry_after_s:g} s",
                retry_after=self.policy.retry_after_s, field="priority")

    def defers(self, priority: Priority) -> bool:
        return self.engaged and self.policy.action(priority) is Action.DEFER

    def admit_connection(self) -> None:
        if self.over_budget:
            raise ConnectionLimitReached(
                "this node is over its memory budget; retry later or on another node",
                field="memory")

    # -- sampling -------------------------------------------------------------
    def sample(self) -> None:
        queued, backlogged = self._queued_bytes()
        rss = self._rss_bytes()
        self.last_queued_bytes = queued
        self.over_budget = self.policy.over_budget(rss)
        engaged = self.policy.engaged(self.engaged, queued, rss)
        if self._telemetry is not None:
            self._telemetry.tally(QUEUES, ()).add(1, peak=queued, peak2=backlogged)
        if engaged == self.engaged:
            return
        self.engaged = engaged
        event = "engaged" if engaged else "released"
        log.warning("backpressure %s: %d bytes queued for %d connections, rss %d MB",
                    event, queued, backlogged, rss >> 20)
        if self._telemetry is not None:
            self._telemetry.emit("notify_backpressure", (("event", event),), {
                "queued_bytes": queued, "rss_bytes": rss,
                "memory_budget_bytes": self.policy.memory_budget_bytes,
                "refused": self.refused, "deferred": self.deferred})
        if not engaged:
            self.refused = self.deferred = 0
            self.on_release()

    def run(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        """For sio.start_background_task."""
        while True:
            try:
                self.sample()
            except Exception:  # a failed sample must not stop the next ones
                log.exception("backpressure sample failed")
            gevent.sleep(interval)
