"""Faults a running node must ride out (issue 9), each on real services: a
publisher flood beyond the throttle, a client too slow to keep up, a client
that never acknowledges, and a full telemetry spool while InfluxDB is down.

Each test checks that nothing acknowledged is lost (every 202 is stored,
and delivered once, in order, to a connected client; what a client missed
comes back from the log) and that the node recovers by itself, with no
restart, while the others it serves notice nothing.

Elsewhere: InfluxDB down and back (test_telemetry_durability.py),
PostgreSQL restarted (test_storage_faults.py).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import websocket
from sqlalchemy import create_engine, func, select

from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.notification_log import entries, recipients, streams
from tests.support.backing_services import unique
from tests.support.exception_text import assert_no_exception_text
from tests.support.influx_counts import connection_events
from tests.support.py_client import PyClient, publish_n
from tests.support.raw_socketio import raw_socketio_client
from tests.support.server_process import start_server, stop_server
from tests.support.telemetry_accounting import assert_accounted, drained, telemetry
from tests.support.waiting import wait_until

PATH = "/api/v1/notifications"


def offsets(notifications: list[dict]) -> list[int]:
    return [n["offset"] for n in notifications]


def metrics(server) -> dict:
    return server.request("GET", "/admin/api/performance/metrics",
                          token=server.env["ADMIN_TOKEN"]).json()


# -- a publisher flood beyond the throttle ------------------------------------------


def test_a_publisher_flood_beyond_the_throttle_loses_nothing_it_accepted(
        pg_url, influx_database, tmp_path, js_client):
    """Four publishers flood one user far past its rate: the excess gets 429
    with Retry-After; every 202 is stored and delivered exactly once, in
    order; another publisher and its receiver go on as if nothing happened;
    once the flood stops, publishing to that user works again."""
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "THROTTLE": "normal=40:20"}, tmp_path)
    engine = create_engine(pg_url)
    flooded = PyClient(server.url, server.token("fay"))
    calm = js_client(server.url, server.token("cal"), "--expect", "10", "--timeout-ms", "20000")
    accepted: dict[str, int] = {}  # id -> offset of every 202 to fay
    refused: list[tuple[str | None, dict]] = []
    unexpected: list[str] = []
    stop = threading.Event()

    def flood(k: int) -> None:
        i = 0
        while not stop.is_set():
            response = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], body={
                "user_id": "fay", "category": "flood", "payload": {"k": k, "i": i}})
            if response.status == 202:
                accepted[response.json()["id"]] = response.json()["offset"]
            elif response.status == 429:
                refused.append((response.headers.get("Retry-After"), response.json()))
            else:
                unexpected.append(f"{response.status} {response.data[:200]!r}")
            i += 1

    try:
        calm.wait_for("connect")
        threads = [threading.Thread(target=flood, args=(k,)) for k in range(4)]
        started = time.monotonic()
        for t in threads:
            t.start()
        calm_offsets = []
        try:
            for i in range(10):  # another publisher, to another user, meanwhile: all 202
                calm_offsets.append(server.publish(
                    {"user_id": "cal", "category": "calm", "payload": {"i": i}})["offset"])
                time.sleep(0.15)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        flooding_s = time.monotonic() - started

        assert unexpected == []
        assert len(refused) > len(accepted), "the flood did not go past the throttle"
        # the bucket's burst and its rate, and no more
        assert 20 <= len(accepted) <= 20 + 40 * (flooding_s + 0.5), (len(accepted), flooding_s)
        for retry_after, body in refused:
            assert retry_after is not None and int(retry_after) >= 1
            assert_no_exception_text("429 to the flood", body)
            assert (body["error"], body["field"]) == ("throttled", "priority") and body["detail"]
        calm.finish()
        assert offsets(calm.notifications()) == calm_offsets

        time.sleep(max(int(r) for r, _ in refused))  # as the 429s said
        after = server.publish({"user_id": "fay", "category": "flood", "payload": {"after": 1}})
        accepted[after["id"]] = after["offset"]

        expected = sorted(accepted.values())
        got = flooded.wait_for(len(expected), timeout=15)
        time.sleep(0.3)  # a duplicate would come now
        got = list(flooded.received)
        assert offsets(got) == expected, "not every accepted publish was delivered once, in order"
        assert {n["id"]: n["offset"] for n in got} == accepted
        with engine.connect() as conn:  # stored, each at its offset; nothing refused is
            stored = dict(conn.execute(
                select(entries.c.id, entries.c.log_offset)
                .join(recipients, recipients.c.log_offset == entries.c.log_offset)
                .where(recipients.c.user_id == "fay")).all())
        assert stored == accepted
    finally:
        flooded.close()
        engine.dispose()
        assert stop_server(server) == 0, server.log_text()[-3000:]


# -- a slow client ------------------------------------------------------------------

SLOW_ENV = {"SEND_QUEUE_MAX_BYTES": "200000", "BATCH_SIZE": "1"}
BLOB = "x" * 60_000


def flood_a_client_that_reads_nothing(server, js_client) -> tuple[list[int], list[dict]]:
    """sam's client stops reading (a tiny receive buffer, never read) while
    6 MB are published to it; ria's official client, on the same node, must
    keep receiving throughout. Returns sam's offsets, and what sam's client
    had received when the node closed it."""
    stalled = raw_socketio_client(server, "sam",
                                  sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    other = js_client(server.url, server.token("ria"), "--expect", "10", "--timeout-ms", "30000")
    other.wait_for("connect")
    sams, rias = [], []
    for i in range(100):  # more than the socket buffers hold
        sams.append(server.publish({"user_id": "sam", "category": "bulk",
                                    "payload": {"i": i, "b": BLOB}})["offset"])
        if i % 10 == 0:
            rias.append(server.publish({"user_id": "ria", "category": "chat",
                                        "payload": {"i": i}})["offset"])
    other.finish()
    assert offsets(other.notifications()) == rias, "another client missed its notifications"

    received, ended = [], None
    stalled.settimeout(10)
    try:  # what sam's client still had to read, then the node's disconnect
        while ended is None:
            frame = stalled.recv()
            if frame.startswith("42"):
                name, batch = json.loads(frame[2:])
                assert name == "notifications"
                received += batch
            if frame.startswith("41"):
                ended = "disconnect"  # Socket.IO's "io server disconnect", read in time
            elif not frame:
                ended = "cut"
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        ended = "cut"  # not read within the grace: the node shut the connection down
    except websocket.WebSocketTimeoutException:
        pass
    finally:
        stalled.close()
    assert ended is not None, "the node did not close the client that reads nothing"
    assert offsets(received) == sams[:len(received)]  # a prefix, in order
    assert len(received) < len(sams)
    return sams, received


def test_a_slow_consumer_is_closed_with_a_reason_and_others_keep_receiving(
        pg_url, influx_database, tmp_path, js_client):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database, **SLOW_ENV},
                          tmp_path)
    try:
        flood_a_client_that_reads_nothing(server, js_client)
        assert re.search(r"closing \S+ \(sam\): slow consumer", server.log_text())
        wait_until(lambda: connection_events(influx_database, "closed", "slow_consumer") == 1,
                   timeout=15)
        # the node goes on: a new client of sam's, that reads, is served
        server.publish({"user_id": "sam", "category": "c", "payload": {"n": 1}})
        fresh = js_client(server.url, server.token("sam"), "--last-offset",
                          str(server.publish({"user_id": "sam", "category": "c",
                                              "payload": {"n": 2}})["offset"] - 1),
                          "--expect", "1")
        fresh.finish()
        assert [n["payload"] for n in fresh.notifications()] == [{"n": 2}]
    finally:
        assert stop_server(server) == 0, server.log_text()[-3000:]


def test_a_closed_client_that_reads_nothing_is_cut_off_long_before_the_ping_timeout(
        pg_url, influx_database, tmp_path):
    # pings every 25 s: without the cut, its session would stay until 25 + 8 s
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database, **SLOW_ENV},
                          tmp_path)
    stalled = raw_socketio_client(server, "sam",
                                  sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    try:
        started = time.monotonic()
        for i in range(60):  # never read: the node closes it, then cuts it off
            server.publish({"user_id": "sam", "category": "bulk", "payload": {"i": i, "b": BLOB}})
        wait_until(lambda: connection_events(influx_database, "closed", "slow_consumer") == 1,
                   timeout=15)
        assert time.monotonic() - started < 20
        time.sleep(4)  # past the grace: the node has shut the connection down
        frames, cut = [], False
        stalled.settimeout(10)
        try:  # what the kernel buffers still held, then the end, with no disconnect packet
            while not cut:
                frame = stalled.recv()
                cut = not frame
                frames.append(frame)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            cut = True
        assert cut and not any(f.startswith("41") for f in frames), (
            "the node waited for the client to read its way to the disconnect")
    finally:
        stalled.close()
        assert stop_server(server) == 0, server.log_text()[-3000:]


def test_a_slow_consumer_gets_what_it_missed_when_it_reconnects(
        pg_url, influx_database, tmp_path, js_client):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database, **SLOW_ENV},
                          tmp_path)
    try:
        sams, received = flood_a_client_that_reads_nothing(server, js_client)
        last = received[-1]["offset"] if received else 0
        back = PyClient(server.url, server.token("sam"), last_offset=last)
        try:
            missed = [o for o in sams if o > last]
            deadline = time.monotonic() + 10
            while (len(back.received) < len(missed) and back.sio.connected
                   and time.monotonic() < deadline):
                time.sleep(0.1)
            got = back.wait_for(len(missed), timeout=0.5)
            assert offsets(got) == missed, (
                f"got {len(got)} of the {len(missed)} missed; connected: {back.sio.connected}")
        finally:
            back.close()
    finally:
        assert stop_server(server) == 0, server.log_text()[-3000:]


# -- a client that never acknowledges -------------------------------------------------


def publish_concurrently(server, user_id: str, n: int, start: int = 0, threads: int = 4,
                         priority: str = "normal", **payload) -> list[int]:
    """n publishes to one user from several publishers at once; their offsets.
    More than the priority's burst (normal: 400) may be refused with 429
    when the server keeps up with the publishers."""
    answers: list[int] = []

    def publisher(k: int) -> None:
        for i in range(start + k, start + n, threads):
            answers.append(server.publish({"user_id": user_id, "category": "chat",
                                           "priority": priority,
                                           "payload": {"seq": i, **payload}})["offset"])

    workers = [threading.Thread(target=publisher, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(answers) == n
    return sorted(answers)


def test_a_client_that_never_acks_gets_its_whole_unacked_tail_back_in_order(
        server, pg_url, js_client):
    """510 notifications (more than one replay page) to a client that never
    acks, 5 more while it is away: the next connection gets all 515, in order,
    once each; once it has acked them, a new one gets nothing."""
    silent = js_client(server.url, server.token("nat"), "--no-ack", "--expect", "510",
                       "--timeout-ms", "30000")
    silent.wait_for("connect")
    # high: its burst (1,000) holds all 510 at once; normal's (400) would
    # refuse the rest with 429 whenever the server answers fast enough
    sent = publish_concurrently(server, "nat", 510, priority="high")
    silent.finish()
    assert offsets(silent.notifications()) == sent
    assert not any(e["event"] == "ack" for e in silent.seen)
    sent += publish_concurrently(server, "nat", 5, start=510)  # while it is away

    back = PyClient(server.url, server.token("nat"))
    engine = create_engine(pg_url)
    try:
        back.wait_for(515, timeout=20)
        time.sleep(0.3)  # a duplicate would come now
        assert offsets(back.received) == sent

        def acked() -> int:
            with engine.connect() as conn:
                return conn.execute(select(streams.c.acked)
                                    .where(streams.c.user_id == "nat")).scalar()
        wait_until(lambda: acked() == sent[-1], timeout=10)
    finally:
        back.close()
        engine.dispose()
    quiet = js_client(server.url, server.token("nat"), "--timeout-ms", "1500")
    quiet.finish()
    assert quiet.notifications() == []


def test_the_node_keeps_a_bounded_amount_for_a_client_that_never_acks(
        pg_url, influx_database, tmp_path, js_client):
    """12 MB go to a client that reads everything and acks nothing: the node's
    memory does not grow with it, and the log keeps only the offline queue's
    bound for that user (the oldest trimmed, and the client told to reload)."""
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "BATCH_SIZE": "1", "OFFLINE_QUEUE_MAX": "20",
                           "OFFLINE_TRIM_INTERVAL": "0.2",
                           # the reconnect's replay page (20 x 60 KB) is one emit: see
                           # test_a_slow_consumer_gets_what_it_missed_when_it_reconnects
                           "SEND_QUEUE_MAX_BYTES": str(4 << 20)}, tmp_path)
    engine = create_engine(pg_url)
    silent = js_client(server.url, server.token("max"), "--no-ack", "--timeout-ms", "60000")
    try:
        silent.wait_for("connect")
        # warm-up: pools, caches and buffers at their working size
        publish_concurrently(server, "max", 50, b=BLOB)
        assert len(js_received(silent, 50)) == 50
        before = server.rss_bytes()
        publish_concurrently(server, "max", 200, start=50, b=BLOB)
        assert offsets(js_received(silent, 250)) == list(range(1, 251))

        def kept() -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(recipients)
                                    .where(recipients.c.user_id == "max")).scalar()
        wait_until(lambda: kept() <= 20, timeout=10)
        grown = server.rss_bytes() - before
        # measured: 1-2 MB, whatever was sent (the same after 25 MB)
        assert grown < 6 << 20, f"RSS grew {grown >> 20} MB for 12 MB sent and never acked"
        assert not any(e["event"] in ("disconnect", "ack") for e in silent.seen)
        silent.close()

        back = js_client(server.url, server.token("max"), "--expect", "20",
                         "--timeout-ms", "20000")
        assert back.wait_for("reload")["body"]["first_offset"] == 231
        back.finish()
        assert offsets(back.notifications()) == list(range(231, 251))
    finally:
        engine.dispose()
        assert stop_server(server) == 0, server.log_text()[-3000:]


def js_received(client, count: int, timeout: float = 30.0) -> list[dict]:
    """What the JavaScript client has received, once it has ``count``."""
    deadline = time.monotonic() + timeout
    while len(client.notifications()) < count:
        client.wait_for("notifications", timeout=max(0.1, deadline - time.monotonic()))
    return client.notifications()


# -- the telemetry spool full ---------------------------------------------------------


def spool_segments(server) -> list[tuple[int, int]]:
    """(sequence, lines) of each batch in the node's telemetry spool."""
    spool = (server.log_path.parent / "var" / "telemetry-spool"
             / f"{server.env['NODE_ID']}-serve")
    found = []
    for path in spool.iterdir():
        match = re.fullmatch(r"(\d+)-(\d+)\.lp\.gz", path.name)
        if match:
            found.append((int(match[1]), int(match[2])))
    return sorted(found)


def influx_value(influx: InfluxClient, query: str):
    result = influx.query(query)[0]
    return result["series"][0]["values"][0][1] if "series" in result else None


def test_a_full_spool_drops_the_oldest_telemetry_while_delivery_goes_on(
        private_influx, pg_url, tmp_path):
    """InfluxDB is down long enough for the spool to overflow: the oldest
    batches are dropped and counted (telemetry_self dropped), publishing and
    delivery do not notice, and once InfluxDB is back writing resumes, with
    no restart."""
    database = unique("notify_spool")
    private_influx.stop()
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_URL": private_influx.url,
                           "INFLUX_DB": database, "TELEMETRY_SPOOL_MAX_BYTES": "2500",
                           "TELEMETRY_RETRY_MAX_S": "1"}, tmp_path)
    influx = InfluxClient(InfluxSettings(url=private_influx.url, database=database))
    reader = PyClient(server.url, server.token("sue"))
    try:
        published = 0
        while not telemetry(server)["dropped_by_reason"].get("spool_full"):
            assert published < 400, f"the spool never filled: {telemetry(server)}"
            started = time.monotonic()
            publish_n(server, "sue", 20, start=published)  # each a 202, as ever
            published += 20
            assert time.monotonic() - started < 5, "publishing slowed down"
            time.sleep(0.5)
        assert offsets(reader.wait_for(published)) == list(range(1, published + 1))
        t = telemetry(server)
        assert t["spool_bytes"] <= 2500 and t["influx_reachable"] is False
        assert_accounted(t)
        segments = spool_segments(server)
        first_kept = segments[0][0]
        assert first_kept > 1, "the oldest batch is still spooled: something newer was dropped"
        assert [s for s, _ in segments] == list(range(first_kept, first_kept + len(segments)))
        dropped = t["dropped_by_reason"]["spool_full"]

        private_influx.start()
        wait_until(lambda: drained(server), timeout=30)
        assert spool_segments(server) == []
        back_at_ns = time.time_ns()
        publish_n(server, "sue", 20, start=published)  # and after: written straight away
        published += 20
        assert offsets(reader.wait_for(published)) == list(range(1, published + 1))
        wait_until(lambda: influx_value(influx, 'SELECT sum("count") FROM "notify_publish" '
                                                f"WHERE time >= {back_at_ns}") == 20)
        wait_until(lambda: drained(server))
        assert_accounted(telemetry(server))
    finally:
        reader.close()
        assert stop_server(server) == 0, server.log_text()[-3000:]
    # what was dropped is missing, and counted, in what the node wrote on its way out
    counted = influx_value(influx, 'SELECT sum("count") FROM "notify_publish"')
    assert counted < published, (counted, published)
    assert influx_value(influx, 'SELECT last("count") FROM "telemetry_dropped" '
                                "WHERE \"reason\" = 'spool_full'") >= dropped
    assert influx_value(influx, 'SELECT max("dropped") FROM "telemetry_self"') >= dropped
