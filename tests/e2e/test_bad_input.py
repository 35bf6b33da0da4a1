"""Each bad input gets a clear error naming the field, and the node keeps serving.
No answer (body, error event, ack reply, connect_error) carries a Python
exception's text (tests/support/exception_text.py)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import socketio
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from service.adapters.tokens import UserTokens
from tests.support.exception_text import (
    assert_no_exception_text,
    assert_no_exception_text_in_js_events,
)
from tests.support.py_client import PyClient

GOOD = {"user_id": "alice", "category": "chat", "priority": "high", "payload": {"a": 1}}
PATH = "/api/v1/notifications"


def test_a_wrong_or_missing_publish_token_gets_401(server):
    for token in (None, "wrong", server.env["ADMIN_TOKEN"]):
        response = server.request("POST", PATH, token=token, body=GOOD)
        assert response.status == 401
        assert_no_exception_text(f"401 for {token!r}", response.data)
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
    assert_no_exception_text(f"{status} for {field}", response.data, sent=body)
    assert response.json()["field"] == field
    assert response.json()["detail"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1, 2"])
def test_malformed_json_gets_400(server, raw):
    response = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], raw=raw)
    assert response.status == 400
    assert_no_exception_text(f"400 for {raw!r}", response.data, sent=raw)
    assert response.json() == {**response.json(), "error": "malformed_request", "field": "body"}


def test_an_oversized_body_gets_413_before_it_is_read(server):
    raw = b'{"user_id": "alice", "category": "c", "payload": {"x": "' + b"y" * 400_000 + b'"}}'
    response = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], raw=raw)
    assert response.status == 413
    assert_no_exception_text("413 for 400 KB", response.data)
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
    assert_no_exception_text_in_js_events(f"connect with {auth!r}", [refused])
    assert refused["data"]["error"] == error, refused
    assert refused["data"]["field"] == field
    assert refused["message"] and refused["data"]["detail"]


def recording_client(server, user: str) -> tuple[socketio.Client, list, list]:
    """A connected python-socketio client, and the errors and notifications it gets."""
    errors, received = [], []
    client = socketio.Client(reconnection=False)
    client.on("error", errors.append)
    client.on("notifications", received.extend)
    client.connect(server.url, auth={"token": server.token(user)}, transports=["websocket"],
                   wait_timeout=5)
    return client, errors, received


def test_bad_events_get_errors_and_the_connection_keeps_working(server):
    client, errors, received = recording_client(server, "frank")
    try:
        replies = [client.call("ack", {"offset": 5}, timeout=5),
                   client.call("ack", {"offset": "five"}, timeout=5),
                   client.call("ack", [1], timeout=5),
                   client.call("subscribe", {"room": "admin"}, timeout=5)]
        assert [r["field"] for r in replies] == ["offset", "offset", "offset", "event"]
        assert replies[0]["error"] == "offset_out_of_range"
        for reply in replies:
            assert_no_exception_text("ack reply", reply)
        server.publish({**GOOD, "user_id": "frank"})
        for _ in range(50):
            if received:
                break
            client.sleep(0.1)
        assert [n["offset"] for n in received] == [1]
        assert client.call("ack", {"offset": 1}, timeout=5) == {"ok": True, "offset": 1}
        assert len(errors) == 4
        for error in errors:
            assert_no_exception_text("error event", error)
    finally:
        client.disconnect()


def test_a_flood_beyond_the_throttle_gets_429_with_retry_after(pg_url, influx_database,
                                                               tmp_path):
    from tests.support.server_process import start_server, stop_server

    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "THROTTLE": "low=1:5"}, tmp_path)
    try:
        body = {"user_id": "ivy", "category": "promo", "priority": "low", "payload": {}}
        statuses = [server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"],
                                   body=body).status for _ in range(8)]
        assert statuses[:5] == [202] * 5 and 429 in statuses[5:]
        refused = server.request("POST", PATH, token=server.env["PUBLISH_TOKEN"], body=body)
        assert refused.status == 429
        assert_no_exception_text("429", refused.data)
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

    from tests.support.raw_socketio import raw_socketio_client

    ws = raw_socketio_client(server, "mallory")
    ws.send(b'42["ack",{"offset":1}]\xff\xfe', opcode=websocket.ABNF.OPCODE_TEXT)
    frame = ws.recv_frame()
    while frame.opcode != websocket.ABNF.OPCODE_CLOSE:
        frame = ws.recv_frame()
    ws.close()
    other = raw_socketio_client(server, "trent")
    other.close()


# -- every bad Socket.IO input, while another client is being served ------------------


class Bystander:
    """A well-behaved user on the official client, connected throughout:
    after each bad input it must still be sent what is published to it."""

    def __init__(self, server, js_client) -> None:
        self.server = server
        self.client = js_client(server.url, server.token("bea"), "--timeout-ms", "120000")
        self.client.wait_for("connect")

    def said_nothing_of_exceptions(self) -> None:
        assert_no_exception_text_in_js_events("the bystander", self.client.seen)

    def still_served(self, case: object, within: float = 5.0) -> None:
        offset = self.server.publish({"user_id": "bea", "category": "c",
                                      "payload": {"after": repr(case)[:80]}})["offset"]
        deadline = time.monotonic() + within
        while offset not in [n["offset"] for n in self.client.notifications()]:
            assert time.monotonic() < deadline, f"the other client was not served after {case!r}"
            self.client.wait_for("notifications", timeout=max(0.1, deadline - time.monotonic()))


def open_raw(server) -> websocket.WebSocket:
    """An Engine.IO session by hand, before Socket.IO's connect."""
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket", timeout=5)
    assert ws.recv().startswith("0")  # Engine.IO open
    return ws


def raw_connect(server, auth_json: str) -> dict:
    """Socket.IO's connect with this exact auth text; the refusal's data."""
    ws = open_raw(server)
    try:
        ws.send("40" + auth_json)
        answer = ws.recv()
    finally:
        ws.close()
    assert answer.startswith("44"), f"{auth_json[:80]}: {answer[:200]}"
    refused = json.loads(answer[2:])
    assert_no_exception_text(f"connect_error for {auth_json[:80]}", refused, sent=auth_json)
    return refused["data"]


def expired_token(server, user_id: str) -> str:
    """Signed with the node's secret, two days ago (the TTL is a day)."""
    class TwoDaysAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 2 * 86_400

    return URLSafeTimedSerializer(server.env["USER_TOKEN_SECRET"], salt="notify.user-token.v1",
                                  signer=TwoDaysAgo).dumps({"sub": user_id})


def test_bad_connects_are_refused_with_a_reason_while_another_client_is_served(server,
                                                                                js_client):
    bystander = Bystander(server, js_client)
    head = server.publish({"user_id": "amy", "category": "c", "payload": {}})["offset"]
    good = server.token("amy")
    cases = [  # (auth as sent, error, field, a word the detail must hold)
        (f'{{"token": "{good}", "last_offset": {head + 1}}}', "offset_out_of_range",
         "last_offset", "head"),  # first: the other client's notifications move the head
        ('{"token": "forged.token.value"}', "unauthorized", "token", "not valid"),
        (json.dumps({"token": expired_token(server, "amy")}), "unauthorized", "token", "expired"),
        (json.dumps({"token": UserTokens("another-secret", 3600).issue("amy")}),
         "unauthorized", "token", "not valid"),
        (json.dumps({"token": good[:-2] + ("AA" if good[-2:] != "AA" else "BB")}),
         "unauthorized", "token", "not valid"),
        ('{"token": "\\ud800"}', "unauthorized", "token", "not valid"),
        (f'{{"token": "{good}", "last_offset": {2**63}}}', "invalid_input", "last_offset",
         "range"),
        (f'{{"token": "{good}", "last_offset": {10**30}}}', "invalid_input", "last_offset",
         "range"),
        (f'{{"token": "{good}", "last_offset": 1e30}}', "invalid_input", "last_offset",
         "integer"),
        (f'{{"token": "{good}", "last_offset": {2**63 - 1}}}', "offset_out_of_range",
         "last_offset", "head"),
    ]
    for auth, error, field, word in cases:
        refused = raw_connect(server, auth)
        assert (refused["error"], refused["field"]) == (error, field), (auth[:80], refused)
        assert word in refused["detail"], (auth[:80], refused)
        bystander.still_served(auth)
    # the official client sees the same, as err.data
    expired = js_client(server.url, expired_token(server, "amy"), "--timeout-ms", "5000")
    refused = expired.wait_for("connect_error")
    assert_no_exception_text_in_js_events("expired token, official client", [refused])
    assert refused["data"]["field"] == "token" and "expired" in refused["message"]
    bystander.still_served("expired, official client")
    bystander.said_nothing_of_exceptions()


def test_bad_events_get_an_error_while_another_client_is_served(server, js_client):
    bystander = Bystander(server, js_client)
    client, errors, received = recording_client(server, "fred")
    try:
        first = server.publish({**GOOD, "user_id": "fred"})["offset"]
        server.publish({**GOOD, "user_id": "someone-else"})  # an offset fred never gets
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            client.sleep(0.05)
        assert [n["offset"] for n in received] == [first]
        cases = [  # (event, argument, error, field)
            ("ack", {"offset": first + 1}, "offset_out_of_range", "offset"),  # never received
            ("ack", {"offset": 2**63 - 1}, "offset_out_of_range", "offset"),
            ("ack", {"offset": 2**63}, "invalid_input", "offset"),
            ("ack", {"offset": 10**30}, "invalid_input", "offset"),
            ("ack", {"offset": -1}, "invalid_input", "offset"),
            ("ack", {"offset": 1.5}, "invalid_input", "offset"),
            ("ack", {"offset": True}, "invalid_input", "offset"),
            ("ack", {"offset": str(first)}, "invalid_input", "offset"),
            ("ack", {}, "invalid_input", "offset"),
            ("ack", None, "invalid_input", "offset"),
            ("subscribe", {"room": "admin"}, "invalid_input", "event"),
            ("notifications", [], "invalid_input", "event"),
            ("x" * 10_000, {}, "invalid_input", "event"),
        ]
        for event, argument, error, field in cases:
            reply = client.call(event, argument, timeout=5)
            assert_no_exception_text(f"ack reply to {event[:20]!r}", reply,
                                     sent=[event, argument])
            assert (reply["error"], reply["field"]) == (error, field), (event[:20], argument)
            assert reply["detail"] and len(reply["detail"]) < 300
            bystander.still_served((event[:20], argument))
        deadline = time.monotonic() + 5
        while len(errors) < len(cases) and time.monotonic() < deadline:
            client.sleep(0.05)
        assert len(errors) == len(cases)  # each also as an "error" event
        for error in errors:
            assert_no_exception_text("error event", error)
        assert client.call("ack", {"offset": first}, timeout=5) == {"ok": True, "offset": first}
        bystander.said_nothing_of_exceptions()
    finally:
        client.disconnect()


def refusal(ws: websocket.WebSocket, within: float = 5.0) -> str | dict | None:
    """How the node answers what was just sent: "closed" (a close frame, an
    Engine.IO close or the socket shut), the body of an ``error`` event, or
    None if neither comes within the time. Whatever comes back meanwhile
    (a close's reason included) carries no exception text."""
    ws.settimeout(within)
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            data = data if isinstance(data, bytes) else data.encode()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                assert_no_exception_text("the close's reason", data[2:])
                return "closed"
            assert_no_exception_text("an answer to a bad frame", data)
            if data in (b"1", b"41"):
                return "closed"
            if data.startswith(b'42["error",'):
                return json.loads(data[2:])[1]
    except websocket.WebSocketTimeoutException:
        return None
    except (websocket.WebSocketException, OSError):
        return "closed"
    finally:
        ws.close()


def test_malformed_and_oversized_frames_close_only_their_connection(server, js_client):
    bystander = Bystander(server, js_client)
    token = server.token("mallory")
    before = server.rss_bytes()
    connected = [  # after Socket.IO's connect
        ("text", b'42["ack",{"offset":1}]\xff\xfe'), ("binary", b"\x00"), ("text", b"\x00"),
        ("text", b"44{}"), ("text", b"42null"), ("text", b"42[]"), ("text", b"42[1]"),
        ("text", b'42["connect"]'), ("text", b'42["ack", {}, 1]'), ("text", b'42{"a":'),
        ("text", b'42["ack",' + b"[" * 5000 + b"]" * 5000 + b"]"),
        ("text", b'42["ack",{"offset":1' + b"0" * 5000 + b"}]"),
        ("text", b'42["ack","' + b"x" * 70_000 + b'"]'),  # over the 64 KiB a client may send
        ("binary", b"\x00" * 70_000),
        ("fragments", b'42["ack","' + b"x" * 200_000 + b'"]'),  # each fragment small
    ]
    for kind, data in connected:
        ws = open_raw(server)
        ws.send("40" + json.dumps({"token": token}))
        assert ws.recv().startswith("40")
        if kind == "fragments":
            chunks = [data[i:i + 10_000] for i in range(0, len(data), 10_000)]
            for i, chunk in enumerate(chunks):
                opcode = websocket.ABNF.OPCODE_TEXT if i == 0 else websocket.ABNF.OPCODE_CONT
                frame = websocket.ABNF.create_frame(chunk, opcode, fin=i == len(chunks) - 1)
                try:
                    ws.send_frame(frame)
                except (websocket.WebSocketException, OSError):
                    break
        else:
            ws.send(data, opcode=websocket.ABNF.OPCODE_BINARY if kind == "binary"
                    else websocket.ABNF.OPCODE_TEXT)
        answer = refusal(ws)
        if data == b'42["ack", {}, 1]':  # a well-formed event, with a bad argument
            assert answer and (answer["error"], answer["field"]) == ("invalid_input", "offset")
        else:  # does not decode, is not an event, or is too large: one log line and closed
            assert answer == "closed", f"{data[:40]!r}...: {answer}"
        bystander.still_served(data[:40])
    for auth in (b'{"token": "%s", "last_offset": 1%s}' % (token.encode(), b"0" * 5000),
                 b'{"token": "%s", "last_offset": %s0%s}' % (token.encode(), b"[" * 5000,
                                                             b"]" * 5000)):
        ws = open_raw(server)
        ws.send(b"40" + auth, opcode=websocket.ABNF.OPCODE_TEXT)
        assert refusal(ws) == "closed", f"connect with {auth[:60]!r}... left open"
        bystander.still_served(auth[:60])
    bystander.said_nothing_of_exceptions()

    # 32 MB in one frame, before any Socket.IO connect: refused from its header,
    # and nobody waits meanwhile (it was read whole and unmasked byte by byte,
    # which froze the node for seconds)
    big = open_raw(server)
    sending = threading.Thread(target=lambda: suppress_send(big, "42" + "x" * (32 << 20)))
    sending.start()
    time.sleep(0.2)
    started = time.monotonic()
    bystander.still_served("a 32 MB frame", within=3)
    assert time.monotonic() - started < 2.0
    sending.join(timeout=30)
    assert refusal(big) == "closed"
    grown = server.rss_bytes() - before
    assert grown < 16 << 20, f"RSS grew {grown >> 20} MB"
    log = server.log_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:log.find("Traceback") + 2000]


def suppress_send(ws: websocket.WebSocket, data: str) -> None:
    try:
        ws.send(data)
    except (websocket.WebSocketException, OSError):
        pass  # the node closed it part way: as it should


# -- the publish API, fuzzed -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20)
FIELDS = ("user_id", "user_ids", "broadcast", "category", "priority", "payload")
near_valid = st.fixed_dictionaries({}, optional={
    "user_id": st.sampled_from(["alice", "bob", "a" * 129, "", "al ice", "alice\n"])
    | json_values,
    "user_ids": st.lists(st.sampled_from(["alice", "bob", "x" * 200]), max_size=3)
    | json_values,
    "broadcast": st.booleans() | json_values,
    "category": st.sampled_from(["chat", "news", "x" * 65, "a b"]) | json_values,
    "priority": st.sampled_from(["low", "normal", "high", "critical", "urgent"]) | json_values,
    "payload": st.dictionaries(st.text(max_size=10), json_values, max_size=5) | json_values,
    "colour": json_values,
})


def nested(depth: int, kind: str) -> bytes:
    inner = b"[" * depth + b"1" + b"]" * depth if kind == "[" else (
        b'{"a":' * depth + b"1" + b"}" * depth)
    return b'{"user_id": "alice", "category": "c", "payload": {"deep": ' + inner + b"}}"


bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    near_valid.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values,
                    max_size=6).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.tuples(st.integers(1, 5000), st.sampled_from(["[", "{"])).map(lambda d: nested(*d)),
    st.integers(60_000, 300_000).map(  # around the 64 KiB payload and 256 KiB body bounds
        lambda n: b'{"user_id": "alice", "category": "c", "payload": {"b": "'
        + b"x" * n + b'"}}'),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", '"\\ud800"',
                     '"\\udfff x"', '{"\\ud800": 1}', "1" + "0" * 5000]).map(
        lambda v: b'{"user_id": "alice", "category": "c", "payload": {"v": '
        + v.encode() + b"}}"),
)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "", None])


def check_answer(body: bytes, response) -> None:
    """202, or a 4xx whose JSON body says what and names the field, in the
    service's own words (what the body said may be quoted back)."""
    assert response.status == 202 or 400 <= response.status < 500, (
        response.status, body[:200], response.data[:300])
    assert_no_exception_text(f"{response.status} for {body[:200]!r}", response.data, sent=body)
    answer = response.json()
    if response.status == 202:
        assert isinstance(answer["offset"], int) and answer["id"]
        return
    assert answer["error"] and answer["detail"], answer
    if response.status in (400, 413, 422):
        try:
            sent = json.loads(body)
        except (ValueError, RecursionError):
            sent = None
        named = set(sent) if isinstance(sent, dict) else set()
        assert answer["field"] in named | set(FIELDS) | {"body"}, (answer, body[:200])


def test_the_publish_api_answers_any_body_with_202_or_a_4xx_naming_the_field(server):
    """Arbitrary JSON, near-valid bodies, bytes that are not JSON, wrong
    content types, deep nesting, bodies around the size bounds, numbers and
    text that JSON allows but UTF-8 and the clients do not: never a 5xx,
    the node stays up, logs no traceback, keeps its memory and goes on
    delivering."""
    reader = PyClient(server.url, server.token("zoe"))
    publish = server.env["PUBLISH_TOKEN"]

    def post(body: bytes, content_type: str | None):
        headers = {"Authorization": f"Bearer {publish}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return server.http.request("POST", server.url + PATH, body=body, headers=headers,
                                   timeout=10.0)

    @settings(max_examples=400, derandomize=True, database=None,
              deadline=timedelta(seconds=5),  # a request that takes seconds stalls everyone
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(bodies, content_types)
    def fuzz(body: bytes, content_type: str | None) -> None:
        check_answer(body, post(body, content_type))

    try:
        for i in range(100):  # warm-up: pools, caches and buffers at their working size
            check_answer(b"{}", post(json.dumps({**GOOD, "payload": {"i": i}}).encode(),
                                     "application/json"))
        before = server.rss_bytes()
        started = time.monotonic()
        fuzz()
        took = time.monotonic() - started
        grown = server.rss_bytes() - before
        assert server.process.poll() is None
        assert grown < 32 << 20, f"RSS grew {grown >> 20} MB over the fuzzing"
        offset = server.publish({**GOOD, "user_id": "zoe"})["offset"]
        assert [n["offset"] for n in reader.wait_for(1)] == [offset]
        log = server.log_text()
        assert "Traceback" not in log, log[log.find("Traceback") - 300:log.find("Traceback") + 2000]
        print(f"fuzzed for {took:.1f} s; RSS {grown / 2**20:+.1f} MB")
    finally:
        reader.close()
