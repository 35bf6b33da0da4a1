"""PostgreSQL restarted while publishers publish: a publish that cannot be
stored gets 503 with Retry-After, nothing acknowledged is lost, and the node
recovers by itself, with no restart of its own."""

import shutil
import subprocess
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from tests.support.exception_text import exception_text
from tests.support.py_client import PyClient

CLUSTER = ("15", "main")


def restart_postgresql() -> None:
    """A real restart of the machine's PostgreSQL (fast shutdown: sessions
    are cut, as in a crash or a failover)."""
    if shutil.which("pg_ctlcluster") is None:
        pytest.fail("pg_ctlcluster is needed to restart PostgreSQL (Debian's postgresql-common)")
    subprocess.run(["pg_ctlcluster", *CLUSTER, "restart", "-m", "fast"], check=True,
                   capture_output=True, timeout=60)


def test_a_postgresql_restart_during_publishing_loses_nothing_acknowledged(server, pg_url):
    """Every acknowledged publish is stored at its offset, the log has no gap,
    and the clients connected meanwhile stay connected, are sent every
    acknowledged publish of theirs once, in order, and their acks reach the
    log once it is back."""
    receivers = [PyClient(server.url, server.token(f"u{k}")) for k in range(2)]
    acked: dict[str, int] = {}  # notification id -> offset, for every 202
    sent_to: dict[str, str] = {}  # notification id -> its user
    refused: list[tuple[int, str | None]] = []
    unexpected: list[str] = []
    stop = threading.Event()

    def publisher(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                response = server.request(
                    "POST", "/api/v1/notifications", token=server.env["PUBLISH_TOKEN"],
                    body={"user_id": f"u{k}", "category": "fault", "payload": {"i": i}})
            except Exception as exc:  # the node itself must stay up
                unexpected.append(repr(exc))
                time.sleep(0.05)
                continue
            if response.status == 202:
                answer = response.json()
                acked[answer["id"]] = answer["offset"]
                sent_to[answer["id"]] = f"u{k}"
                i += 1
            elif response.status == 503:
                refused.append((response.status, response.headers.get("Retry-After")))
                assert response.json()["error"] == "storage_unavailable"
                if exception_text(response.data.decode(errors="replace")):  # psycopg2's words
                    unexpected.append(f"503 with exception text: {response.data[:300]!r}")
                time.sleep(0.05)
            else:
                unexpected.append(f"{response.status} {response.data[:200]!r}")

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        before = len(acked)
        restart_postgresql()
        deadline = time.monotonic() + 30
        while len(acked) < before + 200 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert unexpected == []
    assert before > 0 and len(acked) >= before + 200, "publishing did not recover by itself"
    assert refused, "the restart refused no publish: it did not cut anything"
    assert all(retry is not None and int(retry) >= 1 for _, retry in refused)
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT id, log_offset FROM log_entries")).all())
    lost = {i: o for i, o in acked.items() if stored.get(i) != o}
    assert lost == {}, f"{len(lost)} acknowledged publishes are missing or moved"
    offsets = sorted(stored.values())
    assert offsets == list(range(1, len(offsets) + 1)), "the log has a gap"
    assert server.request("GET", "/healthz").status == 200

    for k, receiver in enumerate(receivers):
        theirs = sorted(o for i, o in acked.items() if sent_to[i] == f"u{k}")
        receiver.wait_for(len(theirs), timeout=15)
        time.sleep(0.3)  # a duplicate would come now
        got = [n["offset"] for n in receiver.received]
        assert receiver.sio.connected, "a live connection was dropped"
        assert got == sorted(set(got)), "delivered out of order, or twice"
        # what was acknowledged, and perhaps a publish stored as its answer was cut
        assert set(theirs) <= set(got) <= set(stored.values())
        receiver.close()
    deadline = time.monotonic() + 10  # the acks made around the restart are not lost
    expected = {f"u{k}": receivers[k].received[-1]["offset"] for k in range(2)}
    with engine.connect() as conn:
        while True:
            durable = dict(conn.execute(text("SELECT user_id, acked FROM log_streams")).all())
            if all(durable.get(u) == o for u, o in expected.items()) or \
                    time.monotonic() > deadline:
                break
            conn.rollback()
            time.sleep(0.2)
    engine.dispose()
    assert all(durable.get(u) == o for u, o in expected.items()), (durable, expected)
    print(f"{len(acked)} acknowledged, {len(refused)} refused with 503 during the restart")
