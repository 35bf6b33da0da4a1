"""Socket.IO rate limits on a running node: connection attempts per address
and per user, and events per user and per address. Whoever is over a limit
is refused or closed with a reason; everyone else is served as before."""

from __future__ import annotations

import json
import re

import pytest
import websocket

from tests.support.influx_counts import connection_events
from tests.support.py_client import PyClient
from tests.support.server_process import start_server, stop_server

NOTE = {"category": "c", "payload": {"ok": True}}


def open_socket(server) -> websocket.WebSocket:
    ws = websocket.create_connection(
        server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=10)
    assert ws.recv().startswith("0")  # Engine.IO open
    return ws


def attempt(server, token: str) -> dict:
    """One Socket.IO connect by hand: {"ok": True}, or the refusal's data."""
    ws = open_socket(server)
    try:
        ws.send("40" + json.dumps({"token": token}))
        answer = ws.recv()
    finally:
        ws.close()
    if answer.startswith("40"):
        return {"ok": True}
    assert answer.startswith("44"), answer  # CONNECT_ERROR: {message, data}
    return json.loads(answer[2:])["data"]


def test_attempts_over_the_address_limit_are_refused_and_the_rest_keep_receiving(
        pg_url, influx_database, tmp_path, js_client):
    # a token every 20 s, 4 at once: nothing refills while the test runs
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "CONNECT_RATE_PER_IP": "0.05:4", "CONNECT_RATE_PER_USER": "0"},
                          tmp_path)
    held = None
    try:
        held = PyClient(server.url, server.token("bob"))
        # forged tokens count as attempts: the address is checked before the token
        answers = [attempt(server, "forged.token.value") for _ in range(5)]
        assert [a["error"] for a in answers] == ["unauthorized"] * 3 + ["rate_limited"] * 2
        assert answers[-1]["field"] == "ip"
        # the official client, with a good token, is told why and for how long
        refused = js_client(server.url, server.token("carol"), "--timeout-ms", "5000")
        data = refused.wait_for("connect_error")["data"]
        assert (data["error"], data["field"]) == ("rate_limited", "ip")
        assert re.fullmatch(r"too many connection attempts from this address; retry in \d+ s",
                            data["detail"]), data
        server.publish({**NOTE, "user_id": "bob"})
        assert len(held.wait_for(1)) == 1  # the connection inside is served as before
    finally:
        if held is not None:
            held.close()
        assert stop_server(server) == 0
    assert connection_events(influx_database, "refused", "rate_limited") == 3


def test_attempts_over_the_user_limit_are_refused_and_other_users_connect(
        pg_url, influx_database, tmp_path):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "CONNECT_RATE_PER_USER": "0.05:2", "CONNECT_RATE_PER_IP": "0"},
                          tmp_path)
    try:
        alice = server.token("alice")
        answers = [attempt(server, alice) for _ in range(3)]
        assert answers[:2] == [{"ok": True}] * 2
        assert (answers[2]["error"], answers[2]["field"]) == ("rate_limited", "user")
        assert "too many connection attempts for this user" in answers[2]["detail"]
        assert attempt(server, server.token("bob")) == {"ok": True}
    finally:
        assert stop_server(server) == 0


def flood(server, user: str, events: int) -> list[str]:
    """Connect as ``user`` and send up to ``events`` acks, each as soon as the
    last was answered (each asks for a reply), until the server closes the
    connection; return every frame it sent. Round trips are ~0.1 ms here, so
    this floods; waiting for each answer means the server has read all that
    was sent when it closes, so no reset can swallow its last frames."""
    ws = open_socket(server)
    ws.send("40" + json.dumps({"token": server.token(user)}))
    assert ws.recv().startswith("40")
    while not ws.recv().startswith('42["notifications"'):  # the replay: offset 1 to ack
        pass
    frames: list[str] = []
    try:
        for i in range(events):
            ws.send(f'42{i}["ack",{{"offset":1}}]')
            while True:
                frame = ws.recv()
                frames.append(frame)
                if not frame or frame == "41" or frame.startswith(f"43{i}["):
                    break
            if not frame or frame == "41":
                break
        while frames[-1]:  # what follows Socket.IO's disconnect: Engine.IO's close
            frames.append(ws.recv())
    except (websocket.WebSocketException, OSError):
        pass  # closed
    ws.close()
    return frames


@pytest.mark.parametrize("variable", ["EVENT_RATE_PER_USER", "EVENT_RATE_PER_IP"])
def test_an_event_flood_is_refused_then_closed_and_others_are_unaffected(
        pg_url, influx_database, tmp_path, js_client, variable):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "EVENT_RATE_PER_USER": "0", "EVENT_RATE_PER_IP": "0",
                           variable: "5:10"}, tmp_path)
    try:
        calm = js_client(server.url, server.token("calm"), "--expect", "1",
                         "--timeout-ms", "15000")
        calm.wait_for("connect")
        server.publish({**NOTE, "user_id": "mallory"})  # something to ack
        frames = flood(server, "mallory", 1_000)
        errors = [json.loads(f[2:])[1] for f in frames if f.startswith('42["error"')]
        assert errors and {e["error"] for e in errors} == {"rate_limited"}, frames[:5]
        assert {e["field"] for e in errors} == {"event"}
        assert "closing the connection" in errors[-1]["detail"]
        assert 20 < len(errors) < 200  # closed after a few dozen refusals, long before the end
        acks = [json.loads(f[f.index("["):])[0] for f in frames if f.startswith("43")]
        assert {"ok": True, "offset": 1} in acks  # the first ones, within the burst, went in
        assert "41" in frames  # Socket.IO's disconnect: clients do not reconnect by themselves
        metrics = server.request("GET", "/admin/api/performance/metrics",
                                 token=server.env["ADMIN_TOKEN"]).json()
        assert metrics["connections"] == 1  # the flooder's is gone, calm's kept
        server.publish({**NOTE, "user_id": "calm"})
        calm.finish()
        assert [n["payload"] for n in calm.notifications()] == [{"ok": True}]
        # the server never closed calm (its own close at the end may be in `seen`)
        assert not [e for e in calm.seen
                    if e["event"] == "disconnect" and e["reason"] != "io client disconnect"]
        if variable == "EVENT_RATE_PER_USER":  # per address, calm's ack shares the budget
            assert not any(e["event"] == "error" for e in calm.seen), calm.seen
    finally:
        assert stop_server(server) == 0
    log = server.log_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:log.find("Traceback") + 2000]
    assert connection_events(influx_database, "closed", "rate_limited") == 1


def attempt_from(server, token: str, forwarded_for: str) -> dict:
    """As ``attempt``, through a proxy that says the client is ``forwarded_for``."""
    ws = websocket.create_connection(
        server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        timeout=10, header=[f"X-Forwarded-For: {forwarded_for}"])
    try:
        assert ws.recv().startswith("0")
        ws.send("40" + json.dumps({"token": token}))
        answer = ws.recv()
    finally:
        ws.close()
    return {"ok": True} if answer.startswith("40") else json.loads(answer[2:])["data"]


def test_behind_a_proxy_the_limits_key_on_the_forwarded_address(
        pg_url, influx_database, tmp_path):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                           "CONNECT_RATE_PER_IP": "0.05:2", "CONNECT_RATE_PER_USER": "0",
                           "PROXY_HOPS": "1"}, tmp_path)
    try:
        token = server.token("dave")
        # a client sending its own X-Forwarded-For: the proxy appends the real address,
        # and only the last (the proxy's own entry) is trusted
        spoofed = [attempt_from(server, token, f"10.9.9.{i}, 198.51.100.7") for i in range(3)]
        assert [a.get("error", "ok") for a in spoofed] == ["ok", "ok", "rate_limited"]
        # another client behind the same proxy has its own allowance
        assert attempt_from(server, token, "198.51.100.8") == {"ok": True}
    finally:
        assert stop_server(server) == 0, server.log_text()
