"""A Node.js process that prints one JSON event per stdout line (the
official socket.io-client scripts under clients/js), read as events."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time


class NodeEvents:
    def __init__(self, argv: list[str], *, stdin: bool = False) -> None:
        self.process = subprocess.Popen(
            ["node", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.PIPE if stdin else None)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None, "started with stdout=PIPE"
        for line in self.process.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "eof"})

    def next_event(self, name: str, timeout: float) -> dict | None:
        """Events up to the first named ``name`` (kept in ``seen``); None if
        it did not come in time, or the process ended first."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=max(0.01, left))
            except queue.Empty:
                break
            self.seen.append(event)
            if event["event"] == name:
                return event
            if event["event"] == "eof":
                break
        return None

    def expect(self, name: str, timeout: float, stderr_chars: int = 2000) -> dict:
        """The next event named ``name``; AssertionError, with what was seen
        and the process's stderr if it ended, when it does not come in time."""
        event = self.next_event(name, timeout)
        if event is None:
            raise AssertionError(f"no {name!r} event; saw {self.seen[-20:]}; "
                                 f"stderr: {self.stderr_if_ended(stderr_chars)}")
        return event

    def stderr_if_ended(self, last: int = 2000) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()[-last:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
