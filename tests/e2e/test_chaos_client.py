"""clients/js/chaos.mjs against a real node, checked by bench/chaos_check.py:
twenty clients that keep closing and reopening their sockets while entries
are published get every one they are owed, once and in order, and the
checker finds nothing; with one delivered batch taken out of the history, it
finds the loss."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import urllib3

from bench.chaos_check import check, read_history
from tests.support.node_process import NodeEvents
from tests.support.repository import ROOT

CHAOS_CLIENT = ROOT / "clients" / "js" / "chaos.mjs"
CLIENTS = 20
USERS = 12  # fewer than clients: some users have two at once
TARGETED = 200
BROADCASTS = 5


class Chaos(NodeEvents):
    """chaos.mjs as a process: its stdout lines as events, commands on stdin."""

    def __init__(self, args: list[str]) -> None:
        super().__init__([str(CHAOS_CLIENT), *args], stdin=True)

    def wait_for(self, name: str, timeout: float) -> dict:
        event = self.next_event(name, timeout)
        if event is None:
            statuses = [e for e in self.seen if e["event"] == "status"][-3:]
            raise AssertionError(f"no {name!r} from chaos.mjs; last: {statuses}; "
                                 f"stderr: {self.stderr_if_ended()}")
        return event

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()



def publish_all(server, path: Path, users: list[str], rng: random.Random,
                seconds: float) -> int:
    """TARGETED entries to one to three users and BROADCASTS broadcasts, spread
    over ``seconds``, each retried with its Idempotency-Key until a 202 or a
    definitive refusal; one publish record per attempt. How many got a 202."""
    http = urllib3.PoolManager(retries=False, maxsize=2)
    headers = {"Content-Type": "application/json",
               "Authorization": f"Bearer {server.env['PUBLISH_TOKEN']}"}
    total = TARGETED + BROADCASTS
    broadcast_at = {round(total * (i + 1) / (BROADCASTS + 1)) for i in range(BROADCASTS)}
    acknowledged = 0
    started = time.monotonic()
    with open(path, "a") as out:
        out.write(json.dumps({"type": "run", "broadcast_after": 0}) + "\n")
        for seq in range(1, total + 1):
            targets = None if seq in broadcast_at else rng.sample(users, rng.randint(1, 3))
            body = {"category": "chaos", "priority": "normal", "payload": {"seq": seq}}
            body.update({"broadcast": True} if targets is None else {"user_ids": targets})
            key = uuid.uuid4().hex
            for _attempt in range(20):
                rec = {"type": "publish", "seq": seq, "key": key, "users": targets, "node": 0,
                       "t": time.time(), "status": None, "id": None, "offset": None}
                try:
                    answer = http.request("POST", server.url + "/api/v1/notifications",
                                          body=json.dumps(body),
                                          headers={**headers, "Idempotency-Key": key},
                                          timeout=5.0)
                    rec["status"] = answer.status
                    if answer.status == 202:
                        data = answer.json()
                        rec["id"], rec["offset"] = data["id"], data["offset"]
                except urllib3.exceptions.HTTPError:
                    pass
                out.write(json.dumps(rec) + "\n")
                if rec["status"] == 202:
                    acknowledged += 1
                    break
                if rec["status"] is not None and 400 <= rec["status"] < 500 \
                        and rec["status"] not in (409, 429):
                    break
                time.sleep(0.2)
            # spread the rest over what is left of ``seconds``
            time.sleep(max(0.0, started + seconds * seq / total - time.monotonic()))
    return acknowledged


def test_churning_clients_get_everything_and_the_checker_can_tell(server, tmp_path):
    users = [f"chaos-u{i}" for i in range(USERS)]
    clients = [{"client": f"c{i}", "user": users[i % USERS],
                "token": server.token(users[i % USERS])} for i in range(CLIENTS)]
    clients_file = tmp_path / "clients.json"
    clients_file.write_text(json.dumps(clients))
    history = tmp_path / "clients.jsonl"
    published = tmp_path / "publisher.jsonl"

    chaos = Chaos(["--clients", str(clients_file), "--nodes", server.url,
                   "--out", str(history), "--seed", "7", "--churn-per-min", "30",
                   "--status-ms", "500"])
    try:
        chaos.wait_for("ready", 15)
        acknowledged = publish_all(server, published, users, random.Random(7), seconds=8.0)
        assert acknowledged == TARGETED + BROADCASTS
        chaos.send("settle")
        settled = chaos.wait_for("settled", 20)
        assert settled["connected"] == CLIENTS
        time.sleep(2.0)  # the last entries reach those that just came back
        chaos.send("close")
        done = chaos.wait_for("done", 10)
        assert chaos.process.wait(timeout=10) == 0
    finally:
        chaos.close()

    records = list(read_history([published, history]))
    report = check(records)
    assert report.ok, (report.counts, report.violations[:10])
    assert report.publishes == report.acknowledged == TARGETED + BROADCASTS
    assert report.clients == CLIENTS
    assert report.clients_checked_for_loss == CLIENTS  # every one connected at the end
    assert report.deliveries_checked >= done["received"] > 0
    # broadcasts alone are owed to all twenty
    assert report.owed_checked >= CLIENTS * BROADCASTS + TARGETED
    assert report.reconnects >= CLIENTS  # churn at 30/min for 8 s and more
    # reconnects asked for what came after what they had: the replay was exercised
    assert any(r["type"] == "connect" and r["conn"] > 1 and r["last_offset"] > 0
               for r in records)
    assert done["disconnects"] >= CLIENTS
    assert sum(1 for r in records if r["type"] == "final") == CLIENTS
    assert {r["type"] for r in records} >= {"connect", "batch", "disconnect", "final"}

    # the same history with one delivered batch less: the checker sees the loss
    gone = next(i for i, r in enumerate(records) if r["type"] == "batch")
    lost = {item[0] for item in records[gone]["items"]}
    report = check(records[:gone] + records[gone + 1:])
    assert set(report.counts) == {"lost"}, report.counts
    assert report.counts["lost"] == len(lost)
    assert all(v.client == records[gone]["client"] for v in report.violations)
