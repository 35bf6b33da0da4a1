"""A tiny web site for a browser test: fixed pages and files, and a token
endpoint the test can hold shut (a page that fetches its token on every
connect then waits at it, so the test decides when it reconnects)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TYPES = {".html": "text/html; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".map": "application/json"}


class StaticSite:
    """``routes`` maps a path to a file or to the text itself; ``/token``
    answers ``token()`` once ``gate`` is set (it is at first)."""

    def __init__(self, routes: dict[str, Path | str], token: Callable[[], str]) -> None:
        self.routes = routes
        self.token = token
        self.gate = threading.Event()
        self.gate.set()
        self.held = threading.Event()  # a token request has waited at the closed gate
        self.token_requests = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/token":
                    site.token_requests += 1
                    if not site.gate.is_set():
                        site.held.set()
                        site.gate.wait(60)
                    self.answer(200, "text/plain", site.token().encode())
                    return
                found = site.routes.get(path)
                if found is None:
                    self.answer(404, "text/plain", b"not found")
                elif isinstance(found, Path):
                    self.answer(200, TYPES.get(found.suffix, "application/octet-stream"),
                                found.read_bytes())
                else:
                    self.answer(200, TYPES[".html"], found.encode())

            def answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hold_tokens(self) -> None:
        self.held.clear()
        self.gate.clear()

    def release_tokens(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
