"""InfluxDB through its 1.x-compatible HTTP API: /ping, /write and /query.

InfluxDB 1.x serves this natively, 2.x and 3.x as their compatibility API
(with ``Authorization: Token``), so one client serves all three.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
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


_DURATION = re.compile(r"^(INF|\d+[mhdw])$")

# The retention policy of raw telemetry. Every write and every raw read names
# it: a write or query without one goes to the database's default, and on
# InfluxDB 2.x that is whichever DBRP mapping is the default, which may be a
# rollup bucket (docs/querying.md).
RAW_POLICY = "raw"


@dataclass(frozen=True)
class Retention:
    """How long raw events and rollups are kept (InfluxQL durations: 7d, 52w, INF).

    Raw events go to ``raw`` (``RAW_POLICY``, also the database's default on
    1.x); the analysis jobs write rollups to ``rollup_1m`` and ``rollup_1h``.
    """

    raw: str = "7d"
    rollup_1m: str = "90d"
    rollup_1h: str = "730d"

    def __post_init__(self) -> None:
        for name in ("raw", "rollup_1m", "rollup_1h"):
            if not _DURATION.match(getattr(self, name)):
                raise ValueError(f"retention {name} must look like 7d, 12h, 52w or INF, "
                                 f"not {getattr(self, name)!r}")

    def policies(self) -> list[tuple[str, str, bool]]:
        return [(RAW_POLICY, self.raw, True), ("rollup_1m", self.rollup_1m, False),
                ("rollup_1h", self.rollup_1h, False)]


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
            # the writer, the status routes and, in the jobs process, a few
            # jobs at once: past this, urllib3 warns and drops connections
            maxsize=8,
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
            text = _error_text(response)
            if "retention policy not found" in text:
                # 1.x answers a /write to a missing policy with a 500, but
                # waiting will not make the policy: it is a refusal (2.x: 404)
                raise InfluxRejected(404, text)
            raise InfluxUnavailable(f"{response.status}: {text}")
        if response.status >= 400:
            raise InfluxRejected(response.status, _error_text(response))
        return response

    def ping(self) -> bool:
        try:
            self._request("GET", "/ping", timeout=2.0)
        except (InfluxUnavailable, InfluxRejected):
            return False
        return True

    def ensure_database(self, retention: Retention | None = None) -> None:
        """Create the database and its retention policies (``Retention()``'s
        durations unless given), ``raw`` the default; applied again, it sets
        the durations given.

        CREATE DATABASE is idempotent on 1.x. On 2.x/3.x the buckets (and
        their retention) and the DBRP mappings are made by the operator
        (provisioning/influxdb/); these statements are refused there and the
        refusal is ignored.
        """
        db = self.settings.database
        try:
            self.query(f'CREATE DATABASE "{db}"', method="POST", db=None)
        except InfluxRejected:
            return
        retention = retention or Retention()
        existing = self.retention_policies()
        for name, duration, default in retention.policies():
            verb = "ALTER" if name in existing else "CREATE"
            statement = (f'{verb} RETENTION POLICY "{name}" ON "{db}" DURATION {duration}'
                         f"{' REPLICATION 1' if verb == 'CREATE' else ''}"
                         f"{' DEFAULT' if default else ''}")
            self.query(statement, method="POST", db=None)

    def retention_policies(self) -> dict[str, str]:
        results = self.query(f'SHOW RETENTION POLICIES ON "{self.settings.database}"', db=None)
        series = results[0].get("series", []) if results else []
        if not series:
            return {}
        columns = series[0]["columns"]
        return {row[columns.index("name")]: row[columns.index("duration")]
                for row in series[0]["values"]}

    def write_lines(self, lines: list[str], *, database: str | None = None,
                    retention_policy: str | None = None) -> None:
        body = gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=1)
        self.write_gzip(body, database=database, retention_policy=retention_policy)

    def write_gzip(self, body: bytes, *, database: str | None = None,
                   retention_policy: str | None = None) -> None:
        """Write to ``retention_policy``, ``raw`` when None: the /write ``rp``
        parameter, a DBRP mapping on 2.x. Never to the database's default,
        which on 2.x may be a rollup bucket."""
        params = {"db": database or self.settings.database, "precision": "ns",
                  "rp": retention_policy or RAW_POLICY}
        query = urlencode(params)
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
