"""The job locks across sessions and processes: PostgreSQL advisory locks and
the SQLite file lock. A second holder is refused while the first holds the
lock, and gets it once the first released it, by leaving the context, by
raising in it, or by dying."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from service.adapters.database import make_engine
from service.adapters.job_lock import PgAdvisoryJobLock, job_lock_for, lock_key

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""
    import sys
    from service.adapters.database import make_engine
    from service.adapters.job_lock import job_lock_for
    lock = job_lock_for(make_engine(sys.argv[1]), sys.argv[2])
    with lock.hold("rollups") as held:
        print("held" if held else "refused", flush=True)
        sys.stdin.readline()  # hold until the test closes stdin
""")


def holder(url, var_dir):
    """A process holding the ``rollups`` lock until its stdin is closed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(var_dir)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def pg_engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_a_second_session_is_refused_until_the_first_releases(pg_engine, pg_url):
    other = make_engine(pg_url)
    try:
        one, two = PgAdvisoryJobLock(pg_engine), PgAdvisoryJobLock(other)
        with one.hold("rollups") as first:
            assert first
            with two.hold("rollups") as second, two.hold("trends") as trends:
                assert (second, trends) == (False, True)
        with pytest.raises(RuntimeError), one.hold("rollups"):
            raise RuntimeError("the run failed")
        with two.hold("rollups") as again:
            assert again
    finally:
        other.dispose()


@pytest.mark.postgres
def test_no_advisory_lock_is_left_behind_in_the_pool(pg_engine):
    lock = PgAdvisoryJobLock(pg_engine)
    for _ in range(3):
        with lock.hold("rollups") as held:
            assert held
    with pg_engine.connect() as conn:
        left = conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())")).scalar()
    assert left == 0
    assert lock_key("rollups") != lock_key("trends")


@pytest.mark.postgres
def test_another_process_holding_the_advisory_lock_makes_this_one_wait_its_turn(
        pg_engine, pg_url, tmp_path):
    lock = job_lock_for(pg_engine, tmp_path)
    assert isinstance(lock, PgAdvisoryJobLock)
    proc = holder(pg_url, tmp_path)
    try:
        with lock.hold("rollups") as held:
            assert not held
    finally:
        proc.kill()  # dies holding it: its session ends, and the lock with it
        proc.wait()
    deadline = time.monotonic() + 5  # the server notices the closed socket at once, or nearly
    while True:
        with lock.hold("rollups") as held:
            if held or time.monotonic() > deadline:
                break
        time.sleep(0.05)
    assert held


def test_another_process_holding_the_file_lock_makes_this_one_wait_its_turn(tmp_path):
    url = f"sqlite:///{tmp_path / 'notify.sqlite3'}"
    engine = make_engine(url)
    lock = job_lock_for(engine, tmp_path / "var")
    proc = holder(url, tmp_path / "var")
    try:
        with lock.hold("rollups") as held, lock.hold("trends") as other:
            assert (held, other) == (False, True)
        proc.stdin.close()  # leaves the context: released
        proc.wait(10)
        with lock.hold("rollups") as held:
            assert held
        proc = holder(url, tmp_path / "var")
        proc.kill()  # dies holding it: the kernel releases it
        proc.wait()
        with lock.hold("rollups") as held:
            assert held
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()
