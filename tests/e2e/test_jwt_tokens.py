"""JWT user tokens end to end: a node with JWT_SECRET, tokens minted by Node's
jsonwebtoken, and the official socket.io-client connecting with them."""

import subprocess

from tests.support.repository import ROOT
from tests.support.server_process import start_server, stop_server

SECRET = "e2e-jwt-secret-at-least-32-bytes-long"
MINT = ROOT / "clients" / "js" / "mint-jwt.mjs"


def mint(secret: str, sub: str, *args: str) -> str:
    """A token from jsonwebtoken, as an application's Node backend makes one."""
    done = subprocess.run(["node", str(MINT), secret, sub, *args], capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.strip()


def test_a_jsonwebtoken_jwt_connects_and_bad_ones_are_refused_with_the_reason(
        pg_url, influx_database, tmp_path, js_client):
    node = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database,
                         "JWT_SECRET": SECRET, "JWT_AUDIENCE": "notify"}, tmp_path)
    try:
        good = js_client(node.url, mint(SECRET, "jay", "--audience", "notify"),
                         "--expect", "1", "--timeout-ms", "15000")
        good.wait_for("connect")
        node.publish({"user_id": "jay", "category": "jwt", "payload": {"n": 1}})
        good.finish()
        assert [(n["offset"], n["payload"]) for n in good.notifications()] == [(1, {"n": 1})]

        refusals = {
            "has expired": mint(SECRET, "jay", "--audience", "notify", "--expires-in", "-120"),
            "bad signature": mint("another-secret-that-is-32-bytes-long!", "jay",
                                  "--audience", "notify"),
            "another audience": mint(SECRET, "jay", "--audience", "billing"),
        }
        for reason, token in refusals.items():
            refused = js_client(node.url, token, "--timeout-ms", "5000")
            error = refused.wait_for("connect_error")
            assert reason in error["message"], (reason, error)
            assert error["data"] == {"error": "unauthorized", "detail": error["message"],
                                     "field": "token"}
            assert refused.notifications() == []
        # today's format still works alongside, for the deprecation period
        old = js_client(node.url, node.token("jay"), "--last-offset", "0", "--expect", "1")
        old.finish()
        assert [n["offset"] for n in old.notifications()] == [1]
    finally:
        assert stop_server(node) == 0, node.log_text()
