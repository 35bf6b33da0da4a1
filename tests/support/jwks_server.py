"""A real, tiny JWKS server in the test process: ``keys`` is what it serves
(change it to rotate), ``requests`` counts the fetches it answered, and
``down`` makes it answer 503."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def public_jwk(private_key: Any, kid: str) -> dict:
    """The public half of an RSA (RS256) or EC P-256 (ES256) key, as a JWK."""
    public = private_key.public_key()
    is_rsa = isinstance(public, rsa.RSAPublicKey)
    jwk = (RSAAlgorithm if is_rsa else ECAlgorithm).to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256" if is_rsa else "ES256"}


class JwksServer:
    def __init__(self, keys: list[dict] | None = None) -> None:
        self.keys: list[dict] = list(keys or [])
        self.requests = 0
        self.down = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                if server.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
