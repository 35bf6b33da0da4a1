"""``bench tuning``'s Socket.IO clients in this process (python-socketio, on
gevent): receivers that ask for deflate-compressed batches, and users who
keep trying to connect to a node at its connection limit."""

from __future__ import annotations

from collections import Counter

import gevent
import gevent.event
import socketio

from bench.harness import SECRETS
from service.adapters.tokens import UserTokens

TOKENS = UserTokens(SECRETS["USER_TOKEN_SECRET"], 3600)


def _client(url: str, user: str, auth: dict | None = None) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(url, auth={"token": TOKENS.issue(user), **(auth or {})},
                   transports=["websocket"], wait_timeout=10)
    return client


class Clients:
    """Socket.IO users of this process, closed by ``stop()``."""

    def __init__(self) -> None:
        self.held: list[socketio.Client] = []
        self.status: Counter[str] = Counter()
        self.stopping = gevent.event.Event()
        self.tasks: list[gevent.Greenlet] = []

    def stop(self) -> dict:
        self.stopping.set()
        gevent.joinall(self.tasks, timeout=10)
        for client in self.held:
            try:
                client.disconnect()
            except Exception:
                pass
        return dict(self.status)


def deflate_receivers(url: str, users: list[str]) -> Clients:
    """Users connected with ``compression: "deflate"``, acknowledging nothing
    (the stream stays; nothing here depends on acks)."""
    clients = Clients()
    for user in users:
        client = _client(url, user, {"compression": "deflate"})
        client.on("notifications", lambda _batch: None)
        clients.held.append(client)
    clients.status["connected"] = len(users)
    return clients


def connect_attempts(url: str, users: list[str], period_s: float) -> Clients:
    """Each user tries to connect every ``period_s`` until it is in, then stays."""
    clients = Clients()

    def attempt(user: str) -> None:
        while not clients.stopping.is_set():
            try:
                clients.held.append(_client(url, user))
                clients.status["connected"] += 1
                return
            except socketio.exceptions.ConnectionError:
                clients.status["refused"] += 1
            clients.stopping.wait(period_s)

    clients.tasks = [gevent.spawn(attempt, user) for user in users]
    return clients


def churning_receivers(url: str, users: list[str], hold_s: float) -> Clients:
    """Each user connects, stays ``hold_s``, leaves, and comes back: a batch
    still waiting when it leaves is dropped (``disconnected``)."""
    clients = Clients()

    def churn(user: str) -> None:
        while not clients.stopping.is_set():
            try:
                client = _client(url, user)
            except socketio.exceptions.ConnectionError:
                clients.status["refused"] += 1
                clients.stopping.wait(hold_s)
                continue
            client.on("notifications", lambda _batch: None)
            clients.stopping.wait(hold_s)
            client.disconnect()
            clients.status["sessions"] += 1

    clients.tasks = [gevent.spawn(churn, user) for user in users]
    return clients
