"""Calls that arrive together, served by one batch: group commit, as
databases do it for their own log, for any call that batches.

Leader and followers: a caller that finds no batch in flight leads. It
takes what is waiting (up to ``max_batch``, itself among it), runs the batch
once, and hands each caller its own result. Callers that come while a batch
is in flight wait as followers; when the leader is done, the first of them
leads the next batch. So a lone call runs at once, in its own greenlet (no
hand-off to another greenlet, which under load would queue it behind every
ready one), and batches grow exactly when calls overlap a batch's I/O.
``window_s`` > 0 makes a leader wait that long for company first: needed
where the batch's I/O does not yield (SQLite), so that nobody could join.

A failed batch fails each of its calls with the same error; a batch may
also answer one call with an exception of its own (its result is the
exception), and the others normally. Waiting calls
are bounded: past ``max_waiting`` a call is refused at once (``refuse``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

import gevent
from gevent.event import Event

from service.domain.errors import ServiceError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _Waiter(Generic[T, R]):
    """One call waiting: for its batch to finish, or for its turn to lead."""

    __slots__ = ("item", "result", "error", "done", "turn")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False
        self.turn = Event()

    def finish(self, result: R | None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True
        self.turn.set()


class GroupRunner(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch: int,
        window_s: float = 0.0,
        max_waiting: int = 10_000,
        refuse: Callable[[int], ServiceError],
        failed: Callable[[BaseException], ServiceError],
        answered: Callable[[], None] = lambda: None,
    ) -> None:
        self._run_batch = run_batch  # results in the order of its items
        self.max_batch = max_batch  # these three may change at run time
        self.window_s = window_s
        self.max_waiting = max_waiting
        self._refuse = refuse  # the error for a call past max_waiting, given how many wait
        self._failed = failed  # what callers get when the batch raised something unexpected
        # run by a leader once its batches' callers have their results and the
        # next leader has its turn: work that follows a batch (fan-out)
        self._answered = answered
        self._waiting: deque[_Waiter[T, R]] = deque()
        self._leading = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def call(self, item: T) -> R:
        """Run ``item`` in the next batch; return its result once that batch
        is done, or raise what the batch raised."""
        if len(self._waiting) >= self.max_waiting:
            raise self._refuse(len(self._waiting))
        me: _Waiter[T, R] = _Waiter(item)
        self._waiting.append(me)
        led = False
        try:
            while not me.done:
                if self._leading:
                    me.turn.wait()  # its batch is done, or its turn to lead
                    me.turn.clear()
                    continue
                led = True
                self._lead(me)
        except BaseException:  # killed while waiting: leave the line, pass the turn on
            if me in self._waiting:  # not taken into a batch: it did not run
                self._waiting.remove(me)
            if not self._leading and self._waiting:
                self._waiting[0].turn.set()
            if led:  # what follows its batches must still happen, elsewhere
                gevent.spawn(self._answered)
            raise
        if led:  # the next leader is on its way: what follows a batch holds up no commit
            self._answered()
        if me.error is not None:
            raise me.error
        return cast(R, me.result)  # finished without an error: it holds its result

    def _lead(self, me: _Waiter[T, R]) -> None:
        """Run batches from the head of the line until ``me`` is in one;
        then wake the next in line, if any, to lead."""
        self._leading = True
        batch: list[_Waiter[T, R]] = []
        try:
            while not me.done:
                if self.window_s and len(self._waiting) < self.max_batch:
                    gevent.sleep(self.window_s)  # company for a lone call
                batch = [self._waiting.popleft()
                         for _ in range(min(self.max_batch, len(self._waiting)))]
                self._run(batch)
        finally:
            for waiter in batch:  # this greenlet was killed mid-batch: say so, never hang
                if not waiter.done:
                    waiter.finish(None, self._failed(RuntimeError("interrupted")))
            self._leading = False
            if self._waiting:
                self._waiting[0].turn.set()

    def _run(self, batch: list[_Waiter[T, R]]) -> None:
        try:
            results = self._run_batch([w.item for w in batch])
        except ServiceError as exc:
            for waiter in batch:
                waiter.finish(None, exc)
            return
        except Exception as exc:  # a bug must not hang every caller
            error = self._failed(exc)
            log.exception("a batch of %d failed [%s]", len(batch), error.error_id)
            for waiter in batch:
                waiter.finish(None, error)
            return
        for waiter, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):  # this call's own outcome, not the batch's
                waiter.finish(None, result)
            else:
                waiter.finish(result)
