"""Start-up checks shared by the long-running commands."""

from __future__ import annotations

import gc
import logging
import os
import sys

from service.adapters.patches import PatchesInForce, UnpatchedLibrary, check
from service.config import Settings

UNPATCHED_EXIT = 7  # a library is not the version its patch was written for


class NotMonkeyPatched(RuntimeError):
    pass


def check_monkey_patched() -> None:
    """Refuse to start a gevent process whose standard library is not patched:
    one blocking socket call would then freeze every connection."""
    from gevent import monkey

    missing = [
        m
        for m in ("socket", "ssl", "threading", "select", "time")
        if not monkey.is_module_patched(m)
    ]
    if missing:
        raise NotMonkeyPatched(
            "gevent monkey-patching was not applied to: "
            + ", ".join(missing)
            + ". Start through `python -m service`, which patches first."
        )
    try:
        import psycopg2.extensions
        from psycogreen.gevent import gevent_wait_callback

        if psycopg2.extensions.get_wait_callback() is not gevent_wait_callback:
            raise NotMonkeyPatched("psycogreen's wait callback is not installed for psycopg2")
    except ImportError:
        pass


def start_process(log_tag: str = "") -> int | None:
    """The common start of ``serve`` and ``jobs``: logging, then the
    monkey-patching check. Returns an exit code if the process must not start.
    ``log_tag`` marks each log line (a worker's ``w2``: the workers of
    ``serve --workers`` share one stderr)."""
    configure_logging(log_tag)
    try:
        check_monkey_patched()
    except NotMonkeyPatched as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 3
    return None


def library_patches(settings: Settings) -> PatchesInForce | None:
    """The library patches in force (service.adapters.patches), logged; or
    None, the reason on stderr, if the process must not start: an installed
    library is not the version its patch was written for and ALLOW_UNPATCHED
    is not set (exit status UNPATCHED_EXIT)."""
    try:
        patches = check(settings.allow_unpatched)
    except UnpatchedLibrary as exc:
        print(exc, file=sys.stderr)
        return None
    report = logging.getLogger("service.patches")
    (report.warning if patches.left_out else report.info)("%s", patches.summary())
    return patches


def migrate_database(settings: Settings, *, starting: bool) -> int:
    """The schema step: the database brought to the newest revision
    (``python -m service migrate``, and ``serve`` and ``jobs`` before they
    build anything), the revision logged. 0, or the exit status of a
    failure: 4, the database cannot be reached; 6, its tables are not this
    service's (service.adapters.migrate); 7, UNPATCHED_EXIT."""
    from sqlalchemy.engine import make_url

    from service.adapters.migrate import SchemaMismatch
    from service.bootstrap import migrate_schema
    from service.domain.errors import StorageUnavailable

    configure_logging()
    failed = "refusing to start" if starting else "cannot migrate"
    try:
        revision = migrate_schema(settings, check(settings.allow_unpatched))
    except UnpatchedLibrary as exc:
        print(exc, file=sys.stderr)
        return UNPATCHED_EXIT
    except StorageUnavailable as exc:
        print(f"{failed}: {exc.message}", file=sys.stderr)
        return 4
    except SchemaMismatch as exc:
        print(f"{failed}: {exc}", file=sys.stderr)
        return 6
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    if starting:
        logging.getLogger("service.migrate").info(
            "database schema at revision %s (%s)", revision, where)
    else:
        print(f"database schema at revision {revision} ({where})")
    return 0


def tune_gc(gen0_threshold: int, freeze: bool) -> None:
    """Once start-up is done: move everything alive now (modules, the app,
    the catalogue) out of the collector's view, and collect the young
    generation less often. Most garbage here is freed by reference counting;
    the collector only finds cycles, so scanning for them every 700
    allocations costs CPU under load for nothing. docs/benchmarks.md has the
    figures."""
    if freeze:
        gc.collect()
        gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def configure_logging(tag: str = "") -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s " + (f"[{tag}] " if tag else "")
        + "%(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Per-request and per-job lines at INFO would drown everything else, and
    # Alembic's own say which dialect it found (service.adapters.migrate logs
    # what it changed).
    for noisy in ("geventwebsocket.handler", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
