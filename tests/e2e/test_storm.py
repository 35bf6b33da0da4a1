"""What official clients see when a thousand of them connect at once, as
after a deploy, and when publishes come while the node fans out: nobody is
refused, every publish is answered 202, every client gets every entry it is
owed once and in order, and no answer or connect_error carries a Python
exception's text. (How fast: ``python -m bench storm`` and ``bench fanout``.)"""

from tests.support.js_clients import run_storm

CLIENTS = 1_000


def assert_clean(result: dict, clients: int) -> None:
    assert result["connected"] == clients, (result["refusals"], result["disconnects"])
    assert result["refused"] == 0 and result["refusals"] == {}
    assert result["disconnects"] == {} and result["errors"] == {}
    assert set(result["publish"]["status"]) == {"202"}, result["publish"]
    assert result["out_of_order"] == 0
    assert result["missing"] == 0 and result["delivered"] >= result["owed"] > 0
    assert result["leaked_text"] == []


def test_a_storm_of_new_then_returning_clients_on_postgresql_while_publishing(
        server, tmp_path):
    """The per-IP connect limit stays on: the clients come from 50 loopback
    addresses, as from many hosts. The pool is the default (10 + 10)."""
    users = [f"storm-{i}" for i in range(CLIENTS)]
    spread = ("--addresses", "50", "--publish", "during", "--publish-rate", "20",
              "--broadcasts", "20", "--in-flight", "8")
    first = run_storm(server, users, tmp_path, *spread)
    assert_clean(first, CLIENTS)
    # the same users again: their streams exist, and they are owed what came
    # after their last ack
    again = run_storm(server, users, tmp_path, *spread)
    assert_clean(again, CLIENTS)
    assert "Traceback" not in server.log_text()


def test_publishes_during_fan_out_are_answered_and_delivered_in_order(sqlite_server, tmp_path):
    """The outside harness's shape, on the embedded default: publishing
    starts as the last client connects, 100 broadcasts with 8 in flight."""
    users = [f"fan-{i}" for i in range(CLIENTS)]
    result = run_storm(sqlite_server, users, tmp_path, "--addresses", "50",
                       "--publish", "after", "--broadcasts", "100", "--in-flight", "8")
    assert_clean(result, CLIENTS)
    assert result["publish"]["sent"] == 100
    assert result["delivered"] == CLIENTS * 100
