"""Database statement and pool statistics, through SQLAlchemy events.

Every statement is timed, but only a summary per operation is emitted, every
sampling interval: one point per operation rather than one per statement
keeps telemetry cheap at high publish rates. Statement text and parameters
are never recorded here.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

from service.service_layer.ports import Telemetry

_OPERATIONS = ("select", "insert", "update", "delete")
_TOKENS = re.compile(r"[()]|[A-Za-z_]+")


@dataclass
class _Summary:
    count: int = 0
    duration_ms_sum: float = 0.0
    duration_ms_max: float = 0.0
    rows: int = 0
    slow: int = 0


def operation_of(statement: str) -> str:
    """The statement's verb; for ``WITH ... AS (...) VERB``, the verb of the
    statement proper, the first one outside the parentheses of its CTEs."""
    head = statement.lstrip().split(None, 1)[0].lower() if statement.strip() else ""
    if head == "with":
        depth = 0
        for token in _TOKENS.finditer(statement):
            word = token.group()
            depth += 1 if word == "(" else -1 if word == ")" else 0
            if depth == 0 and word.lower() in _OPERATIONS:
                return word.lower()
    return head if head in _OPERATIONS else "other"


class QueryStats:
    def __init__(self, engine: Engine, *, slow_ms: float = 100.0) -> None:
        self._engine = engine
        self.slow_ms = slow_ms
        self._summaries: dict[str, _Summary] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, _conn: Any, _cursor: Any, _statement: str, _params: Any,
                context: Any, _many: bool) -> None:
        if context is not None:
            context._notify_started = time.perf_counter()

    def _after(self, _conn: Any, cursor: Any, statement: str, _params: Any,
               context: Any, _many: bool) -> None:
        started = getattr(context, "_notify_started", None)
        if started is None:
            return
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        summary = self._summaries.setdefault(operation_of(statement), _Summary())
        summary.count += 1
        summary.duration_ms_sum += elapsed_ms
        summary.duration_ms_max = max(summary.duration_ms_max, elapsed_ms)
        rowcount = getattr(cursor, "rowcount", -1)
        if rowcount and rowcount > 0:
            summary.rows += rowcount
        if elapsed_ms >= self.slow_ms:
            summary.slow += 1

    def emit(self, telemetry: Telemetry) -> None:
        """Emit and reset the summaries, and sample the pool."""
        summaries, self._summaries = self._summaries, {}
        for operation, s in summaries.items():
            telemetry.emit("db_query", (("operation", operation),), {
                "count": s.count, "duration_ms_sum": s.duration_ms_sum,
                "duration_ms_max": s.duration_ms_max, "rows": s.rows, "slow": s.slow,
            })
        pool = self._engine.pool
        size = getattr(pool, "size", None)
        if callable(size):
            telemetry.emit("db_pool", (), {
                "size": pool.size(), "checked_out": pool.checkedout(),
                "overflow": max(0, pool.overflow()),
            })
