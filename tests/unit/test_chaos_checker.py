"""bench/chaos_check.py: each kind of violation from the smallest history
that has it, and a clean history with everything a chaos run does (retries,
reconnects, a reload, broadcasts) that has none."""

from __future__ import annotations

import json

import pytest

from bench.chaos_check import KINDS, MAX_KEPT, check, read_history, summary


class History:
    """Records in the publisher's and chaos.mjs's formats."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.t = 1000.0

    def _tick(self) -> float:
        self.t += 0.01
        return round(self.t, 3)

    def run(self, broadcast_after: int) -> History:
        self.records.append({"type": "run", "broadcast_after": broadcast_after})
        return self

    def publish(self, seq: int, users: list[str] | None, status: int | None = 202,
                offset: int | None = None, entry_id: str | None = None) -> History:
        ok = status == 202
        self.records.append({
            "type": "publish", "seq": seq, "key": f"k{seq}", "users": users, "node": 0,
            "t": self._tick(), "status": status,
            "id": (entry_id or f"id{offset}") if ok else None, "offset": offset if ok else None,
        })
        return self

    def connect(self, client: str, user: str, conn: int, last_offset: int) -> History:
        self.records.append({"type": "connect", "client": client, "user": user, "conn": conn,
                             "node": 0, "t": self._tick(), "last_offset": last_offset})
        return self

    def batch(self, client: str, conn: int, *items: tuple) -> History:
        """items: (offset, seq) or (offset, seq, id); id defaults to id<offset>."""
        self.records.append({
            "type": "batch", "client": client, "conn": conn, "node": 0, "t": self._tick(),
            "items": [[i[0], i[2] if len(i) > 2 else f"id{i[0]}", i[1]] for i in items]})
        return self

    def reload(self, client: str, conn: int, first_offset: int) -> History:
        self.records.append({"type": "reload", "client": client, "conn": conn, "node": 0,
                             "t": self._tick(), "first_offset": first_offset, "epoch": 1})
        return self

    def disconnect(self, client: str, conn: int, by: str = "client") -> History:
        self.records.append({"type": "disconnect", "client": client, "conn": conn, "node": 0,
                             "t": self._tick(), "reason": "io client disconnect", "by": by})
        return self

    def final(self, client: str, user: str, connected: bool = True,
              last_offset: int = 0) -> History:
        self.records.append({"type": "final", "client": client, "user": user,
                             "t": self._tick() + 100, "connected": connected,
                             "last_offset": last_offset})
        return self


def clean() -> History:
    """Three clients (two share user a), retries, reconnects, a reload, broadcasts."""
    h = History().run(broadcast_after=1)
    h.connect("c1", "a", 1, 0).connect("c2", "b", 1, 0).connect("c3", "a", 1, 0)
    h.publish(1, ["a"], offset=1)
    # unanswered, then answered by the retry with the same key (idempotent)
    h.publish(2, ["a", "b"], status=None).publish(2, ["a", "b"], offset=2)
    # a broadcast: refused for a moment, then stored; answered twice the same
    h.publish(3, None, status=503).publish(3, None, offset=3).publish(3, None, offset=3)
    h.publish(4, ["b"], status=400)  # refused for good: never delivered
    h.publish(5, ["b"], status=429).publish(5, ["b"], offset=4)
    h.publish(6, ["b"], offset=5)
    h.publish(7, None, offset=6)
    h.publish(8, ["a"], status=None)  # no answer ever (the run ended): not delivered either
    h.batch("c1", 1, (1, 1), (2, 2)).disconnect("c1", 1)
    h.batch("c3", 1, (1, 1)).batch("c3", 1, (2, 2), (3, 3))
    h.batch("c2", 1, (2, 2)).disconnect("c2", 1, by="server")
    h.connect("c1", "a", 2, 2).batch("c1", 2, (3, 3), (6, 7))
    # 3 and 4 were trimmed before c2 came back: a reload says so, then 5 and 6 come
    h.connect("c2", "b", 2, 2).reload("c2", 2, first_offset=5)
    h.batch("c2", 2, (5, 6)).batch("c2", 2, (6, 7))
    h.batch("c3", 1, (6, 7))
    h.final("c1", "a", last_offset=6).final("c2", "b", last_offset=6)
    h.final("c3", "a", last_offset=6)
    return h


def test_a_clean_history_has_no_violation():
    report = check(clean().records)
    assert report.counts == {}
    assert report.violations == []
    assert report.ok
    assert report.publishes == 8
    assert report.acknowledged == 6
    assert report.refused == 2 and report.unconfirmed == 1
    assert report.clients == 3 and report.reconnects == 2 and report.reloads == 1
    assert report.deliveries_checked == 11
    assert report.clients_checked_for_loss == 3
    # c1 and c3 (a): 1 2 3 6; c2 (b): 5 6, the rest below its reload's first_offset
    assert report.owed_checked == 10


def test_the_books_balance_owed_is_delivered_excused_or_lost():
    report = check(clean().records)
    # c1, c3: 1 2 3 6 each; c2: 2 (before its reload), 3 and 4 trimmed, 5 6
    assert (report.owed_total, report.owed_delivered, report.excused_by_reload) == (13, 11, 2)
    lost = History().connect("c1", "a", 1, 0).publish(1, ["a"], offset=1).final("c1", "a")
    books = check(lost.records)
    assert (books.owed_total, books.owed_delivered, books.excused_by_reload,
            books.counts) == (1, 0, 0, {"lost": 1})


def test_the_clean_history_checks_the_same_in_any_order():
    records = clean().records
    clients = [r for r in records if r["type"] not in ("publish", "run")]
    publisher = [r for r in records if r["type"] in ("publish", "run")]
    assert check(clients + publisher).counts == {}
    assert check(list(reversed(publisher)) + clients).counts == {}


def only(report, kind: str, n: int = 1) -> None:
    assert report.counts == {kind: n}, report.violations
    assert {v.kind for v in report.violations} == {kind}


def test_lost_an_owed_entry_never_received():
    h = History().connect("c1", "a", 1, 0).publish(1, ["a"], offset=1).final("c1", "a")
    report = check(h.records)
    only(report, "lost")
    assert report.violations[0].client == "c1"
    assert "offset 1" in report.violations[0].detail


def test_lost_across_connections_counts_what_any_of_them_got():
    h = History().publish(1, ["a"], offset=1).publish(2, ["a"], offset=2)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 1)).disconnect("c1", 1)
    h.connect("c1", "a", 2, 1).final("c1", "a")
    only(check(h.records), "lost")  # 2 only
    h.batch("c1", 2, (2, 2))
    assert check(h.records).counts == {}


def test_not_lost_when_the_client_was_not_connected_at_the_end():
    h = History().connect("c1", "a", 1, 0).publish(1, ["a"], offset=1)
    h.final("c1", "a", connected=False)
    assert check(h.records).counts == {}


def test_not_lost_below_a_reload_first_offset_nor_at_or_below_the_first_last_offset():
    h = History().publish(1, ["a"], offset=1).publish(2, ["a"], offset=2)
    h.publish(3, ["a"], offset=3)
    h.connect("c1", "a", 1, 1).reload("c1", 1, first_offset=3).final("c1", "a")
    only(check(h.records), "lost")  # 3 alone: 1 came before, 2 was trimmed


def test_broadcasts_are_owed_past_broadcast_after_only():
    h = History().run(broadcast_after=1).connect("c1", "a", 1, 0)
    h.publish(1, None, offset=1).publish(2, None, offset=2).final("c1", "a")
    report = check(h.records)
    only(report, "lost")
    assert "offset 2" in report.violations[0].detail


def test_not_lost_when_published_after_the_clients_final():
    h = History().connect("c1", "a", 1, 0).final("c1", "a")
    h.records[-1]["t"] = 1.0  # the client had closed before the publish was answered
    h.publish(1, ["a"], offset=1)
    assert check(h.records).counts == {}


def test_duplicate_on_one_connection():
    h = History().publish(1, ["a"], offset=1).connect("c1", "a", 1, 0)
    h.batch("c1", 1, (1, 1)).batch("c1", 1, (1, 1)).final("c1", "a")
    only(check(h.records), "duplicate")


def test_duplicate_not_out_of_order_when_an_earlier_one_comes_again():
    h = History().publish(1, ["a"], offset=1).publish(2, ["a"], offset=2)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 1), (2, 2), (1, 1))
    only(check(h.records), "duplicate")


def test_the_same_offset_on_two_connections_is_no_duplicate():
    h = History().publish(1, ["a"], offset=1).connect("c1", "a", 1, 0)
    h.batch("c1", 1, (1, 1)).connect("c1", "a", 2, 0).batch("c1", 2, (1, 1))
    assert check(h.records).counts == {}


def test_out_of_order_on_one_connection():
    h = History().publish(1, ["a"], offset=1).publish(2, ["a"], offset=2)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (2, 2)).batch("c1", 1, (1, 1)).final("c1", "a")
    report = check(h.records)
    only(report, "out_of_order")
    assert "got offset 1 after 2" in report.violations[0].detail


def test_an_out_of_order_offset_that_comes_again_is_a_duplicate():
    h = History().publish(1, ["a"], offset=1).publish(2, ["a"], offset=2)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (2, 2), (1, 1), (1, 1))
    assert check(h.records).counts == {"out_of_order": 1, "duplicate": 1}


def test_at_or_below_last_offset_a_connection_was_opened_with():
    h = History().publish(1, ["a"], offset=1).publish(2, ["a"], offset=2)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 1), (2, 2)).disconnect("c1", 1)
    h.connect("c1", "a", 2, 2).batch("c1", 2, (2, 2)).final("c1", "a")
    report = check(h.records)
    only(report, "at_or_below_last_offset")
    assert "last_offset 2 got 2" in report.violations[0].detail


def test_refused_delivered():
    h = History().publish(1, ["a"], status=503).publish(1, ["a"], status=400)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 1)).final("c1", "a")
    only(check(h.records), "refused_delivered")


def test_a_publish_never_answered_may_be_delivered():
    h = History().publish(1, ["a"], status=None)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 1)).final("c1", "a")
    report = check(h.records)
    assert report.counts == {}
    assert report.refused == 1 and report.unconfirmed == 1


def test_wrong_entry_delivered_id_differs_from_the_202():
    h = History().publish(1, ["a"], offset=1, entry_id="right")
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 1, "wrong")).final("c1", "a")
    only(check(h.records), "wrong_entry")


def test_wrong_entry_delivered_offset_differs_from_the_202():
    h = History().publish(1, ["a"], offset=1, entry_id="x").publish(2, ["a"], offset=2)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 2), (2, 1, "x")).final("c1", "a")
    # offset 1 came with seq 2 and offset 2 with seq 1: both wrong
    only(check(h.records), "wrong_entry", 2)


def test_wrong_entry_a_retry_stored_twice():
    h = History().publish(1, ["a"], status=None).publish(1, ["a"], offset=1)
    h.publish(1, ["a"], offset=2)
    report = check(h.records)
    only(report, "wrong_entry")
    assert report.violations[0].client is None
    assert "k1" in report.violations[0].detail


def test_misdelivered_a_targeted_entry_to_another_user():
    h = History().publish(1, ["b"], offset=1)
    h.connect("c1", "a", 1, 0).batch("c1", 1, (1, 1)).final("c1", "a")
    report = check(h.records)
    only(report, "misdelivered")
    assert report.violations[0].client == "c1"


def test_phantom_an_entry_nobody_published():
    h = History().connect("c1", "a", 1, 0).batch("c1", 1, (1, 77)).final("c1", "a")
    only(check(h.records), "phantom")
    h = History().connect("c1", "a", 1, 0).batch("c1", 1, (1, None)).final("c1", "a")
    only(check(h.records), "phantom")


def test_every_kind_is_tested_here():
    tested = {name.split("_", 1)[1] for name in globals() if name.startswith("test_")}
    for kind in KINDS:
        assert any(t.startswith(kind) for t in tested), kind


def test_violations_kept_are_capped_but_all_are_counted():
    h = History().connect("c1", "a", 1, 0)
    for seq in range(1, 501):
        h.publish(seq, ["b"], offset=seq)
    h.batch("c1", 1, *[(s, s) for s in range(1, 501)])
    for seq in range(501, 601):
        h.publish(seq, ["a"], offset=seq)
    h.final("c1", "a")
    report = check(h.records)
    assert report.counts == {"misdelivered": 500, "lost": 100}
    assert len(report.violations) <= MAX_KEPT
    assert {v.kind for v in report.violations} == {"misdelivered", "lost"}
    out = report.to_dict()
    json.dumps(out)
    assert out["ok"] is False and out["counts"]["misdelivered"] == 500
    assert "violations" not in summary(report)


def test_many_deliveries_in_one_pass():
    """2,000 clients, 100 broadcasts each: 200,000 items checked, nothing owed missing."""
    h = History().run(broadcast_after=0)
    for c in range(2000):
        h.connect(f"c{c}", f"u{c}", 1, 0)
    for seq in range(1, 101):
        h.publish(seq, None, offset=seq)
    items = [(s, s) for s in range(1, 101)]
    for c in range(2000):
        h.batch(f"c{c}", 1, *items)
        h.final(f"c{c}", f"u{c}")
    report = check(h.records)
    assert report.counts == {}
    assert report.deliveries_checked == 200_000 and report.owed_checked == 200_000


@pytest.mark.parametrize("order", ["clients_first", "publisher_first"])
def test_read_history_gives_the_publisher_first(tmp_path, order):
    records = clean().records
    pub = tmp_path / "publisher.jsonl"
    cli = tmp_path / "clients.jsonl"
    pub.write_text("".join(json.dumps(r) + "\n" for r in records
                           if r["type"] in ("publish", "run")))
    cli.write_text("".join(json.dumps(r) + "\n" for r in records
                           if r["type"] not in ("publish", "run")) + '{"type": "bat')
    paths = [cli, pub] if order == "clients_first" else [pub, cli]
    read = list(read_history(paths))
    kinds = [r["type"] for r in read]
    n_first = sum(1 for r in records if r["type"] in ("publish", "run"))
    assert set(kinds[:n_first]) == {"publish", "run"}
    assert kinds[-1] == "malformed"
    report = check(read)
    assert report.counts == {} and report.malformed == 1


def test_a_removed_batch_is_caught():
    """What the e2e test leans on: drop one delivered batch, an entry is lost."""
    records = clean().records
    assert check(records).counts == {}
    gone = next(i for i, r in enumerate(records)
                if r["type"] == "batch" and r["client"] == "c1" and r["conn"] == 2)
    report = check(records[:gone] + records[gone + 1:])
    assert report.counts == {"lost": 2}
