"""InfluxDB through its 1.x-compatible HTTP API: /ping, /write and /query.

InfluxDB 1.x serves this natively, 2.x and 3.x as their compatibility API
(with ``Authorization: Token``), so one client serves all three.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3


class InfluxUnavailable(Exception):
    """InfluxDB could not be reached or answered 5xx: retry later."""


class InfluxRejected(Exception):
    """InfluxDB answered 4xx: retrying the same request will not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class InfluxSettings:
    url: str = "http://127.0.0.1:8086"
    database: str = "notify"
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 5.0


class InfluxClient:
    def __init__(self, settings: InfluxSettings, pool: urllib3.PoolManager | None = None) -> None:
        self.settings = settings
        self._base = settings.url.rstrip("/")
        self._pool = pool or urllib3.PoolManager(
            num_pools=2,
            maxsize=4,
            retries=False,
            timeout=urllib3.Timeout(connect=min(2.0, settings.timeout), read=settings.timeout),
        )
        self._headers: dict[str, str] = {}
        if settings.token:
            self._headers["Authorization"] = f"Token {settings.token}"
        elif settings.username:
            raw = f"{settings.username}:{settings.password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()

    def _request(self, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = self._pool.request(method, self._base + path, headers=headers, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise InfluxUnavailable(f"{self._base}: {exc}") from exc
        if response.status >= 500:
            raise InfluxUnavailable(f"{response.status}: {_error_text(response)}")
        if response.status >= 400:
            raise InfluxRejected(response.status, _error_text(response))
        return response

    def ping(self) -> bool:
        try:
            self._request("GET", "/ping", timeout=2.0)
        except (InfluxUnavailable, InfluxRejected):
            return False
        return True

    def ensure_database(self) -> None:
        """CREATE DATABASE is idempotent on 1.x; on 2.x/3.x the bucket is made
        by the operator and this call is answered with an error we ignore."""
        try:
            self.query(f'CREATE DATABASE "{self.settings.database}"', method="POST", db=None)
        except InfluxRejected:
            pass

    def write_lines(self, lines: list[str], *, database: str | None = None) -> None:
        body = gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=1)
        self.write_gzip(body, database=database)

    def write_gzip(self, body: bytes, *, database: str | None = None) -> None:
        query = urlencode({"db": database or self.settings.database, "precision": "ns"})
        self._request(
            "POST",
            f"/write?{query}",
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )

    def query(
        self, influxql: str, *, method: str = "GET", db: str | None = "", epoch: str = "ms"
    ) -> list[dict]:
        """Run InfluxQL; return the ``results`` list. Raise on any error."""
        params = {"q": influxql}
        if epoch:
            params["epoch"] = epoch
        database = self.settings.database if db == "" else db
        if database:
            params["db"] = database
        if method == "POST":
            response = self._request("POST", "/query", fields=params, encode_multipart=False)
        else:
            response = self._request("GET", "/query", fields=params)
        document = json.loads(response.data or b"{}")
        results = document.get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxRejected(400, result["error"])
        return results


def _error_text(response: urllib3.BaseHTTPResponse) -> str:
    try:
        return json.loads(response.data).get("error", "") or response.reason or ""
    except (ValueError, AttributeError):
        return (response.data or b"")[:200].decode("utf-8", "replace")
