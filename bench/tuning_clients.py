"""``bench tuning``'s Socket.IO clients in this process (python-socketio, on
gevent): receivers that ask for deflate-compressed batches, users who keep
trying to connect to a node at its connection limit, and (raw websocket)
receivers that stop reading for a while."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import gevent
import gevent.event
import socketio
import websocket

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


def _raw_client(url: str, user: str) -> websocket.WebSocket:
    """Engine.IO and Socket.IO handshakes by hand, with a small receive
    buffer, so that what this client does not read stays on the node."""
    ws = websocket.create_connection(
        url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=10,
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    ws.recv()  # Engine.IO open
    ws.send("40" + json.dumps({"token": TOKENS.issue(user)}))
    if not ws.recv().startswith("40"):
        raise ConnectionError("not connected")
    return ws


def _ack(ws: websocket.WebSocket, frame: str) -> None:
    """Acknowledge the last offset of a ``notifications`` event (``42[...]``)."""
    if not frame.startswith("42"):
        return
    name, *args = json.loads(frame[2:])
    if name == "notifications" and args and args[0]:
        ws.send("42" + json.dumps(["ack", {"offset": args[0][-1]["offset"]}]))


def stalling_receivers(url: str, users: list[str], stall_s: float) -> Clients:
    """Each user, on the first batch after a quiet spell, stops reading for
    ``stall_s`` (a client busy elsewhere), then reads everything waiting: a
    burst larger than the node's send queue arrives while it stalls, and the
    node closes it as a slow consumer (``slow_consumer`` drops). Closed, it
    comes back at once, and reads without stalling for a while (the replay
    of what it missed is not a burst). It acknowledges what it reads, so
    that what it missed is all a reconnect replays."""
    clients = Clients()

    def receive(user: str) -> None:
        while not clients.stopping.is_set():
            try:
                ws = _raw_client(url, user)
            except Exception:
                clients.status["refused"] += 1
                clients.stopping.wait(0.5)
                continue
            clients.status["sessions"] += 1
            calm_until = time.monotonic() + 2.0
            try:
                while not clients.stopping.is_set():
                    ws.settimeout(1.0)
                    try:
                        frame = ws.recv()
                    except websocket.WebSocketTimeoutException:
                        continue
                    if not frame:
                        break
                    if frame == "2":  # Engine.IO ping
                        ws.send("3")
                        continue
                    _ack(ws, frame)
                    if time.monotonic() >= calm_until:
                        clients.status["stalls"] += 1
                        clients.stopping.wait(stall_s)
                        calm_until = time.monotonic() + 0.5  # read what waited
            except (websocket.WebSocketException, OSError):
                pass
            finally:
                clients.status["closed"] += 1
                ws.close()

    clients.tasks = [gevent.spawn(receive, user) for user in users]
    return clients
