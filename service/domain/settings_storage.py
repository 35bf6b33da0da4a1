"""Settings table, storage and cluster: the notification log, its pool,
group commit, the query cache, Redis. Rows of service.domain.settings_table
(see service.domain.setting)."""

from __future__ import annotations

from service.domain.setting import Kind, Setting, Unit

SECTION = "Storage and cluster"
DAY = 86_400

SETTINGS: tuple[Setting, ...] = (
    Setting("WRITE_BATCH_SIZE", Kind.INT, "publishes appended in one transaction at most "
            "([group commit](operations.md#group-commit))", per_level=(10, 50, 100, 200),
            minimum=1, maximum=10_000, live=True, floor=1),
    Setting("WRITE_BATCH_WINDOW_MS", Kind.FLOAT,
            "how long a lone publish waits for others to share its commit; `0`: none "
            "(publishes gather only while a commit is in flight)", default=0.0,
            minimum=0, maximum=100, live=True, capped=True, unit=Unit.MILLISECONDS),
    Setting("CACHE_ENTRIES", Kind.INT,
            "values in the per-user level of the [query cache](operations.md#query-result-cache) "
            "at most (the global level holds a tenth); `0` turns the cache off",
            per_level=(1_000, 5_000, 10_000, 20_000), minimum=0, maximum=1_000_000, live=True),
    Setting("CACHE_TTL_S", Kind.FLOAT,
            "a cached value is dropped after this many seconds, changed or not",
            per_level=(3_600.0, 7_200.0, 10_800.0, 14_400.0), minimum=1, maximum=7 * DAY,
            live=True, unit=Unit.SECONDS),
    Setting("CACHE_MAX_BYTES", Kind.INT,
            "bytes of cached values at most (stored form, after compression): 7/8 for the "
            "per-user level, 1/8 for the global one", default=64 << 20,
            minimum=0, maximum=1 << 34, live=True, unit=Unit.BYTES),
    Setting("CACHE_COMPRESS_MIN_BYTES", Kind.INT,
            "a cached value whose encoded form is this long or longer is stored "
            "zlib-compressed (if that is smaller); `0`: never", default=2048,
            minimum=0, maximum=1 << 24, live=True, unit=Unit.BYTES),
    Setting("DATABASE_URL", Kind.SPECIAL,
            "the notification log. PostgreSQL: `postgresql://user:pass@host:5432/db`; "
            "`postgres://` and `postgresql+psycopg2://` mean the same (psycopg2, the driver "
            "installed). Any other scheme is refused at start, in one line (exit 2)",
            default="", shown_default="`sqlite:///<VAR_DIR>/notify.sqlite3`"),
    Setting("DB_SLOW_MS", Kind.FLOAT,
            "statements slower than this are counted as `slow` in `db_query`, and under their "
            "shape (values replaced by `?`) in `db_slow_query`", default=100.0,
            unit=Unit.MILLISECONDS),
    Setting("DB_POOL_SIZE", Kind.INT, "PostgreSQL connections kept in the pool (SQLite keeps "
            "one). Start-up only, like the three below", per_level=(5, 10, 20, 30), floor=1),
    Setting("DB_MAX_OVERFLOW", Kind.INT,
            "connections opened beyond the pool under load, closed when returned",
            per_level=(5, 10, 20, 30)),
    Setting("DB_POOL_TIMEOUT", Kind.FLOAT, "seconds a request waits for a connection before "
            "it fails with 503; waits are in `db_pool`", per_level=(5.0, 5.0, 10.0, 10.0),
            unit=Unit.SECONDS),
    Setting("DB_POOL_PRE_PING", Kind.FLAG, "test each connection before use, so that a "
            "restarted PostgreSQL costs no failed request; `0` skips it", default=True),
    Setting("REDIS_URL", Kind.TEXT,
            "several nodes share one PostgreSQL log and fan out through python-socketio's "
            "`RedisManager` at this URL (`redis://`, `rediss://`, `redis+sentinel://`); see "
            "[operations](operations.md#several-nodes)", default=None,
            shown_default="unset (single node)"),
    Setting("REDIS_CHANNEL", Kind.SPECIAL,
            "the Redis channel, and the prefix of the presence keys: nodes with the same one "
            "form one cluster (1-64 of `A-Za-z0-9_.:-`)", default="notify"),
    Setting("WRITE_ONLY", Kind.FLAG,
            "`1`: a publish-only node. It serves the HTTP APIs and hands what it commits to the "
            "other nodes through Redis; it refuses Socket.IO clients (`publish_only_node`) and "
            "caches no reads. Needs `REDIS_URL`", default=False),
    Setting("LOG_FOLLOW_INTERVAL", Kind.FLOAT,
            "seconds between two reads of the log's head by each node of a cluster, to deliver "
            "what a lost Redis message did not bring (at most 60)", default=1.0,
            maximum=60, capped=True, unit=Unit.SECONDS),
    Setting("PRESENCE_INTERVAL", Kind.FLOAT,
            "seconds between two presence reports of a node to Redis; a node that stops "
            "reporting leaves the totals after three (at most 300)", default=5.0,
            maximum=300, capped=True, unit=Unit.SECONDS),
)
