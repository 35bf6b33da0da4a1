"""``JobLock``: one run of a job at a time, across nodes and processes.

- PostgreSQL: ``pg_try_advisory_lock`` on a connection held for the run. The
  key is a stable 64-bit hash of the job's name. The lock is released in a
  ``finally``, also when the run raises; if the unlock itself fails the
  connection is discarded, and PostgreSQL releases a session's advisory
  locks when its session ends (so also when the node dies mid-run).
- SQLite (one machine): an exclusive ``fcntl.flock`` on a file next to the
  database file, ``<database>.job-<name>.lock``. Every process using that
  database sees the same file; the kernel releases the lock when the process
  dies. ``flock`` locks belong to the open file, so two opens in one process
  exclude each other too.
- In memory: one process only (unit tests).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key, the same on every node and run."""
    digest = hashlib.sha256(f"notify-job:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgAdvisoryJobLock:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        key = lock_key(name)
        with self._engine.connect() as conn:
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                     {"k": key}).scalar())
            conn.commit()  # end the transaction: the lock is the session's
            if not held:
                yield False
                return
            try:
                yield True
            finally:
                self._release(conn, key, name)

    @staticmethod
    def _release(conn: Connection, key: int, name: str) -> None:
        try:
            conn.rollback()  # a run that failed mid-statement left it aborted
            released = conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not released:
                raise RuntimeError("pg_advisory_unlock answered false")
        except Exception:
            # the session, and with it the lock, must not go back to the pool
            log.warning("job lock %s: unlock failed; closing its connection", name,
                        exc_info=True)
            conn.invalidate()


class FileJobLock:
    def __init__(self, directory: str | os.PathLike, prefix: str = "") -> None:
        self._directory = Path(directory)
        self._prefix = prefix

    def path(self, name: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        return self._directory / f"{self._prefix}job-{safe}.lock"

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class InMemoryJobLock:
    """Names held by this process (unit tests; a single process)."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self._mutex = threading.Lock()

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        with self._mutex:
            taken = name not in self.held
            self.held.add(name)
        if not taken:
            yield False
            return
        try:
            yield True
        finally:
            with self._mutex:
                self.held.discard(name)


def job_lock_for(engine: Engine, var_dir: str | os.PathLike) -> PgAdvisoryJobLock | FileJobLock:
    """The lock that suits the database: advisory locks on PostgreSQL, a
    file lock beside the SQLite file (under ``var_dir`` for one in memory)."""
    if engine.dialect.name == "postgresql":
        return PgAdvisoryJobLock(engine)
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file::memory"):
        db_path = Path(database).resolve()
        return FileJobLock(db_path.parent, prefix=f"{db_path.name}.")
    return FileJobLock(Path(var_dir) / "locks")
