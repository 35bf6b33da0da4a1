"""``python -m service demo``: a small publisher and a few receiving users,
so that dashboards have data under ``make run``."""

from __future__ import annotations

import logging
import random
import signal

import gevent
import gevent.event
import socketio
import urllib3

from service.adapters.tokens import UserTokens
from service.client import Publisher, PublishGaveUp, PublishRejected
from service.config import Settings
from service.entrypoints.runtime import configure_logging

log = logging.getLogger("service.demo")
CATEGORIES = ("chat", "billing", "security", "social")
PRIORITIES = ("low", "normal", "normal", "normal", "high", "critical")


DISCONNECT_WAIT_S = 2.0


def run_demo(settings: Settings, *, rate: float, users: list[str]) -> int:
    configure_logging()
    base = f"http://{settings.host}:{settings.port}"
    http = urllib3.PoolManager(retries=False, timeout=5.0)
    stopping = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stopping.set)
    _wait_until_up(http, base, stopping)
    tokens = UserTokens(settings.user_token_secret, settings.user_token_ttl)
    clients = [_receiver(base, user, tokens.issue(user)) for user in users]
    print(f"demo: publishing {rate:g}/s to {', '.join(users)}", flush=True)
    published = 0
    # retries reuse one Idempotency-Key per notification: a lost answer never
    # publishes it twice; short waits, so that a stop is not held up for long
    publisher = Publisher(base, settings.publish_token, timeout=5.0, max_attempts=3,
                          max_wait=5.0)
    while not stopping.wait(1.0 / rate):
        try:
            publisher.publish(**_random_notification(users))
            published += 1
        except PublishRejected as exc:
            log.warning("publish refused: %s", exc)
        except PublishGaveUp as exc:
            log.warning("publish failed: %s", exc)
            stopping.wait(1.0)
    publisher.close()
    # A client whose server stopped first waits up to a ping interval (25 s)
    # in disconnect() for its writer; the demo stops within a few seconds.
    gevent.joinall([gevent.spawn(client.disconnect) for client in clients],
                   timeout=DISCONNECT_WAIT_S)
    print(f"demo: stopped after {published} publishes", flush=True)
    return 0


def _wait_until_up(http: urllib3.PoolManager, base: str, stopping: gevent.event.Event) -> None:
    while not stopping.is_set():
        try:
            if http.request("GET", f"{base}/healthz").status in (200, 503):
                return
        except urllib3.exceptions.HTTPError:
            pass
        stopping.wait(0.5)


def _random_notification(users: list[str]) -> dict:
    if random.random() < 0.1:
        target: dict = {"broadcast": True}
    else:
        target = {"user_id": random.choice(users)}
    return {
        **target,
        "category": random.choice(CATEGORIES),
        "priority": random.choice(PRIORITIES),
        "payload": {"title": "demo", "value": random.randint(1, 1000)},
    }


def _receiver(base: str, user: str, token: str) -> socketio.Client:
    client = socketio.Client(reconnection=True, reconnection_delay_max=5)
    state = {"last": None}

    @client.on("notifications")
    def _on_notifications(batch: list) -> None:
        # python-engineio's client handles each message in a thread of its
        # own, so batches may be handled out of the order they came in: the
        # highest offset seen is what to ack and to resume from
        state["last"] = max(state["last"] or 0, batch[-1]["offset"])
        client.emit("ack", {"offset": state["last"]})

    def _auth() -> dict:
        auth = {"token": token}
        if state["last"] is not None:
            auth["last_offset"] = state["last"]
        return auth

    client.connect(base, auth=_auth, transports=["websocket"], wait_timeout=10)
    return client
