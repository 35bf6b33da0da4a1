"""Fuzzing the Socket.IO side of a running node (hypothesis, a bounded number
of examples): arbitrary text and binary frames, malformed Engine.IO and
Socket.IO packets, and well-formed events with arbitrary names and
arguments, on raw WebSockets; and arbitrary ``auth`` on Socket.IO's connect.
The node must answer each bad event with an error or a close, and each bad
connect with a ``connect_error`` that says why, never crash, never keep a
closed connection, and go on delivering to a well-behaved client. No answer
(error event, ack reply, connect_error, close reason) carries a Python
exception's text (tests/support/exception_text.py)."""

from __future__ import annotations

import json
import time

import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.exception_text import (
    assert_no_exception_text,
    assert_no_exception_text_in_js_events,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10)

frames = st.one_of(
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.binary(max_size=200).map(lambda b: ("binary", b)),
    # Socket.IO events: "42" + [name, *args], the ack's own name included, and
    # "42" + id + [...]: an event that asks for an ack, which the node replies "43" + id
    st.tuples(st.sampled_from(["", "1", "77"]) | st.integers(0, 2**32).map(str),
              st.sampled_from(["ack", "notifications", "connect", "x", ""]) | st.text(max_size=10),
              st.lists(json_values, max_size=3))
      .map(lambda e: ("text", "42" + e[0] + json.dumps([e[1], *e[2]]))),
    # acks with odd offsets, and packet types with junk after them
    json_values.map(lambda v: ("text", "42" + json.dumps(["ack", {"offset": v}]))),
    st.tuples(st.sampled_from(["0", "1", "2", "3", "4", "40", "41", "43", "44", "45", "46"]),
              st.text(max_size=50)).map(lambda p: ("text", p[0] + p[1])),
)


def check_answer(frame: str | bytes, sent: str | bytes) -> None:
    """What the node sent back after ``sent``: an error event, an ack reply,
    a connect_error, a close frame's reason; none carries exception text."""
    assert_no_exception_text(f"the answer to {sent[:80]!r}", frame, sent=sent)
    if isinstance(frame, str) and frame[:1] == "4":  # Socket.IO: the JSON after type and id
        body = frame[2:].lstrip("0123456789")
        assert_no_exception_text(f"the answer to {sent[:80]!r}", body, sent=sent)


class RawSocket:
    """A Socket.IO client made by hand, so it can say anything."""

    def __init__(self, url: str, token: str) -> None:
        self.ws = websocket.create_connection(
            url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket", timeout=5)
        assert self.ws.recv().startswith("0")  # Engine.IO open
        self.ws.send("40" + json.dumps({"token": token}))
        answer = self.ws.recv()
        assert answer.startswith("40"), answer
        self.answers = 0  # frames the node sent back, each checked

    def send(self, kind: str, data: str | bytes) -> bool:
        """Send a frame; False once the server has closed the connection.
        Whatever comes back meanwhile is checked for exception text."""
        try:
            if kind == "binary":
                self.ws.send_binary(data)
            else:
                self.ws.send(data)
            self.ws.settimeout(0.05)
            try:
                while True:  # errors, ack replies, pings: drain what came back
                    opcode, frame = self.ws.recv_data()
                    if opcode == websocket.ABNF.OPCODE_CLOSE:
                        check_answer(frame[2:], data)  # the close's reason, after its code
                        return False
                    if opcode == websocket.ABNF.OPCODE_TEXT and isinstance(frame, bytes):
                        frame = frame.decode("utf-8", errors="replace")
                    check_answer(frame, data)
                    self.answers += 1
            except websocket.WebSocketTimeoutException:
                pass
            return True
        except (websocket.WebSocketException, OSError):
            return False

    def close(self) -> None:
        try:
            self.ws.close()
        except (websocket.WebSocketException, OSError):
            pass


def admin_metrics(server) -> dict:
    return server.request("GET", "/admin/api/performance/metrics",
                          token=server.env["ADMIN_TOKEN"]).json()


def test_arbitrary_frames_never_crash_the_node_nor_leak_a_connection(server, js_client):
    # a user per connection: the node closes many of them, and one user
    # reconnecting hundreds of times a second is refused by its connect rate
    opened = [RawSocket(server.url, server.token("fuzz0"))]

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(st.lists(frames, min_size=1, max_size=5))
    def drive(batch):
        for kind, data in batch:
            if not opened[-1].send(kind, data):
                opened[-1].close()
                opened.append(RawSocket(server.url, server.token(f"fuzz{len(opened)}")))

    drive()
    for raw in opened:
        raw.close()
    assert sum(raw.answers for raw in opened) > 100  # errors and ack replies, each checked
    assert server.process.poll() is None, server.log_text()

    deadline = time.monotonic() + 10  # every fuzzed connection is gone, none kept
    while time.monotonic() < deadline and admin_metrics(server)["connections"]:
        time.sleep(0.2)
    assert admin_metrics(server)["connections"] == 0

    client = js_client(server.url, server.token("calm"), "--expect", "1", "--timeout-ms", "10000")
    client.wait_for("connect")
    server.publish({"user_id": "calm", "category": "c", "payload": {"ok": True}})
    client.finish()
    assert [n["payload"] for n in client.notifications()] == [{"ok": True}]
    assert_no_exception_text_in_js_events("the calm client", client.seen)
    log = server.log_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:log.find("Traceback") + 2000]


# Socket.IO's connect with any auth: "VALID" stands for a good token
auths = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries({}, optional={
        "token": st.sampled_from(["VALID", "forged.token.value", "", "VALIDx"]) | json_values,
        "last_offset": st.integers(-2, 2**64) | json_values,
        "compression": st.sampled_from(["deflate", "gzip", "", "DEFLATE"]) | json_values,
        "colour": json_values,
    }).map(json.dumps),
    st.fixed_dictionaries({"token": st.just("VALID")}, optional={  # near-valid
        "last_offset": st.sampled_from([0, None]) | st.integers(-2, 2**64) | json_values,
        "compression": st.sampled_from(["deflate", None]) | json_values,
    }).map(json.dumps),
    st.text(max_size=60),
)
namespaces = st.sampled_from(["", "", "", "/admin,", "/,"])


def connect_answer(url: str, text: str) -> str:
    """Socket.IO's connect, "40" + ``text``, on a new Engine.IO session: the
    node's answer ("40…" accepted, "44…" refused, or "closed"), checked for
    exception text with whatever else came back."""
    ws = websocket.create_connection(
        url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket", timeout=5)
    try:
        assert ws.recv().startswith("0")  # Engine.IO open
        ws.send("40" + text)
        while True:
            opcode, frame = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                check_answer(frame[2:], text)
                return "closed"
            if isinstance(frame, bytes):
                frame = frame.decode("utf-8", errors="replace")
            check_answer(frame, text)
            if frame.startswith(("40", "44")) or frame == "1":
                return "closed" if frame == "1" else frame
    except (websocket.WebSocketException, OSError):
        return "closed"
    finally:
        try:
            ws.close()
        except (websocket.WebSocketException, OSError):
            pass


def test_arbitrary_auth_is_accepted_or_refused_with_a_reason(server):
    """Any auth (any JSON, near-valid objects, text that is not JSON), on
    the default namespace and on others: accepted, refused with a
    connect_error that says why in the service's own words, or closed."""
    token = server.token("fuzz-auth")
    seen: dict[str, int] = {}

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(namespaces, auths)
    def drive(namespace: str, auth: str) -> None:
        answer = connect_answer(server.url, namespace + auth.replace("VALID", token))
        seen[answer[:2]] = seen.get(answer[:2], 0) + 1
        if answer.startswith("44") and not namespace:
            refused = json.loads(answer[2:])
            assert refused["message"], answer
            assert refused["data"]["error"] and refused["data"]["detail"], answer

    drive()
    assert seen.get("44", 0) > 50 and seen.get("40", 0) > 5, seen  # refusals, and some accepted
    assert server.process.poll() is None
    deadline = time.monotonic() + 10  # every accepted one is gone again
    while time.monotonic() < deadline and admin_metrics(server)["connections"]:
        time.sleep(0.2)
    assert admin_metrics(server)["connections"] == 0
    log = server.log_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:log.find("Traceback") + 2000]


# What the fuzzer found, kept as fixed cases: each was a traceback in the
# node's log (the node lived), and now is one log line and a closed
# connection, or an error event on an open one.
FOUND = [("binary", b"\x00"), ("text", "\x00"), ("text", "44{}"), ("text", "42null"),
         ("text", "42[]"), ("text", "42[1]"), ("text", '42["connect"]'),
         ("text", '42["ack", {}, 1]'), ("text", '42{"a":')]


def test_what_the_fuzzer_found_is_refused_without_a_traceback(server):
    token = server.token("found")
    for kind, data in FOUND:
        raw = RawSocket(server.url, token)
        raw.send(kind, data)
        raw.close()
    assert server.process.poll() is None
    assert server.request("GET", "/healthz").status == 200
    log = server.log_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:log.find("Traceback") + 2000]
    assert "malformed Socket.IO" in log
