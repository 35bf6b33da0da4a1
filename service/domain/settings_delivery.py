"""Settings table, delivery: the optimization level and what it presets,
backpressure, the offline queue. Rows of service.domain.settings_table (see
service.domain.setting). The values per level are the presets of
service.domain.levels; docs/configuration.md says where they come from."""

from __future__ import annotations

from service.domain.backpressure_policy import DEFAULT_ACTIONS
from service.domain.idempotency import DEFAULT_WINDOW_S
from service.domain.model import Priority
from service.domain.setting import DEFAULT_LEVEL, Kind, Setting, Unit
from service.domain.token_bucket import Rate

SECTION = "Delivery"
DAY = 86_400
KIB, MIB = 1 << 10, 1 << 20


def _rates(low: tuple[float, float], normal: tuple[float, float],
           high: tuple[float, float]) -> dict[Priority, Rate | None]:
    """Per user and priority. critical is never throttled: it is what a flood
    must not block."""
    return {Priority.CRITICAL: None, Priority.LOW: Rate(*low), Priority.NORMAL: Rate(*normal),
            Priority.HIGH: Rate(*high)}


SETTINGS: tuple[Setting, ...] = (
    Setting("OPTIMIZATION_LEVEL", Kind.SPECIAL,
            "`conservative`, `balanced`, `aggressive` or `maximum`: sets the defaults of the "
            "delivery parameters below (see [Levels](#optimization-levels)); a variable set "
            "explicitly wins", default=DEFAULT_LEVEL),
    # smallest batches and tightest limits at `conservative`: lowest latency and memory,
    # least throughput; biggest batches at `maximum`: most throughput per CPU
    Setting("BATCH_SIZE", Kind.INT, "a connection's batch goes out when this many "
            "notifications wait (1 disables batching)", per_level=(10, 50, 100, 100),
            minimum=1, maximum=1_000, live=True, floor=1),
    Setting("BATCH_TIMEOUT_MS", Kind.FLOAT,
            "…or when the most urgent waiting one has waited its share of this: `high` a "
            "quarter, `normal` all, `low` twice (at most 200 ms); `critical` goes at once, with "
            "what waited before it", per_level=(25.0, 50.0, 100.0, 200.0),
            minimum=1, maximum=1_000, live=True, unit=Unit.MILLISECONDS),
    Setting("MAX_CONNECTIONS", Kind.INT, "open Socket.IO connections one node accepts; one "
            "more is refused with `connection_limit` (`field: node`)",
            per_level=(5_000, 15_000, 30_000, 50_000), minimum=1, maximum=1_000_000, live=True),
    Setting("MAX_CONNECTIONS_PER_USER", Kind.INT,
            "open connections one user may hold on a node (`field: user`)",
            per_level=(5, 10, 20, 50), minimum=1, maximum=10_000, live=True),
    Setting("SEND_QUEUE_MAX_BYTES", Kind.INT,
            "notifications queued for one connection and not yet written to its socket; past "
            "this the client is closed as a slow consumer (its entries stay in the log, and a "
            "reconnect replays them)", per_level=(256 * KIB, 1 * MIB, 2 * MIB, 4 * MIB),
            minimum=16 * KIB, maximum=1 << 30, live=True, unit=Unit.BYTES),
    Setting("SOCKET_UNSENT_MAX_BYTES", Kind.INT,
            "bytes the kernel may hold for one connection that it has not yet sent (Linux's "
            "`TCP_NOTSENT_LOWAT`); what does not fit waits in the node's send queue, where "
            "`SEND_QUEUE_MAX_BYTES` bounds it. With `0` the kernel's send buffer takes up to "
            "`tcp_wmem`'s maximum (4 MiB here): a client that stops reading has megabytes "
            "waiting in the kernel before the node sees it as slow. Set (e.g. `131072`), a "
            "slow consumer is closed that much sooner, and so is a client that reads but not "
            "at once through a burst larger than the two bounds together: in the suite, a "
            "Python client reading a 9 MB flood was closed with 128 KiB and a 200 KB queue "
            "([operations](operations.md#backpressure-and-the-memory-budget))",
            default=0, unit=Unit.BYTES, shown_default="`0` (the kernel's own)"),
    Setting("THROTTLE", Kind.RATES,
            "per user and priority, on each node: notifications per second and burst "
            "(`priority=RATE:BURST`, or `priority=off`); `critical` is never throttled. A "
            "publish past it answers 429 with `Retry-After` and stores nothing",
            per_level=(_rates((50, 100), (100, 200), (200, 400)),
                       _rates((50, 100), (200, 400), (500, 1000)),
                       _rates((100, 300), (300, 600), (500, 1000)),
                       _rates((200, 500), (500, 1000), (500, 1000))), live=True),
    Setting("GC_GEN0_THRESHOLD", Kind.INT,
            "allocations between two young-generation garbage collections, set once start-up "
            "is done (Python's default is 700). Reference counting frees most garbage; "
            "collecting less often cost 5 % less CPU under load in "
            "[benchmarks](benchmarks.md#gc-tuning)", per_level=(700, 20_000, 50_000, 100_000),
            minimum=100, maximum=10_000_000, live=True, floor=1),
    Setting("GC_FREEZE", Kind.FLAG, "`gc.freeze()` after start-up: what start-up made "
            "(modules, the app) is never scanned again. `0` keeps it in view", default=True),
    Setting("OFFLINE_QUEUE_MAX", Kind.INT,
            "entries kept per user stream (the offline queue and recent history); the oldest "
            "beyond it are removed. A client that had not received them is told to `reload` "
            "([Socket.IO](socketio.md))", per_level=(200, 1_000, 5_000, 10_000),
            minimum=1, maximum=10_000_000, live=True, floor=1),
    Setting("OFFLINE_QUEUE_MAX_AGE", Kind.FLOAT, "seconds an entry is kept at most",
            default=7 * DAY * 1.0, unit=Unit.SECONDS),
    Setting("OFFLINE_TRIM_INTERVAL", Kind.FLOAT,
            "seconds between two applications of those bounds (on PostgreSQL one node at a "
            "time, under an advisory lock)", default=60.0, floor=0.1, unit=Unit.SECONDS),
    Setting("IDEMPOTENCY_WINDOW", Kind.FLOAT,
            "seconds an `Idempotency-Key` is remembered: a retry with the key within it is "
            "answered the first result and stores nothing ([api](api.md)); keys past it are "
            "deleted with the offline-queue trim", default=DEFAULT_WINDOW_S, unit=Unit.SECONDS),
    Setting("MEMORY_BUDGET_MB", Kind.INT,
            "the node's memory budget: over it, new connections and `low` publishes are "
            "refused, `normal` and `high` deliveries deferred "
            "([operations](operations.md#backpressure-and-the-memory-budget))",
            per_level=(256, 512, 1_024, 2_048), minimum=16, maximum=1 << 20, live=True,
            floor=16, unit=Unit.MEGABYTES),
    Setting("BACKPRESSURE_HIGH_WATER_BYTES", Kind.INT,
            "bytes waiting for clients over all connections past which backpressure engages; "
            "released under a quarter of it", default=0, floor=0, unit=Unit.BYTES,
            shown_default="a quarter of the budget"),
    Setting("BACKPRESSURE", Kind.SPECIAL,
            "the action per priority while backpressure is engaged: `refuse` (429), `defer` "
            "(stored, delivered later) or `deliver`; priorities not named keep the default",
            default=DEFAULT_ACTIONS),
    Setting("IDLE_TIMEOUT", Kind.FLOAT, "seconds without any event from a client (ack, or "
            "anything else) before the server closes the connection", default=300.0,
            minimum=1, maximum=7 * DAY, live=True, unit=Unit.SECONDS),
    Setting("COMPRESSION_MIN_BYTES", Kind.INT,
            "batches of this many JSON bytes or more go zlib-compressed, as binary, to clients "
            "that connected with `compression: \"deflate\"` ([Socket.IO](socketio.md)); `0` "
            "never compresses", default=4096, minimum=0, maximum=1 << 24, live=True, floor=0,
            unit=Unit.BYTES),
)
