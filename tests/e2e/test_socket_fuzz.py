"""Fuzzing the Socket.IO side of a running node (hypothesis, a bounded number
of examples): arbitrary text and binary frames, malformed Engine.IO and
Socket.IO packets, and well-formed events with arbitrary names and
arguments, on raw WebSockets. The node must answer each bad event with an
error or a close, never crash, never keep a closed connection, and go on
delivering to a well-behaved client."""

from __future__ import annotations

import json
import time

import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10)

frames = st.one_of(
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.binary(max_size=200).map(lambda b: ("binary", b)),
    # Socket.IO events: "42" + [name, *args], the ack's own name included
    st.tuples(st.sampled_from(["ack", "notifications", "connect", "x", ""]) | st.text(max_size=10),
              st.lists(json_values, max_size=3))
      .map(lambda e: ("text", "42" + json.dumps([e[0], *e[1]]))),
    # acks with odd offsets, and packet types with junk after them
    json_values.map(lambda v: ("text", "42" + json.dumps(["ack", {"offset": v}]))),
    st.tuples(st.sampled_from(["0", "1", "2", "3", "4", "40", "41", "43", "44", "45", "46"]),
              st.text(max_size=50)).map(lambda p: ("text", p[0] + p[1])),
)


class RawSocket:
    """A Socket.IO client made by hand, so it can say anything."""

    def __init__(self, url: str, token: str) -> None:
        self.ws = websocket.create_connection(
            url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket", timeout=5)
        assert self.ws.recv().startswith("0")  # Engine.IO open
        self.ws.send("40" + json.dumps({"token": token}))
        answer = self.ws.recv()
        assert answer.startswith("40"), answer

    def send(self, kind: str, data: str | bytes) -> bool:
        """Send a frame; False once the server has closed the connection."""
        try:
            if kind == "binary":
                self.ws.send_binary(data)
            else:
                self.ws.send(data)
            self.ws.settimeout(0.05)
            try:
                while self.ws.recv():  # errors, pings: drain what came back
                    pass
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
    token = server.token("fuzz")
    opened = [RawSocket(server.url, token)]

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(st.lists(frames, min_size=1, max_size=5))
    def drive(batch):
        for kind, data in batch:
            if not opened[-1].send(kind, data):
                opened[-1].close()
                opened.append(RawSocket(server.url, token))  # the node closed it: reconnect

    drive()
    for raw in opened:
        raw.close()
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
