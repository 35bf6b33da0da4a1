"""A python-socketio client that handles events in the order they arrive.

python-engineio's threaded client runs the handler of every message in a
thread of its own (``_trigger_event(..., run_async=True)``), so a small
batch that arrives right after a large one can be handled first: the server
sent them in order, and the client saw them out of order. That is what made
tests/e2e/test_faults.py's replay test fail once on a loaded machine
(501.. before 1..500). Here each message is handled in the read loop, as it
arrives, which is what a browser's client does."""

from __future__ import annotations

import threading
from typing import Any

import engineio
import socketio


class InOrderEngineIOClient(engineio.Client):
    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["run_async"] = False  # handle it now, in arrival order
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    """Handlers must not block for an answer (``call``): they run in the
    read loop, which would wait on itself."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return InOrderEngineIOClient


class PyClient:
    def __init__(self, url: str, token: str, last_offset: int | None = None, ack: bool = True,
                 client_class: type[socketio.Client] = InOrderClient) -> None:
        self.received: list[dict] = []
        self.errors: list[dict] = []
        self.changed = threading.Condition()
        self.sio = client_class(reconnection=False)
        self.sio.on("notifications", self._on_notifications)
        self.sio.on("error", self.errors.append)
        self.ack = ack
        self.on_batch = None  # test hook: called with each batch before it is recorded
        auth: dict[str, Any] = {"token": token}
        if last_offset is not None:
            auth["last_offset"] = last_offset
        self.sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)

    def _on_notifications(self, batch: list[dict]) -> None:
        if self.on_batch is not None:
            self.on_batch(batch)
        with self.changed:
            self.received.extend(batch)
            self.changed.notify_all()
        if self.ack and self.sio.connected:  # a batch may land as the test closes it
            try:
                self.sio.emit("ack", {"offset": batch[-1]["offset"]})
            except socketio.exceptions.BadNamespaceError:
                pass  # closed between the check and the emit: nothing to acknowledge to

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.received) >= count, timeout)
        return list(self.received)

    def close(self) -> None:
        self.sio.disconnect()


def publish_n(server: Any, user_id: str, n: int, start: int = 0,
              priority: str = "normal") -> list[dict]:
    return [
        server.publish({"user_id": user_id, "category": "chat", "priority": priority,
                        "payload": {"seq": start + i}})
        for i in range(n)
    ]
