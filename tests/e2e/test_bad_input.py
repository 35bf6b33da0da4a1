"""Each bad input gets a clear error naming the field, and the node keeps serving."""

from __future__ import annotations

import json

import pytest
import socketio

GOOD = {"user_id": "alice", "category": "chat", "priority": "high", "payload": {"a": 1}}
PATH = "/api/v1/notifications"


def test_a_wrong_or_missing_publish_token_gets_401(server):
    for token in (None, "wrong", server.env["ADMIN_TOKEN"]):
        response = server.request("POST", PATH, token=token, body=GOOD)
        assert response.status == 401
        assert response.json()["field"] == "Authorization"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**GOOD, "priority": "urgent"}, 422, "priority"),
        ({**GOOD, "payload": {"blob": "x" * 70_000}}, 413, "payload"),
        ({**GOOD, "user_ids": ["bob"]}, 422, "user_ids"),
        ({**GOOD, "broadcast": True}, 422, "broadcast"),
        ({"category": "chat"}, 422, "user_id"),
        ({**GOOD, "category": ""}, 422, "category"),
        ({**GOOD, "payload": "text"}, 422, "payload"),
        ({**GOOD, "extra": 1}, 422, "extra"),
    ],
)
def test_each_bad_field_is_named(server, body, status, field):
    response = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], body=body)
    assert response.status == status, response.data
    assert response.json()["field"] == field
    assert response.json()["detail"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1, 2"])
def test_malformed_json_gets_400(server, raw):
    response = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], raw=raw)
    assert response.status == 400
    assert response.json() == {**response.json(), "error": "malformed_request", "field": "body"}


def test_an_oversized_body_gets_413_before_it_is_read(server):
    raw = b'{"user_id": "alice", "category": "c", "payload": {"x": "' + b"y" * 400_000 + b'"}}'
    response = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], raw=raw)
    assert response.status == 413
    assert response.json()["field"] == "body"


def test_nothing_is_stored_for_a_refused_publish(server):
    server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], body={**GOOD, "priority": "x"})
    assert server.publish(GOOD)["offsets"] == {"alice": 1}


@pytest.mark.parametrize(
    ("auth", "error", "field"),
    [
        ({"token": "forged.token.value"}, "unauthorized", "token"),
        ({}, "unauthorized", "token"),
        (None, "unauthorized", "token"),
        ("just a string", "invalid_input", "auth"),
        ({"token": "VALID", "last_offset": 99}, "offset_out_of_range", "last_offset"),
        ({"token": "VALID", "last_offset": -1}, "invalid_input", "last_offset"),
        ({"token": "VALID", "last_offset": "3"}, "invalid_input", "last_offset"),
    ],
)
def test_bad_connections_are_refused_with_a_reason(server, js_client, auth, error, field):
    if isinstance(auth, dict) and auth.get("token") == "VALID":
        auth = {**auth, "token": server.token("alice")}
    client = js_client(server.url, "unused", "--auth-json", json.dumps(auth),
                       "--timeout-ms", "5000")
    refused = client.wait_for("connect_error")
    assert refused["data"]["error"] == error, refused
    assert refused["data"]["field"] == field
    assert refused["message"] and refused["data"]["detail"]


def test_bad_events_get_errors_and_the_connection_keeps_working(server):
    errors, received = [], []
    client = socketio.Client(reconnection=False)
    client.on("error", errors.append)
    client.on("notifications", received.extend)
    client.connect(server.url, auth={"token": server.token("frank")}, transports=["websocket"],
                   wait_timeout=5)
    try:
        assert client.call("ack", {"offset": 5}, timeout=5)["error"] == "offset_out_of_range"
        assert client.call("ack", {"offset": "five"}, timeout=5)["field"] == "offset"
        assert client.call("ack", [1], timeout=5)["field"] == "offset"
        assert client.call("subscribe", {"room": "admin"}, timeout=5)["field"] == "event"
        server.publish({**GOOD, "user_id": "frank"})
        for _ in range(50):
            if received:
                break
            client.sleep(0.1)
        assert [n["offset"] for n in received] == [1]
        assert client.call("ack", {"offset": 1}, timeout=5) == {"ok": True, "offset": 1}
        assert len(errors) == 4
    finally:
        client.disconnect()


def test_a_flood_beyond_the_throttle_gets_429_with_retry_after(pg_url, influx_database,
                                                               tmp_path):
    from tests.e2e.conftest import start_server, stop_server

    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "THROTTLE": "low=1:5"}, tmp_path)
    try:
        body = {"user_id": "ivy", "category": "promo", "priority": "low", "payload": {}}
        statuses = [server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"],
                                   body=body).status for _ in range(8)]
        assert statuses[:5] == [202] * 5 and 429 in statuses[5:]
        refused = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], body=body)
        assert refused.status == 429
        assert refused.json()["error"] == "throttled" and refused.json()["field"] == "priority"
        assert int(refused.headers["Retry-After"]) >= 1
        critical = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"],
                                  body={**body, "priority": "critical"})
        assert critical.status == 202  # never throttled
        assert critical.json()["offsets"] == {"ivy": 6 + statuses[5:].count(202)}
    finally:
        assert stop_server(server) == 0


def test_a_text_frame_that_is_not_utf8_closes_the_connection(server):
    """The server decodes text frames itself (it skips gevent-websocket's
    slower validator): invalid UTF-8 must still close the connection, and
    the server keeps serving others."""
    import websocket

    from tests.e2e.test_connections import raw_socketio_client

    ws = raw_socketio_client(server, "mallory")
    ws.send(b'42["ack",{"offset":1}]\xff\xfe', opcode=websocket.ABNF.OPCODE_TEXT)
    frame = ws.recv_frame()
    while frame.opcode != websocket.ABNF.OPCODE_CLOSE:
        frame = ws.recv_frame()
    ws.close()
    other = raw_socketio_client(server, "trent")
    other.close()
