"""A real, tiny HTTP server in the test process (http.server in a thread)
that answers each request as a script says, and records what it was sent:
for testing HTTP clients without mocks.

A script is a list of ``Reply`` (or ``DROP``: close the connection without
an answer), used in order, the last one repeated; or a function of the
request (``Seen``) that returns one, e.g. to forward it somewhere first."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic() when it had been read

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: Any = None  # a dict/list is sent as JSON, bytes as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow node)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


DROP = object()  # close the connection without answering
Script = list | Callable[[Seen], Any]


class ScriptedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real node

            def do_POST(self) -> None:
                owner._serve(self)

            do_GET = do_PUT = do_POST

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        seen = Seen(handler.command, handler.path,
                    {k.lower(): v for k, v in handler.headers.items()}, body, time.monotonic())
        with self._lock:
            self.seen.append(seen)
            script = self.script
            if not callable(script):
                reply = script[min(len(self.seen), len(script)) - 1]
        if callable(script):  # outside the lock: a script may wait
            reply = script(seen)
        if reply is DROP:
            handler.close_connection = True
            return
        time.sleep(reply.delay)
        data = reply.encoded()
        try:
            handler.send_response(reply.status)
            if reply.body is not None and not isinstance(reply.body, bytes):
                handler.send_header("Content-Type", "application/json")
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up waiting (a timeout test)
            handler.close_connection = True

    def keys(self) -> list[str | None]:
        """The Idempotency-Key of each request, in order."""
        return [s.headers.get("idempotency-key") for s in self.seen]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def refused_url() -> str:
    """A URL where nothing listens: connecting is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
