"""The storm benchmark's and the harness-shaped fan-out's pure parts: merging
the Node processes' results, one storm's figures, the summary over rounds,
publish answer figures, and the paced publisher's stop."""

import time

import pytest

from bench.fanout_harness import pooled_publish
from bench.fanout_harness import summarize as summarize_harness
from bench.loadgen import Answer, Publisher, answer_figures
from bench.storm_stats import (
    add_counts,
    merge_done,
    per_round,
    problems,
    ratios,
    storm_figures,
    summarize_config,
    targets,
)


def done(**over):
    """A storm.mjs "done" line, as JSON gives it (string keys)."""
    base = {"event": "done", "clients": 100, "connected": 100, "refused": 0, "refusals": {},
            "disconnects": {}, "errors": {}, "connect_s": 1.0, "opened_at_ms": 1_000_000,
            "settled_at_ms": 1_001_000, "connect_hist": {"100": 60, "1100": 40},
            "delivered": 500, "owed": 500, "missing": 0, "out_of_order": 0,
            "leaked_text": [], "cpu_ms": 1500}
    return base | over


def answer(sent_ms, ms, status="202", offset=1, text=""):
    return Answer(sent_ms, ms, status, offset if status == "202" else None, text)


def test_add_counts_adds_into_the_first():
    total = add_counts({}, {"rate_limited": 2})
    assert add_counts(total, {"rate_limited": 1, "transport: timeout": 4}) is total
    assert total == {"rate_limited": 3, "transport: timeout": 4}


def test_merge_done_adds_counts_and_spans_the_earliest_open_to_the_latest_settle():
    a = done(refused=2, connected=98, refusals={"rate_limited": 2}, errors={"x": 1},
             leaked_text=["one"])
    b = done(opened_at_ms=1_000_050, settled_at_ms=1_002_500, refusals={"rate_limited": 1},
             refused=1, connected=99, connect_hist={"100": 1, "2000": 2})
    merged = merge_done([a, b])
    assert merged["clients"] == 200 and merged["connected"] == 197 and merged["refused"] == 3
    assert merged["refusals"] == {"rate_limited": 3}
    assert merged["errors"] == {"x": 1}
    assert merged["opened_at_ms"] == 1_000_000
    assert merged["settled_at_ms"] == 1_002_500
    assert merged["connect_hist"] == {100.0: 61, 1100.0: 40, 2000.0: 2}
    assert merged["leaked_text"] == ["one"]
    assert merged["cpu_ms"] == 3000


def test_merge_done_without_a_settle_has_none():
    merged = merge_done([done(), done(settled_at_ms=None)])
    assert merged["settled_at_ms"] is None
    assert storm_figures(merged, [])["connect_s"] is None
    assert storm_figures(merged, [])["connect_per_s"] is None


def test_storm_figures_split_the_answers_at_the_settle():
    merged = merge_done([done(), done()])
    answers = [answer(1_000_100, 10.0), answer(1_000_900, 300.0),
               answer(1_001_000, 20.0),  # on the settle: still during
               answer(1_001_500, 5.0)]   # the tail
    m = storm_figures(merged, answers)
    assert m["connect_s"] == 1.0 and m["connect_per_s"] == 200
    assert m["publish_during"]["n"] == 3 and m["publish_all"]["n"] == 4
    assert m["publish_during"]["p99_ms"] == 300.0
    assert m["during_ms"] == [10.0, 300.0, 20.0]
    assert m["connect_p50_ms"] == 100.0 and m["connect_p99_ms"] == 1100.0
    assert m["connects_over_1s"] == 80  # the 1,100 ms bucket of both processes


def test_storm_figures_flag_internal_text_in_an_answer():
    merged = merge_done([done(leaked_text=["connect_error: QueuePool limit"])])
    answers = [answer(1_000_100, 10.0, "500", text='{"error": "internal", "id": "e1"}'),
               answer(1_000_200, 10.0, "503", text="sqlalchemy.exc.TimeoutError: QueuePool")]
    leaked = storm_figures(merged, answers)["leaked_text"]
    assert leaked[0] == "connect_error: QueuePool limit"
    assert len(leaked) == 2 and leaked[1].startswith("publish 503: sqlalchemy")


def test_answer_figures_are_nearest_rank_with_statuses():
    answers = [answer(0, float(ms)) for ms in range(1, 101)] + [answer(0, 900.0, "429")]
    figures = answer_figures(answers)
    assert figures["n"] == 101
    assert figures["p50_ms"] == 51.0 and figures["p99_ms"] == 100.0
    assert figures["max_ms"] == 900.0
    assert figures["status"] == {"202": 100, "429": 1}
    assert answer_figures([])["p99_ms"] is None


def run_figures(rate, refused=0, during=(10.0,), **over):
    base = {"connect_s": 1.0, "connect_per_s": rate, "refused": refused,
            "refusals": {"rate_limited": refused} if refused else {},
            "during_ms": list(during), "delivered": 10, "owed": 10, "missing": 0,
            "out_of_order": 0, "leaked_text": [], "disconnects": {}, "error_events": {},
            "publish_all": {"status": {"202": len(during)}},
            "publish_during": {"p99_ms": max(during), "n": len(during)},
            "connect_p99_ms": 900.0, "connects_over_1s": 0}
    return base | over


def test_ratios_pair_rounds_and_skip_a_round_that_never_settled():
    ours = [run_figures(300), run_figures(None), run_figures(500)]
    peer = [run_figures(600), run_figures(600), run_figures(500)]
    assert ratios(ours, peer) == [0.5, 1.0]


def test_summarize_config_flattens_one_storage_and_cohort():
    rounds = [{"ours": run_figures(300, refused=2, during=[10.0, 400.0]),
               "peer": run_figures(600, during=[5.0])},
              {"ours": run_figures(450, during=[20.0]), "peer": run_figures(500)}]
    s = summarize_config("postgres_new", rounds)
    assert s["connect_ratio_vs_node_postgres_new"] == pytest.approx(0.7)  # of 0.5 and 0.9
    assert s["connect_ratio_vs_node_postgres_new_range"] == [0.5, 0.9]
    assert s["connect_per_s_postgres_new"] == 375
    assert s["node_peer_connect_per_s_postgres_new"] == 550
    assert s["refused_postgres_new"] == 2
    assert s["refusals_postgres_new"] == {"rate_limited": 2}
    assert s["publish_p99_ms_postgres_new"] == 400.0  # pooled: 3 answers, nearest rank
    assert s["publish_p50_ms_postgres_new"] == 20.0
    assert s["node_peer_publish_p99_ms_postgres_new"] == 10.0
    assert s["connects_over_1s_postgres_new"] == {"ours": 0, "peer": 0}


def test_problems_keep_only_what_was_seen():
    clean = [run_figures(300), run_figures(300)]
    assert problems(clean) == {}
    bad = [run_figures(300, out_of_order=2, disconnects={"transport close": 1},
                       publish_all={"status": {"202": 9, "503": 1}}),
           run_figures(300, missing=4, disconnects={"transport close": 2})]
    assert problems(bad) == {"out_of_order": 2, "missing": 4,
                             "disconnects": {"transport close": 3},
                             "publish_status": {"503": 1}}


def test_per_round_keeps_each_side_short():
    rows = per_round([{"ours": run_figures(300, close_s=0.2), "peer": run_figures(600)}])
    assert rows[0]["ours"]["close_s"] == 0.2 and "close_s" not in rows[0]["peer"]
    assert rows[0]["peer"] == {"connect_s": 1.0, "connect_per_s": 600, "refused": 0,
                               "connect_p99_ms": 900.0, "delivered": 10, "missing": 0,
                               "connects_over_1s": 0, "publish_p99_ms": 10.0,
                               "publishes": 1}


def test_targets_hold_the_10000_client_figures_to_postgres_only():
    found = targets(["sqlite_new", "postgres_returning"])
    assert found["connect_ratio_vs_node_sqlite_new"] == ">= 0.5"
    assert found["connect_ratio_vs_node_postgres_returning"] == ">= 0.5"
    assert "refused_sqlite_new" not in found
    assert found["refused_postgres_returning"].startswith("== 0")
    assert found["connect_s_postgres_returning"].startswith("<= 30")
    assert found["publish_p99_ms_postgres_returning"].startswith("<= 250")


def harness_run(rate, hist, **over):
    base = {"deliveries_per_s": rate, "missing": 0, "out_of_order": 0, "refused": 0,
            "leaked_text": [], "refusals": {}, "disconnects": {}, "errors": {},
            "connect_s": 1.5, "publish": {"status": {"202": sum(hist.values())}, "hist": hist}}
    return base | over


def test_harness_summary_pairs_rounds_and_pools_answers():
    runs = {"ours": [harness_run(60_000, {"10.0": 98, "300.0": 2}),
                     harness_run(90_000, {"20.0": 100})],
            "peer": [harness_run(40_000, {"100.0": 100}), harness_run(30_000, {"50.0": 100})]}
    s = summarize_harness(runs)
    assert s["harness_shape_ratio_vs_node"] == pytest.approx(2.25)  # of 1.5 and 3.0
    assert s["harness_shape_ratio_vs_node_range"] == [1.5, 3.0]
    assert s["harness_shape_per_s"] == 75_000
    assert s["harness_shape_node_peer_per_s"] == 35_000
    assert s["harness_shape_publish_p50_ms"] == 20.0
    assert s["harness_shape_publish_p99_ms"] == 20.0  # 2 slow of 200: under 1 %
    assert s["harness_shape_problems"] is None


def test_harness_summary_reports_problems_per_side():
    runs = {"ours": [harness_run(60_000, {"10.0": 1}, refused=3,
                                 refusals={"rate_limited": 3}, errors={"rate_limited": 7})],
            "peer": [harness_run(40_000, {"10.0": 1})]}
    issues = summarize_harness(runs)["harness_shape_problems"]
    assert issues == {"ours": {"refused": 3, "refusals": {"rate_limited": 3},
                               "errors": {"rate_limited": 7}}}


def test_pooled_publish_of_no_runs():
    assert pooled_publish([]) == {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}


class CountingPublisher(Publisher):
    def __init__(self):
        super().__init__("http://127.0.0.1:9", concurrency=1)
        self.sent = []

    def publish(self, i):
        self.sent.append(i)


def test_paced_stops_on_until_without_waiting_for_a_distant_slot():
    publisher = CountingPublisher()
    deadline = time.monotonic() + 0.2
    started = time.monotonic()
    # one publish every 100 s: the first goes at once, the end comes long before the next
    publisher.paced(None, 0.01, until=lambda: time.monotonic() >= deadline)
    assert publisher.sent == [0]
    assert time.monotonic() - started < 2.0


def test_paced_with_a_count_publishes_that_many():
    publisher = CountingPublisher()
    publisher.paced(5, 1000.0)
    assert publisher.sent == [0, 1, 2, 3, 4]
