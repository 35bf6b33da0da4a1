"""``bench tuning``'s load: real clients only. Receivers are the official
socket.io-client in Node (clients/js/load.mjs, through ``ReceiverGroup``);
publishes and unread reads go over HTTP as an app's backend sends them.
Each driver runs in greenlets until ``stop()``, counting the statuses seen."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable

import gevent
import gevent.event
import gevent.pool
import urllib3

from bench.harness import SECRETS
from bench.loadgen import ReceiverGroup

PUBLISH = {"Authorization": f"Bearer {SECRETS['PUBLISH_TOKEN']}",
           "Content-Type": "application/json"}


class Load:
    """Receivers (optional) and a loop of HTTP requests, one ``tick`` per
    ``period_s`` (each tick spawned on its slot, so a slow answer does not
    delay the next)."""

    def __init__(self, url: str, tick: Callable[[Load], None], period_s: float,
                 users: list[str] | None = None, procs: int = 1, concurrency: int = 32) -> None:
        self.url = url
        self.http = urllib3.PoolManager(maxsize=concurrency, retries=False)
        self.pool = gevent.pool.Pool(concurrency)
        self.status: Counter[str] = Counter()
        self.stopping = gevent.event.Event()
        self.receivers = None
        if users:
            self.receivers = ReceiverGroup(url, users, per_user=10**9, procs=procs,
                                           latency_from="none", timeout_s=3600, idle_s=0)
            self.receivers.wait_ready()
        self._tick, self._period = tick, period_s
        self._loop = gevent.spawn(self._run)

    def _run(self) -> None:
        started = gevent.get_hub().loop.now()
        slot = 0
        while not self.stopping.is_set():
            gevent.spawn(self._tick, self)
            slot += 1
            delay = started + slot * self._period - gevent.get_hub().loop.now()
            if delay > 0:
                self.stopping.wait(delay)

    def request(self, method: str, path: str, body: dict | None = None) -> int:
        try:
            response = self.http.request(method, self.url + path, headers=PUBLISH, timeout=30,
                                         body=None if body is None else json.dumps(body))
        except urllib3.exceptions.HTTPError as exc:
            self.status[f"error: {type(exc).__name__}"] += 1
            return 0
        self.status[str(response.status)] += 1
        return response.status

    def publish(self, user: str, priority: str = "normal", size: int = 100) -> None:
        self.request("POST", "/api/v1/notifications",
                     {"user_id": user, "category": "bench", "priority": priority,
                      "payload": {"text": "x" * size}})

    def spread(self, calls: list[Callable[[], object]]) -> None:
        """Run these at once, ``concurrency`` at a time (a burst)."""
        for call in calls:
            self.pool.spawn(call)

    def stop(self) -> dict:
        self.stopping.set()
        self._loop.join(timeout=5)
        self.pool.join(timeout=10)
        if self.receivers is not None:
            self.receivers.kill()
        return dict(self.status)


def users(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def unread_readers(url: str, keys: int, per_tick: int, period_s: float) -> Load:
    """GET …/unread of ``per_tick`` users drawn at random from ``keys`` each
    tick: a working set of ``keys`` values in the query cache."""
    def tick(load: Load) -> None:
        load.spread([lambda u=random.randrange(keys): load.request(
            "GET", f"/api/v1/users/reader{u}/unread") for _ in range(per_tick)])
    return Load(url, tick, period_s)


def broadcasts(url: str, receivers: int, per_second: float, procs: int = 2,
               size: int = 100) -> Load:
    """Connected users and a steady broadcast: every user gets every one."""
    def tick(load: Load) -> None:
        load.request("POST", "/api/v1/notifications",
                     {"broadcast": True, "category": "bench", "payload": {"text": "x" * size}})
    return Load(url, tick, 1.0 / per_second, users("bc", receivers), procs)


def publishes(url: str, per_second: float, priority: str, offline_users: int = 100) -> Load:
    """Publishes to users who are not connected (stored for them)."""
    def tick(load: Load) -> None:
        load.publish(f"off{random.randrange(offline_users)}", priority)
    return Load(url, tick, 1.0 / per_second)


def idle(url: str, receivers: int, prefix: str = "hold") -> Load:
    """Connected users only, nothing published."""
    return Load(url, lambda _load: None, 1.0, users(prefix, receivers))


class Together:
    """Several loads started together, stopped together."""

    def __init__(self, *loads: object) -> None:
        self.loads = loads

    def stop(self) -> dict:
        status: Counter[str] = Counter()
        for part in self.loads:
            status.update(part.stop())
        return dict(status)


def user_bursts(url: str, receivers: int, per_burst: int, period_s: float,
                priority: str = "normal", size: int = 100, spread_users: bool = True,
                concurrency: int = 64, names: list[str] | None = None) -> Load:
    """Every ``period_s``, ``per_burst`` publishes at once: one to each of that
    many connected users (``spread_users``), or all to one user in turn;
    ``receivers`` of them connected through Node (``names``: users connected
    some other way)."""
    connected = users("bu", receivers)
    names = names or connected
    counter = iter(range(10**12))

    def tick(load: Load) -> None:
        n = next(counter)
        targets = (names[:per_burst] if spread_users
                   else [names[n % len(names)]] * per_burst)
        load.spread([lambda u=u: load.publish(u, priority, size) for u in targets])
    return Load(url, tick, period_s, connected, procs=1, concurrency=concurrency)


def trickle(url: str, receivers: int, per_second: float, priority: str = "normal") -> Load:
    """One publish to a random connected user ``per_second`` times a second."""
    names = users("tr", receivers)

    def tick(load: Load) -> None:
        load.publish(random.choice(names), priority)
    return Load(url, tick, 1.0 / per_second, names)


def round_robin(url: str, receivers: int, per_second: float) -> Load:
    """Publishes to connected users in turn, ``per_second`` in all: each user
    gets one every ``receivers / per_second`` seconds, evenly spaced."""
    names = users("rr", receivers)
    counter = iter(range(10**12))

    def tick(load: Load) -> None:
        load.publish(names[next(counter) % len(names)])
    return Load(url, tick, 1.0 / per_second, names, concurrency=64)
