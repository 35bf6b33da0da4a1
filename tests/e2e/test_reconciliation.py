"""Totals reconcile exactly: every entry published is, per node, dispatched
live, queued for replay or dropped, and what was queued is replayed."""

from __future__ import annotations

import time

from service.adapters.influx import InfluxClient, InfluxSettings
from tests.support.backing_services import INFLUX_URL
from tests.support.py_client import PyClient
from tests.support.telemetry_accounting import drained
from tests.support.waiting import wait_until


def total(influx: InfluxClient, measurement: str, where: str = "") -> int:
    clause = f" WHERE {where}" if where else ""
    result = influx.query(f'SELECT sum("count") FROM "{measurement}"{clause}')[0]
    return result["series"][0]["values"][0][1] if "series" in result else 0


def test_published_equals_live_plus_queued_plus_dropped(server):
    influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=server.env["INFLUX_DB"]))
    online = [PyClient(server.url, server.token(u)) for u in ("ann", "ben")]
    # cat and dan have streams but are offline
    for user in ("cat", "dan"):
        PyClient(server.url, server.token(user)).close()
    try:
        for i in range(10):
            server.publish({"user_id": "ann", "category": "a", "payload": {"i": i}})
            server.publish({"user_id": "cat", "category": "a", "payload": {"i": i}})
        server.publish({"user_ids": ["ben", "dan", "ann"], "category": "m", "payload": {}})
        server.publish({"broadcast": True, "category": "b", "payload": {}})
        online[0].wait_for(12)
        online[1].wait_for(2)
        time.sleep(0.5)
    finally:
        for client in online:
            client.close()
    # the offline users come back and are replayed what was queued for them
    late = [PyClient(server.url, server.token(u)) for u in ("cat", "dan")]
    try:
        assert len(late[0].wait_for(11)) == 11 and len(late[1].wait_for(2)) == 2
        time.sleep(0.5)
    finally:
        for client in late:
            client.close()
    wait_until(lambda: drained(server))
    # 10 + 10 single, one 3-user publish, one broadcast to the 4 known streams
    published = wait_until(lambda: total(influx, "notify_publish") == 27 and 27)
    dispatch = {o: total(influx, "notify_dispatch", f"\"outcome\" = '{o}'")
                for o in ("live", "queued", "deferred", "dropped")}
    assert published == sum(dispatch.values())
    assert dispatch["dropped"] == 0
    # Which entries went live depends only on whether the user was connected
    # (and level with the log) at that moment; the books must balance either way.
    left_waiting = total(influx, "notify_drop", "\"reason\" = 'disconnected'") + total(
        influx, "notify_drop", "\"reason\" = 'slow_consumer'")
    assert dispatch["live"] == total(influx, "notify_delivery", "\"mode\" = 'live'") + left_waiting
    assert dispatch["deferred"] == 0  # no backpressure in this test
    assert dispatch["queued"] == total(influx, "notify_delivery", "\"mode\" = 'replay'")
    assert dispatch["queued"] >= 13  # cat's 11 and dan's 2 were queued at least
