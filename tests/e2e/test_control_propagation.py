"""Two nodes, two processes, one PostgreSQL database: a change made on one
reaches the other within a second (LISTEN/NOTIFY), and a node that was not
listening when a change was made catches up with it when it starts."""

import time

from tests.support.server_process import start_server, stop_server


def config_of(node) -> dict:
    return node.request("GET", "/api/v1/config", token=node.env["ADMIN_TOKEN"]).json()


def wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s")


def test_a_change_on_one_node_reaches_the_other_within_a_second(pg_url, influx_database,
                                                                tmp_path):
    env = {"DATABASE_URL": pg_url, "INFLUX_DB": influx_database}
    for name in ("a", "b", "late"):
        (tmp_path / name).mkdir()
    a = start_server(env, tmp_path / "a")
    b = start_server(env, tmp_path / "b")
    late = None
    try:
        changed = a.request("PUT", "/api/v1/config", token=a.env["ADMIN_TOKEN"],
                            body={"parameters": {"batch_size": 17}, "reason": "propagation"})
        assert changed.status == 200, changed.data
        took = wait_for(lambda: config_of(b)["parameters"]["batch_size"] == 17, timeout=1.0)
        assert config_of(b)["seq"] == changed.json()["seq"]

        stop_server(b)  # b misses the next change entirely
        a.request("PUT", "/api/v1/config", token=a.env["ADMIN_TOKEN"],
                  body={"level": "conservative", "reason": "while b was down"})
        late = start_server(env, tmp_path / "late")
        caught_up = config_of(late)
        assert caught_up["level"] == "conservative"
        assert caught_up["parameters"]["batch_size"] == 17  # the override survives the level
        print(f"propagated in {took * 1000:.0f} ms")
    finally:
        for node in (a, b, late):
            if node is not None:
                stop_server(node)
