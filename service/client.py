"""A Python publisher for ``POST /api/v1/notifications`` (docs/client-python.md).

Every logical publish carries one ``Idempotency-Key`` (a uuid4 unless the
caller gives one) and every attempt sends it with the same bytes, so a retry
after a lost answer is answered the first result and stores nothing new.
Retried: no answer (refused, reset, timed out), 429 and 5xx, after the
server's ``retry_after``/``Retry-After`` or a capped, jittered backoff.
Never retried: any other 4xx (``PublishRejected``). Out of attempts or time:
``PublishGaveUp``, naming the key for a later retry.

Needs only urllib3 and the standard library, and imports nothing of the
server. Thread-safe, and greenlet-safe under gevent's monkey-patching."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import urllib3

__all__ = ["PublishAnswer", "PublishError", "PublishGaveUp", "PublishRejected", "Publisher"]

PATH = "/api/v1/notifications"
Priority = Literal["low", "normal", "high", "critical"]


@dataclass(frozen=True)
class PublishAnswer:
    """The server's ``202``: the entry's id and its offset in the log."""

    id: str
    offset: int
    created_at: str
    recipients: int
    offsets: dict[str, int] | None  # user id -> offset (the first 1000); None for a broadcast
    broadcast: bool
    offsets_truncated: bool
    idempotency_key: str
    attempts: int  # how many requests this publish took
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any], key: str, attempts: int) -> PublishAnswer:
        return cls(id=body["id"], offset=int(body["offset"]),
                   created_at=str(body.get("created_at", "")),
                   recipients=int(body.get("recipients", 0)), offsets=body.get("offsets"),
                   broadcast=bool(body.get("broadcast", False)),
                   offsets_truncated=bool(body.get("offsets_truncated", False)),
                   idempotency_key=key, attempts=attempts, raw=dict(body))


class PublishError(Exception):
    """Base of the publisher's failures; ``idempotency_key`` is the publish's key."""

    def __init__(self, message: str, *, idempotency_key: str) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class PublishRejected(PublishError):
    """The server refused the publish with a 4xx other than 429 (or another
    answer that is not worth repeating): nothing was stored. ``error``,
    ``detail`` and ``field`` are the server's error object's."""

    def __init__(self, status: int, answer: Mapping[str, Any], *, idempotency_key: str) -> None:
        self.status = status
        self.error: str = str(answer.get("error")
                              or ("unexpected_answer" if status < 400 else f"http_{status}"))
        self.detail: str = str(answer.get("detail") or "")
        self.field: str | None = answer.get("field")
        self.error_id: str | None = answer.get("error_id")
        self.answer = dict(answer)
        where = f" (field: {self.field})" if self.field else ""
        super().__init__(f"publish refused: {status} {self.error}{where}: {self.detail}",
                         idempotency_key=idempotency_key)


class PublishGaveUp(PublishError):
    """Every attempt failed in a way worth retrying, and no attempt (or no
    time) is left. The publish may have been stored (an attempt that got no
    answer): retry later with ``idempotency_key`` and the same body to be
    sure, without a duplicate. ``status`` is the last answer's (None: no
    answer), ``error``/``detail`` its error object's, ``cause`` the last
    connection error, ``retry_after`` what the server last asked to wait."""

    def __init__(self, reason: str, *, idempotency_key: str, attempts: int,
                 status: int | None, answer: Mapping[str, Any] | None,
                 cause: BaseException | None, retry_after: float | None) -> None:
        self.attempts = attempts
        self.status = status
        self.error: str | None = (answer or {}).get("error")
        self.detail: str | None = (answer or {}).get("detail")
        self.cause = cause
        self.retry_after = retry_after
        last = (f"{status} {self.error or ''}".strip() if status is not None
                else f"no answer ({type(cause).__name__ if cause else 'unknown'})")
        super().__init__(f"publish gave up after {attempts} attempt(s), {reason}; last: {last}; "
                         f"Idempotency-Key {idempotency_key}", idempotency_key=idempotency_key)


class _Retry(Exception):
    """One attempt's failure that is worth another attempt."""

    def __init__(self, status: int | None = None, answer: Mapping[str, Any] | None = None,
                 cause: BaseException | None = None, wait: float | None = None) -> None:
        super().__init__(status)
        self.status, self.answer, self.cause, self.wait = status, answer, cause, wait


class Publisher:
    """Publishes over one pool of HTTP connections; share one per process.

    - ``base_url``: the node, or a list of nodes: each retry goes to the next
      one (a key is honoured on any node of the cluster).
    - ``timeout``: seconds to connect, and to wait for the answer, per attempt.
    - ``max_attempts``: requests per publish, the first included (1: no retry).
    - ``backoff_initial``/``backoff_max``: the wait before retry n is drawn
      from [d/2, d], d = min(backoff_max, backoff_initial * 2**(n-1)); a
      server's ``retry_after``/``Retry-After`` is waited at least (up to 10 %
      more, so that throttled publishers do not come back all at once).
    - ``max_wait``: a server asking to wait longer than this ends the publish
      (``PublishGaveUp`` with its ``retry_after``) instead of blocking.
    - ``deadline``: seconds a publish may take, waits included (None: no limit).
    - ``pool_maxsize``: connections kept per node: about the publishes in
      flight at once.
    - ``seed``: of the jitter and of the first node (tests); None: random.
    """

    def __init__(self, base_url: str | Sequence[str], token: str, *, timeout: float = 10.0,
                 max_attempts: int = 5, backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 max_wait: float = 30.0, deadline: float | None = None,
                 pool_maxsize: int = 10, seed: int | None = None) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url: give at least one node")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.urls = [url.rstrip("/") + PATH for url in urls]
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.max_attempts = max_attempts
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.max_wait, self.deadline = max_wait, deadline
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._http = urllib3.PoolManager(num_pools=max(4, len(urls)), maxsize=pool_maxsize,
                                         block=False, retries=False)
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._next_node = itertools.count(self._random.randrange(len(urls)))

    # -- publishing ------------------------------------------------------------------
    def publish(self, *, category: str, user_id: str | None = None,
                user_ids: Sequence[str] | None = None, broadcast: bool = False,
                payload: Mapping[str, Any] | None = None, priority: Priority | None = None,
                idempotency_key: str | None = None) -> PublishAnswer:
        """One notification, to exactly one of ``user_id``, ``user_ids`` or
        ``broadcast=True``; retried as the class says. Raises
        ``PublishRejected`` or ``PublishGaveUp``."""
        targets = (user_id is not None) + (user_ids is not None) + bool(broadcast)
        if targets != 1:
            raise ValueError("give exactly one of user_id, user_ids or broadcast=True")
        body: dict[str, Any] = {"category": category}
        if user_id is not None:
            body["user_id"] = user_id
        elif user_ids is not None:
            if isinstance(user_ids, str):
                raise ValueError("user_ids is a list of user ids, not one string")
            body["user_ids"] = list(user_ids)
        else:
            body["broadcast"] = True
        if priority is not None:
            body["priority"] = priority
        if payload is not None:
            body["payload"] = dict(payload)
        return self.publish_body(body, idempotency_key=idempotency_key)

    def broadcast(self, *, category: str, payload: Mapping[str, Any] | None = None,
                  priority: Priority | None = None,
                  idempotency_key: str | None = None) -> PublishAnswer:
        """To every user who has a stream."""
        return self.publish(category=category, broadcast=True, payload=payload,
                            priority=priority, idempotency_key=idempotency_key)

    def publish_body(self, body: Mapping[str, Any], *,
                     idempotency_key: str | None = None) -> PublishAnswer:
        """A body built by the caller, as the API takes it; retried as ``publish``."""
        key = idempotency_key if idempotency_key is not None else uuid.uuid4().hex
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {**self._headers, "Idempotency-Key": key}
        started = time.monotonic()
        node = next(self._next_node)
        for attempt in itertools.count(1):
            try:
                return self._attempt(self.urls[node % len(self.urls)], data, headers, key,
                                     attempt)
            except _Retry as failed:
                last = failed
            if attempt >= self.max_attempts:
                raise self._gave_up("out of attempts", key, attempt, last)
            if last.wait is not None and last.wait > self.max_wait:
                raise self._gave_up(f"the server asked to wait {last.wait:g} s", key, attempt,
                                    last)
            wait = self._wait(attempt, last.wait)
            if self.deadline is not None and time.monotonic() - started + wait > self.deadline:
                raise self._gave_up(f"out of time ({self.deadline:g} s)", key, attempt, last)
            time.sleep(wait)
            node += 1
        raise AssertionError("unreachable")

    def _attempt(self, url: str, data: bytes, headers: dict[str, str], key: str,
                 attempt: int) -> PublishAnswer:
        try:
            response = self._http.request("POST", url, body=data, headers=headers,
                                          timeout=self.timeout, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # refused, reset, timed out
            raise _Retry(cause=exc) from None
        answer = _json_object(response.data)
        status = response.status
        if status == 202 and "id" in answer and "offset" in answer:
            return PublishAnswer.from_json(answer, key, attempt)
        if status == 429 or status >= 500:
            raise _Retry(status, answer, wait=_server_wait(answer, response.headers))
        raise PublishRejected(status, answer, idempotency_key=key)

    def _wait(self, retry: int, asked: float | None) -> float:
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (retry - 1))
        with self._random_lock:
            backoff = self._random.uniform(ceiling / 2, ceiling)
            if asked is None:
                return backoff
            return max(backoff, asked * self._random.uniform(1.0, 1.1))

    def _gave_up(self, reason: str, key: str, attempts: int, last: _Retry) -> PublishGaveUp:
        return PublishGaveUp(reason, idempotency_key=key, attempts=attempts, status=last.status,
                             answer=last.answer, cause=last.cause, retry_after=last.wait)

    # -- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        """Closes the pooled connections; the publisher may still be used."""
        self._http.clear()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:  # a proxy's HTML page, say
        return {}
    return value if isinstance(value, dict) else {}


def _server_wait(answer: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait: the body's ``retry_after`` (exact),
    else the ``Retry-After`` header (whole seconds, or an HTTP date)."""
    exact = answer.get("retry_after")
    if isinstance(exact, int | float) and not isinstance(exact, bool) and exact >= 0:
        return float(exact)
    header = headers.get("Retry-After")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    import email.utils  # an HTTP date is rare: not paid for at import

    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
