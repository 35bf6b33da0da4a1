"""A QueuePool that measures how long each checkout waited for a connection.

Replaces, in SQLAlchemy 2.1.9: ``sqlalchemy.pool.QueuePool._do_get``, wrapped
(upstream's runs unchanged, timed around).

Why: a pool too small for the load shows first as checkouts that wait, and
SQLAlchemy has no event before a checkout: the ``checkout`` event fires once
a connection was found, and timing the public ``Pool.connect`` would count
the pre-ping's round trip as waiting. The time includes opening a new
connection when the pool may grow, and each of upstream's own retries (it
calls ``_do_get`` again) is a wait of its own; QueryStats emits the sums as
``db_pool`` ``waits``, ``wait_ms_sum`` and ``wait_ms_max``.

Left out (ALLOW_UNPATCHED=1 on another SQLAlchemy), ``pool_class`` gives
SQLAlchemy's QueuePool, and those fields stay 0 (docs/library-patches.md).

Contract test: tests/integration/test_patch_pool_checkout.py (PostgreSQL).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.pool import QueuePool

from service.adapters.patches import POOL_CHECKOUT, PatchesInForce, in_force, require


class TimedQueuePool(QueuePool):
    """QueuePool, each checkout's wait measured."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        require(POOL_CHECKOUT)  # built by name (poolclass=): refuse another SQLAlchemy
        super().__init__(*args, **kwargs)
        self._waits = (0, 0.0, 0.0)  # count, sum ms, max ms since the last take

    def _do_get(self) -> Any:
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            waited = (time.perf_counter() - started) * 1000.0
            count, total, peak = self._waits
            self._waits = (count + 1, total + waited, max(peak, waited))

    def take_waits(self) -> tuple[int, float, float]:
        waits, self._waits = self._waits, (0, 0.0, 0.0)
        return waits


def pool_class(patches: PatchesInForce | None) -> type[QueuePool]:
    """The pool class for ``create_engine(poolclass=...)``: timed, or with
    the patch left out SQLAlchemy's own."""
    return TimedQueuePool if in_force(patches, POOL_CHECKOUT) else QueuePool
