"""Database statement and pool statistics, through SQLAlchemy events.

Every statement is timed, but only a summary per operation is emitted, every
sampling interval: one point per operation rather than one per statement
keeps telemetry cheap at high publish rates.

The timing wraps the dialect's own ``do_execute``/``do_executemany``/
``do_execute_no_params`` (SQLAlchemy's dialect events), not the
``before``/``after_cursor_execute`` pair: any connection-level listener
sends every statement down SQLAlchemy's slower, event-dispatching path
(docs/library-patches.md has the cost of each).

Pool waits come from TimedQueuePool, an override of SQLAlchemy's pool
fenced in service/adapters/patches/pool_checkout.py.

A statement slower than ``slow_ms`` is also counted under its *shape*: its
text with every literal, number and parameter placeholder replaced by ``?``
and lists folded, so that one shape stands for all its executions and no
value a user sent ever reaches telemetry (parameters are never looked at).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool

from service.adapters.patches.pool_checkout import TimedQueuePool
from service.service_layer.ports import Telemetry

_OPERATIONS = ("select", "insert", "update", "delete")
_TOKENS = re.compile(r"[()]|[A-Za-z_]+")
SHAPE_MAX_CHARS = 240
MAX_SLOW_SHAPES = 50  # per interval; beyond, slow statements are counted as shape "other"
MAX_KNOWN_STATEMENTS = 512  # statement texts whose operation is remembered
_LITERALS = re.compile(
    r"'(?:[^']|'')*'"  # a string literal
    r"|\$\w*\$.*?\$\w*\$"  # a dollar-quoted string
    r"|%\(\w+\)s|%s|(?<!:):\w+|\?"  # driver and SQLAlchemy placeholders, not a ::cast
    r"|\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b",  # a number
    re.DOTALL)
_LISTS = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_SPACE = re.compile(r"\s+")


@dataclass
class _Timings:
    count: int = 0
    duration_ms_sum: float = 0.0
    duration_ms_max: float = 0.0

    def add(self, elapsed_ms: float) -> None:
        self.count += 1
        self.duration_ms_sum += elapsed_ms
        if elapsed_ms > self.duration_ms_max:
            self.duration_ms_max = elapsed_ms


@dataclass
class _Summary(_Timings):
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


def statement_shape(statement: str) -> str:
    """The statement without its values: ``WHERE id = 42 AND n IN (1, 2)``
    and ``WHERE id = %(id)s AND n IN (%(a)s)`` both become
    ``WHERE id = ? AND n IN (?)``."""
    shape = _LITERALS.sub("?", statement)
    shape = _LISTS.sub("(?)", shape)
    shape = _SPACE.sub(" ", shape).strip()
    return shape[:SHAPE_MAX_CHARS]


def shape_id(shape: str) -> str:
    """A short stable name for a shape, for a tag of bounded length."""
    return hashlib.blake2s(shape.encode(), digest_size=4).hexdigest()


@dataclass
class _SlowShape(_Timings):
    shape: str = ""


class QueryStats:
    def __init__(self, engine: Engine, *, slow_ms: float = 100.0) -> None:
        self._engine = engine
        self.slow_ms = slow_ms
        self._summaries: dict[str, _Summary] = {}
        self._slow: dict[str, _SlowShape] = {}  # shape id -> what the slow ones of it took
        self._operations: dict[str, str] = {}  # statement text -> its operation
        self.slow_total = 0  # since start, for the status page and tests
        self.last_interval: dict[str, dict[str, float]] = {}  # per operation, for /metrics
        dialect = engine.dialect
        # each runs the dialect's own method, timed, and returns True: "done"
        event.listen(engine, "do_execute", self._timed(dialect.do_execute))
        event.listen(engine, "do_executemany", self._timed(dialect.do_executemany))
        event.listen(engine, "do_execute_no_params", self._timed_no_params(
            dialect.do_execute_no_params))

    def _timed(self, execute: Callable[..., Any]) -> Callable[..., bool]:
        clock, record = time.perf_counter, self._record

        def timed(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
            started = clock()
            execute(cursor, statement, parameters, context)
            record(cursor, statement, (clock() - started) * 1000.0)
            return True
        return timed

    def _timed_no_params(self, execute: Callable[..., Any]) -> Callable[..., bool]:
        clock, record = time.perf_counter, self._record

        def timed(cursor: Any, statement: str, context: Any) -> bool:
            started = clock()
            execute(cursor, statement, context)
            record(cursor, statement, (clock() - started) * 1000.0)
            return True
        return timed

    def _operation(self, statement: str) -> str:
        """``operation_of``, remembered: the same few statement texts come
        back all the time (SQLAlchemy caches their compiled form)."""
        operation = self._operations.get(statement)
        if operation is None:
            if len(self._operations) >= MAX_KNOWN_STATEMENTS:
                self._operations.clear()
            operation = self._operations[statement] = operation_of(statement)
        return operation

    def _record(self, cursor: Any, statement: str, elapsed_ms: float) -> None:
        operation = self._operation(statement)
        summary = self._summaries.get(operation)
        if summary is None:
            summary = self._summaries[operation] = _Summary()
        summary.add(elapsed_ms)
        rowcount = getattr(cursor, "rowcount", -1)
        if rowcount and rowcount > 0:
            summary.rows += rowcount
        if elapsed_ms >= self.slow_ms:
            summary.slow += 1
            self._record_slow(statement, elapsed_ms)

    def _record_slow(self, statement: str, elapsed_ms: float) -> None:
        self.slow_total += 1
        shape = statement_shape(statement)
        key = shape_id(shape)
        if key not in self._slow and len(self._slow) >= MAX_SLOW_SHAPES:
            key, shape = "other", "other"
        slow = self._slow.get(key)
        if slow is None:
            slow = self._slow[key] = _SlowShape(shape=shape)
        slow.add(elapsed_ms)

    def emit(self, telemetry: Telemetry) -> None:
        """Emit and reset the summaries, and sample the pool."""
        summaries, self._summaries = self._summaries, {}
        slow, self._slow = self._slow, {}
        self.last_interval = {
            operation: {"count": s.count, "mean_ms": round(s.duration_ms_sum / s.count, 3),
                        "max_ms": round(s.duration_ms_max, 3), "slow": s.slow}
            for operation, s in summaries.items() if s.count}
        for operation, s in summaries.items():
            telemetry.emit("db_query", (("operation", operation),), {
                "count": s.count, "duration_ms_sum": s.duration_ms_sum,
                "duration_ms_max": s.duration_ms_max, "rows": s.rows, "slow": s.slow,
            })
        for key, shaped in slow.items():
            telemetry.emit("db_slow_query", (("shape_id", key),), {
                "count": shaped.count, "duration_ms_sum": shaped.duration_ms_sum,
                "duration_ms_max": shaped.duration_ms_max, "shape": shaped.shape,
            })
        pool = self._engine.pool
        if isinstance(pool, QueuePool):  # both engines' (service.adapters.database)
            waits = pool.take_waits() if isinstance(pool, TimedQueuePool) else (0, 0.0, 0.0)
            telemetry.emit("db_pool", (), {
                "size": pool.size(), "checked_out": pool.checkedout(),
                "overflow": max(0, pool.overflow()), "waits": waits[0],
                "wait_ms_sum": waits[1], "wait_ms_max": waits[2],
            })
