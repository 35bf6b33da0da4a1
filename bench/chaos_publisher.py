"""The chaos run's publishers: a steady rate of publishes, each retried with
its Idempotency-Key until it is acknowledged or definitively refused, and
every attempt recorded in the history (one JSON line each, never in memory).

Each publish goes to 1-3 random users (about 5 % to everyone), its payload
``{"seq": S}``, its key ``<run>-<seq>``; an attempt's answer decides:

- 202: done;
- 400, 401, 403, 413, 422: refused for good, done;
- 409: the key was taken by another body, which this publisher never sends:
  counted as a conflict (the checker sees the record), done;
- 429: again after its Retry-After, on any node;
- 5xx, anything else, or no answer (refused, reset, 3 s timeout): again on
  another node after a short backoff, until ``give_up_s`` after the first try.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections import Counter
from pathlib import Path

import gevent
import gevent.event
import gevent.pool
import urllib3

DEFINITIVE = (400, 401, 403, 413, 422)
PRIORITIES = (("normal", 0.65), ("high", 0.30), ("low", 0.03), ("critical", 0.02))
BROADCAST_SHARE = 0.05
TIMEOUT_S = 3.0
GIVE_UP_S = 120.0
MAX_IN_FLIGHT = 300  # past this the rate gives way: a client with bounded concurrency

logging.getLogger("urllib3").setLevel(logging.ERROR)  # "pool is full" under faults


class Publisher:
    def __init__(self, urls: list[str], users: list[str], token: str, run_id: str,
                 rate: float, out: Path, seed: int) -> None:
        self.urls, self.users, self.run_id, self.rate = urls, users, run_id, rate
        self.rng = random.Random(f"publish-{seed}")
        self.file = open(out, "a", buffering=1, encoding="utf-8")  # one line each: flushed
        self.http = urllib3.PoolManager(num_pools=len(urls) + 2, maxsize=64, block=False,
                                        retries=False)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.pool = gevent.pool.Pool(MAX_IN_FLIGHT)
        self.give_up_s = GIVE_UP_S
        self.seq = 0
        self.attempts = 0
        self.statuses: Counter[str] = Counter()  # by the answer of each attempt
        self.outcomes: Counter[str] = Counter()  # by how each publish ended
        self.conflicts: list[dict] = []  # 409s: should never happen

    # -- one publish -----------------------------------------------------------------
    def _draw(self) -> tuple[int, list[str] | None, dict]:
        self.seq += 1
        rng = self.rng
        priority = rng.choices([p for p, _ in PRIORITIES], [w for _, w in PRIORITIES])[0]
        body: dict = {"category": "chaos", "priority": priority, "payload": {"seq": self.seq}}
        if rng.random() < BROADCAST_SHARE:
            users = None
            body["broadcast"] = True
        else:
            users = rng.sample(self.users, min(len(self.users), rng.randint(1, 3)))
            if len(users) == 1:
                body["user_id"] = users[0]
            else:
                body["user_ids"] = users
        return self.seq, users, body

    def _attempt(self, node: int, key: str, data: bytes) -> tuple[int | None, dict, float]:
        try:
            response = self.http.request(
                "POST", f"{self.urls[node]}/api/v1/notifications", body=data,
                headers={**self.headers, "Idempotency-Key": key},
                timeout=urllib3.Timeout(connect=TIMEOUT_S, read=TIMEOUT_S))
        except (urllib3.exceptions.HTTPError, OSError):
            return None, {}, 0.0
        answer: dict = {}
        if response.status in (202, 409):
            try:
                answer = json.loads(response.data)
            except ValueError:
                answer = {}
        retry_after = 0.0
        if response.status == 429:
            try:
                retry_after = float(response.headers.get("Retry-After") or 1)
            except ValueError:
                retry_after = 1.0
        return response.status, answer if isinstance(answer, dict) else {}, retry_after

    def publish(self, seq: int, users: list[str] | None, body: dict) -> None:
        key, data = f"{self.run_id}-{seq}", json.dumps(body).encode()
        started = time.monotonic()
        node = self.rng.randrange(len(self.urls))
        for tries in itertools.count():
            self.attempts += 1
            answered = False
            try:
                status, answer, retry_after = self._attempt(node, key, data)
                answered = True
            finally:  # killed mid-attempt: it may have been stored, so record it unknown
                if not answered:
                    self._record(seq, key, users, node, None, {})
            self._record(seq, key, users, node, status, answer)
            self.statuses[str(status)] += 1
            if status == 202:
                self.outcomes["acknowledged"] += 1
                return
            if status in DEFINITIVE:
                self.outcomes["refused"] += 1
                return
            if status == 409:
                self.outcomes["conflict"] += 1
                if len(self.conflicts) < 20:
                    self.conflicts.append({"seq": seq, "key": key, "node": node,
                                           "answer": answer})
                return
            if time.monotonic() - started > self.give_up_s:
                self.outcomes["gave_up"] += 1
                return
            if status == 429:
                gevent.sleep(min(retry_after, 10.0))
                node = self.rng.randrange(len(self.urls))
            else:  # backoff: 0.1-0.5 s, doubling each retry up to 4 s
                gevent.sleep(self.rng.uniform(0.1, 0.5) * 2 ** min(tries, 3))
                others = [i for i in range(len(self.urls)) if i != node] or [node]
                node = self.rng.choice(others)

    def _record(self, seq: int, key: str, users: list[str] | None, node: int,
                status: int | None, answer: dict) -> None:
        ok = status == 202
        self.file.write(json.dumps({
            "type": "publish", "seq": seq, "key": key, "users": users, "node": node,
            "t": round(time.time(), 3), "status": status,
            "id": answer.get("id") if ok else None,
            "offset": answer.get("offset") if ok else None}) + "\n")

    # -- the steady rate ---------------------------------------------------------------
    def run(self, stop: gevent.event.Event) -> None:
        """Publish at ``rate`` a second until ``stop`` is set."""
        started, n = time.monotonic(), 0
        while not stop.is_set():
            due = started + n / self.rate - time.monotonic()
            if due > 0:
                stop.wait(due)
                continue
            self.pool.spawn(self.publish, *self._draw())  # blocks while MAX_IN_FLIGHT are
            n += 1

    @property
    def in_flight(self) -> int:
        return len(self.pool)

    def finish(self, timeout: float) -> int:
        """Let the publishes still retrying finish (up to ``timeout``); the rest
        are stopped (their attempt in flight recorded as unanswered). Returns
        how many had to be stopped."""
        self.give_up_s = min(self.give_up_s, timeout)
        self.pool.join(timeout=timeout)
        left = len(self.pool)
        if left:
            self.outcomes["stopped"] += left
            self.pool.kill(timeout=5)
        self.file.flush()
        return left

    def close(self) -> None:
        self.pool.kill(timeout=5)
        if not self.file.closed:
            self.file.close()
        self.http.clear()

    def summary(self) -> dict:
        return {"published": self.seq, "attempts": self.attempts,
                "statuses": dict(self.statuses), "outcomes": dict(self.outcomes),
                "conflicts": self.conflicts}
