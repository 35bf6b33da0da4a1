"""No secret reaches a log line: a node run at DEBUG with distinctive secrets,
driven through every path that handles them (good and forged tokens, a
control change, Grafana's webhook, a refused and an accepted socket), writes
none of them, nor a database password."""

import json

from tests.support.grafana_webhook import GRAFANA_BODY
from tests.support.server_process import start_server, stop_server

SECRETS = {
    "PUBLISH_TOKEN": "pub-7Q9zX2kLm4Vw8Rt1",
    "ADMIN_TOKEN": "adm-3Hs6Ny0Pq5Jc2Bf9",
    "USER_TOKEN_SECRET": "uts-8Kd1Wm7Zx4Lr0Gh5",
}
GRAFANA_TOKEN = "gra-5Tv2Yc9Np3Qe6Ju1"
DB_PASSWORD = "dbpw-4Fa8Rk1Ls7Mo3Xi"
FORGED = "forged-2Hq7Uw4Zb9Ce5Vn0"


def test_no_secret_appears_in_the_node_log(pg_url, influx_database, tmp_path, js_client):
    # trust auth ignores the password, so the URL can carry one to be leaked
    database_url = pg_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    assert DB_PASSWORD in database_url
    node = start_server({"DATABASE_URL": database_url, "INFLUX_DB": influx_database,
                         "LOG_LEVEL": "DEBUG", "ADMIN_TOKENS": f"grafana:{GRAFANA_TOKEN}",
                         **SECRETS}, tmp_path)
    try:
        user_token = node.token("alice")
        assert node.publish({"user_id": "alice", "category": "c"})["offset"] == 1
        for token in (FORGED, SECRETS["ADMIN_TOKEN"]):  # refused: wrong, and wrong purpose
            refused = node.request("POST", "/api/v1/notifications", token=token,
                                   body={"user_id": "alice", "category": "c"})
            assert refused.status == 401
        changed = node.request("PUT", "/api/v1/config", token=SECRETS["ADMIN_TOKEN"],
                               body={"parameters": {"batch_size": 9}, "reason": "test"})
        assert changed.status == 200
        alert = node.request("POST", "/api/v1/alerts/grafana", token=GRAFANA_TOKEN,
                             body=GRAFANA_BODY)
        assert alert.status == 200
        forged = js_client(node.url, FORGED, "--timeout-ms", "5000")
        assert forged.wait_for("connect_error")["data"]["error"] == "unauthorized"
        client = js_client(node.url, user_token, "--expect", "1", "--timeout-ms", "10000")
        client.finish()
        assert [n["offset"] for n in client.notifications()] == [1]
    finally:
        assert stop_server(node) == 0
    log = node.log_text()
    assert "config changed by admin" in log  # it did log, at DEBUG, what happened
    for name, secret in {**SECRETS, "grafana": GRAFANA_TOKEN, "db password": DB_PASSWORD,
                         "forged token": FORGED, "user token": user_token}.items():
        assert secret not in log, f"{name} is in the log"
    assert json.dumps(GRAFANA_TOKEN) not in log
