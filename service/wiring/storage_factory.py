"""The storage of a ``serve`` process: the engine, the notification log
behind its cache, the control log and the offline-queue trimmer.

Nothing here connects or creates a table: connections open on first use,
and the schema is ``python -m service migrate``'s (service.adapters.migrate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from service.adapters.control_log import SqlControlLog
from service.adapters.database import make_engine
from service.adapters.notification_log import SqlNotificationLog
from service.adapters.patches import PatchesInForce
from service.adapters.patches.pool_checkout import pool_class
from service.adapters.stream_trim import SqlStreamTrimmer
from service.config import Settings
from service.domain.cache import TtlLruCache
from service.service_layer.cache_stats import make_caches
from service.service_layer.cached_log import CachedNotificationLog, InvalidatingTrimmer


@dataclass(frozen=True)
class Storage:
    engine: Engine
    sql_log: SqlNotificationLog  # uncached: the log's head, for the log follower
    log: CachedNotificationLog  # every read and write of the log goes through it
    caches: dict[str, TtlLruCache]  # "user", "global": the two levels of log.cache
    control_log: SqlControlLog


def build_engine(settings: Settings, patches: PatchesInForce) -> Engine:
    return make_engine(settings.database_url, pool=settings.db_pool,
                       poolclass=pool_class(patches))


def build_storage(settings: Settings, patches: PatchesInForce) -> Storage:
    engine = build_engine(settings, patches)
    # Every read and write of the log goes through its cache, so that each
    # write drops (at commit, before its caller is answered) what it changed.
    caches = make_caches(settings.tunables())
    sql_log = SqlNotificationLog(engine, key_window_s=settings.idempotency_window)
    # A publish-only node hears no other node's writes: it must not cache reads.
    cached = CachedNotificationLog(sql_log, users=caches["user"], shared=caches["global"],
                                   cache_reads=not settings.write_only)
    return Storage(engine=engine, sql_log=sql_log, log=cached, caches=caches,
                   control_log=SqlControlLog(engine))


def build_trimmer(settings: Settings, storage: Storage,
                  tell_others: Callable[[], None] | None) -> InvalidatingTrimmer:
    """The SQL trimmer, dropping what it changed from the cache (and, in a
    cluster, telling the other nodes to drop theirs)."""
    return InvalidatingTrimmer(
        SqlStreamTrimmer(storage.engine, key_window_s=settings.idempotency_window),
        storage.log, tell_others=tell_others)
