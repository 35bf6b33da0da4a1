"""Changing the level and single parameters on a running node."""

import json
import time
from urllib.parse import quote

from service.adapters.influx import InfluxClient, InfluxSettings
from tests.support.backing_services import INFLUX_URL


def put_config(server, body, token=None):
    return server.request("PUT", "/api/v1/config", body=body,
                          token=token or server.env["ADMIN_TOKEN"])


def test_a_level_change_applies_live_without_dropping_connections(server, js_client):
    client = js_client(server.url, server.token("lea"), "--expect", "13", "--timeout-ms", "30000")
    client.wait_for("connect")
    server.publish({"user_id": "lea", "category": "c", "payload": {"n": 0}})
    client.wait_for("notifications")  # delivered by the old rules, before the change

    changed = put_config(server, {"level": "conservative", "reason": "test"})
    assert changed.status == 200, changed.data
    assert changed.json()["level"] == "conservative"
    assert changed.json()["parameters"]["batch_size"] == 10
    changed = put_config(server, {"parameters": {"batch_size": 3, "batch_timeout_ms": 1000}})
    assert changed.json()["parameters"]["batch_size"] == 3
    for n in range(1, 13):  # 12 more, quicker than the 1 s timeout: batches of 3
        server.publish({"user_id": "lea", "category": "c", "payload": {"n": n}})
    seen = client.finish()
    assert [n["payload"]["n"] for n in client.notifications()] == list(range(13))
    batches = [len(e["batch"]) for e in seen if e["event"] == "notifications"]
    assert batches[1:] == [3, 3, 3, 3], batches
    assert not [e for e in seen if e["event"] == "disconnect"]

    influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=server.env["INFLUX_DB"]))
    deadline, kinds = time.monotonic() + 10, []
    while time.monotonic() < deadline and len(kinds) < 2:
        series = influx.query('SELECT "text" FROM "config_change" WHERE "kind" != \'startup\'')
        kinds = series[0].get("series", [{}])[0].get("values", [])
        time.sleep(0.2)
    assert "balanced -> conservative" in kinds[0][1]


def test_bad_config_changes_are_refused_and_need_the_admin_token(server):
    assert put_config(server, {"level": "warp"}).status == 422
    refused = put_config(server, {"parameters": {"batch_size": 0}})
    assert refused.status == 422 and refused.json()["field"] == "parameters.batch_size"
    assert put_config(server, {"level": "maximum"}, token="wrong").status == 401
    publish_token = put_config(server, {"level": "maximum"}, token=server.env["PUBLISH_TOKEN"])
    assert publish_token.status == 401
    got = server.request("GET", "/api/v1/config", token=server.env["ADMIN_TOKEN"]).json()
    assert got["level"] == "balanced"  # nothing of the refused changes was applied


def admin(server, method, path, body=None, **headers):
    headers = {"Authorization": f"Bearer {server.env['ADMIN_TOKEN']}",
               "Content-Type": "application/json", **headers}
    return server.http.request(method, server.url + path, headers=headers, timeout=10.0,
                               body=None if body is None else json.dumps(body))


def test_changes_are_events_with_history_time_travel_and_rollback(server):
    got = admin(server, "GET", "/api/v1/config")
    seq = got.json()["seq"]
    assert got.headers["ETag"] == f'"{seq}"'
    changed = admin(server, "PUT", "/api/v1/config",
                    {"parameters": {"batch_size": 42}, "reason": "load test"},
                    **{"If-Match": got.headers["ETag"]})
    assert changed.status == 200, changed.data
    assert changed.json()["seq"] == seq + 1 and changed.headers["ETag"] == f'"{seq + 1}"'

    stale = admin(server, "PUT", "/api/v1/config", {"level": "maximum"}, **{"If-Match": str(seq)})
    assert stale.status == 409
    assert stale.json()["error"] == "conflict" and stale.json()["field"] == "If-Match"

    history = admin(server, "GET", "/api/v1/config/history?limit=1").json()["events"]
    assert [(e["seq"], e["type"], e["actor"], e["reason"], e["what"]) for e in history] == [
        (seq + 1, "parameter_overridden", "admin", "load test", "batch_size=42")]
    before = admin(server, "GET", "/api/v1/config/at?t=" + quote(history[0]["at"])).json()
    assert before["parameters"]["batch_size"] == 42
    assert admin(server, "GET", "/api/v1/config/at?t=yesterday").status == 422

    back = admin(server, "POST", "/api/v1/config/rollback", {"to_seq": seq, "reason": "undo"})
    assert back.status == 200, back.data
    assert back.json()["overrides"] == {} and back.json()["parameters"]["batch_size"] != 42
    assert admin(server, "GET", "/api/v1/config/history?limit=0").status == 422
    assert admin(server, "GET", "/api/v1/config/history",
                 Authorization="Bearer wrong").status == 401
