"""Settings table, the node: where it listens, what it is called, its
process. Rows of service.domain.settings_table (see service.domain.setting)."""

from __future__ import annotations

from service.domain.setting import Kind, Setting, Unit

MAX_WORKERS = 256
SECTION = "The node"

SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", Kind.TEXT, "address `serve` listens on", default="127.0.0.1"),
    Setting("PORT", Kind.INT, "port for Socket.IO (`/socket.io`) and the HTTP APIs",
            default=8000),
    Setting("WORKERS", Kind.SPECIAL,
            "processes of `serve` sharing `PORT` (1-256, or `auto`); `serve --workers N` wins "
            "over it. Above 1 needs `REDIS_URL`; `MAX_CONNECTIONS` is divided among them, the "
            "other limits are per process ([workers](operations.md#workers))",
            default=0, minimum=1, maximum=MAX_WORKERS,
            shown_default="unset: the number of cores with `REDIS_URL` and PostgreSQL, else 1"),
    Setting("VAR_DIR", Kind.TEXT, "where the SQLite file, dev secrets, the telemetry spool and "
            "InfluxDB's local data live", default="var"),
    Setting("NODE_ID", Kind.SPECIAL, "the `node` tag on every telemetry point", default="",
            shown_default="`<hostname>-<PORT>`"),
    Setting("SERVICE_URL", Kind.SPECIAL,
            "where admins reach the control API (an absolute `http://` or `https://` URL): the "
            "jobs write it into the `curl` that applies each open recommendation (`apply` in "
            "[`analysis_recommendation`](telemetry.md#analysis_recommendation)), which "
            "Grafana's Overview shows", default="", shown_default="`http://127.0.0.1:<PORT>`"),
    Setting("GRAFANA_URL", Kind.TEXT, "where the admin redirect points",
            default="http://127.0.0.1:3000"),
    Setting("DEMO", Kind.FLAG, "`make run` starts the demo publisher unless `DEMO=0`",
            default=False, shown_default="`1` under `make run`, else `0`"),
    Setting("CORS_ALLOWED_ORIGINS", Kind.TEXT,
            "comma-separated origins allowed to open a WebSocket; tokens, not cookies, "
            "authenticate, so `*` is safe for this API", default="*"),
    Setting("PROXY_HOPS", Kind.SPECIAL,
            "proxies in front of the node that append the client's address to "
            "`X-Forwarded-For` (0-5): the per-IP rate limits and the logs use that address. "
            "Never more than there are: a client could then choose its address",
            default=0, minimum=0, maximum=5),
    Setting("PING_INTERVAL", Kind.FLOAT, "seconds between Engine.IO pings", default=25.0,
            unit=Unit.SECONDS),
    Setting("PING_TIMEOUT", Kind.FLOAT,
            "seconds to wait for a pong before the connection is closed", default=8.0,
            unit=Unit.SECONDS),
    Setting("LEAK_GRACE_S", Kind.FLOAT,
            "seconds after a connection closes before its objects, still referenced, count as "
            "leaked (`runtime_leaks`); at least `PING_INTERVAL` + `PING_TIMEOUT`, as "
            "Engine.IO's ping task holds its session that long", default=30.0,
            unit=Unit.SECONDS),
    Setting("ALLOW_UNPATCHED", Kind.FLAG,
            "`1`: start even when an installed library's version differs from the one the "
            "library patches (`service/adapters/patches`) were written for; upstream's code "
            "then runs, which uses more memory per connection",
            default=False),
    Setting("LOG_LEVEL", Kind.TEXT, "Python logging level", default="INFO",
            read_by="service.entrypoints.runtime"),
)
