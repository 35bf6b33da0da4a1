"""The optimization report and the trends, on an in-memory AnalysisReader:
which changes, which windows, what effect, and how the Markdown reads."""

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.control import EventDraft, recommendation_states
from service.domain.errors import InvalidInput
from service.domain.report import (
    METRIC_KEYS,
    Window,
    changes_of,
    effect_windows,
    relative_change,
)
from service.service_layer.reports import (
    MAX_CHANGES,
    MAX_REGRESSIONS,
    optimization_report,
    render_markdown,
    trends,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def events_of(*specs):
    """(minutes after T0, type, payload) -> recorded events, seq 1, 2, ..."""
    return [EventDraft(kind, payload, "ops", f"why {i + 1}", at(m)).recorded(i + 1)
            for i, (m, kind, payload) in enumerate(specs)]


class RegimeReader:
    """Each config regime (from a change to the next) has its own metrics; a
    window that spans two regimes is a bug in the clipping, so it fails."""

    def __init__(self, regimes=(), trends=(), regressions=()):
        self.regimes = sorted(regimes, key=lambda r: r[0])  # (start, summary)
        self.trends = list(trends)
        self.found = list(regressions)
        self.calls = []
        self.regression_calls = []

    def window_summary(self, start, end):
        self.calls.append((start, end))
        inside = [s for t, s in self.regimes if start < t < end]
        assert not inside, f"window {start}..{end} spans a change"
        current = [s for t, s in self.regimes if t <= start]
        return dict(current[-1]) if current else dict.fromkeys(METRIC_KEYS)

    def latest_trends(self):
        return list(self.trends)

    def regressions(self, since, until, limit):
        self.regression_calls.append((since, until, limit))
        return [r for r in self.found if since.isoformat() <= r["at"]][-limit:]


def summary(delivered, p99, drops=0.0, hit=0.9, rss=100 * 2**20):
    return {"delivered_per_s": delivered, "delivery_p99_ms": p99, "drops_per_s": drops,
            "cache_hit_rate": hit, "rss_bytes": rss}


def test_relative_change_is_percent_of_the_before_value():
    assert relative_change(100.0, 120.0) == pytest.approx(20.0)
    assert relative_change(-50.0, -25.0) == pytest.approx(50.0)
    assert relative_change(0.0, 5.0) is None
    assert relative_change(None, 5.0) is None and relative_change(5.0, None) is None


def test_windows_are_clipped_to_the_neighbouring_changes_and_to_now():
    changes = changes_of(events_of((0, "level_set", {"level": "aggressive"}),
                                   (5, "alert_received", {"name": "p99"}),
                                   (10, "parameter_overridden", {"batch_size": 20}),
                                   (60, "rollback", {"to_seq": 0})))
    assert [c.seq for c in changes] == [1, 3, 4]  # the alert changes nothing
    span = timedelta(minutes=15)
    assert effect_windows(changes, 0, span, NOW) == (Window(at(-15), at(0)),
                                                      Window(at(0), at(10)))
    assert effect_windows(changes, 1, span, NOW) == (Window(at(0), at(10)),
                                                      Window(at(10), at(25)))
    assert effect_windows(changes, 2, span, at(64)) == (Window(at(45), at(60)),
                                                         Window(at(60), at(64)))
    assert effect_windows(changes, 2, span, at(59))[1].seconds == 0


def test_each_change_in_the_period_gets_its_measured_effect():
    events = events_of(
        (-30, "level_set", {"level": "conservative"}),          # 1, before the period
        (0, "level_set", {"level": "aggressive"}),               # 2
        (5, "recommendation_issued", {"id": "r1", "level": "balanced"}),  # 3
        (10, "parameter_overridden", {"batch_size": 20}),        # 4
        (20, "recommendation_issued", {"id": "r2", "parameters": {"batch_size": 5}}),
        (30, "recommendation_applied", {"id": "r2", "parameters": {"batch_size": 5}}),  # 6
    )
    reader = RegimeReader([(at(-30), summary(100.0, 50.0)),
                           (at(0), summary(150.0, 40.0, drops=1.0)),
                           (at(10), summary(150.0, 30.0, hit=0.99)),
                           (at(30), summary(120.0, 30.0))])
    report = optimization_report(events, recommendation_states(events), reader,
                                 since=at(-1), until=at(60), now=NOW)

    assert report["period"] == {"since": "2026-01-01T11:59:00.000000Z",
                                "until": "2026-01-01T13:00:00.000000Z"}
    assert [c["seq"] for c in report["changes"]] == [2, 4, 6]
    assert report["changes_total"] == 3 and not report["changes_truncated"]
    first = report["changes"][0]
    assert first["what"] == "level -> aggressive" and first["actor"] == "ops"
    assert first["reason"] == "why 2" and first["at"] == "2026-01-01T12:00:00.000000Z"
    # before: 15 min back (the change before is 30 min back); after: to the next change
    assert first["windows"]["before"]["seconds"] == 900
    assert first["windows"]["after"] == {"start": "2026-01-01T12:00:00.000000Z",
                                         "end": "2026-01-01T12:10:00.000000Z", "seconds": 600}
    assert first["effect"]["delivered_per_s"] == {"before": 100.0, "after": 150.0,
                                                  "delta_pct": 50.0}
    assert first["effect"]["delivery_p99_ms"]["delta_pct"] == -20.0
    assert first["effect"]["drops_per_s"] == {"before": 0.0, "after": 1.0, "delta_pct": None}
    assert report["changes"][1]["effect"]["cache_hit_rate"]["delta_pct"] == 10.0
    assert report["changes"][2]["effect"]["delivered_per_s"]["delta_pct"] == -20.0
    # the window between two changes is read once, for both
    assert len(reader.calls) == len(set(reader.calls)) == 5
    assert [r["id"] for r in report["open_recommendations"]] == ["r1"]
    assert report["open_recommendations"][0]["level"] == "balanced"
    assert reader.regression_calls == [(at(-1), at(60), MAX_REGRESSIONS + 1)]


def test_windows_too_short_to_measure_are_not_read():
    events = events_of((0, "level_set", {"level": "aggressive"}),
                       (0.5, "level_set", {"level": "balanced"}))
    reader = RegimeReader([(at(0), summary(1.0, 1.0))])
    report = optimization_report(events, {}, reader, since=at(-60), until=at(60), now=NOW)
    assert all(v["after"] is None for v in report["changes"][0]["effect"].values())
    assert all(v["before"] is None for v in report["changes"][1]["effect"].values())
    assert (at(0), at(0.5)) not in reader.calls and len(reader.calls) == 2


def test_the_number_of_changes_is_capped_to_the_newest():
    events = events_of(*[(i * 0.1, "parameter_overridden", {"batch_size": 10 + i % 5})
                         for i in range(MAX_CHANGES + 5)])
    reader = RegimeReader()
    report = optimization_report(events, {}, reader, since=at(-1), until=at(60), now=NOW)
    assert report["changes_total"] == MAX_CHANGES + 5 and report["changes_truncated"]
    assert len(report["changes"]) == MAX_CHANGES
    assert report["changes"][0]["seq"] == 6 and report["changes"][-1]["seq"] == MAX_CHANGES + 5
    last = at(0.1 * (MAX_CHANGES + 4))  # only the last one's after window is a minute long
    assert reader.calls == [(last, last + timedelta(minutes=15))]
    text = render_markdown(report)
    assert f"Showing the newest {MAX_CHANGES} of {MAX_CHANGES + 5} changes." in text


def test_regressions_are_capped_and_flagged():
    found = [{"at": (at(i)).isoformat(), "metric": "delivery_p99_ms", "direction": "up",
              "node": "n1", "before_mean": 10.0, "after_mean": 12.0, "magnitude_pct": 20.0,
              "text": "p99 up"} for i in range(MAX_REGRESSIONS + 1)]
    report = optimization_report([], {}, RegimeReader(regressions=found), since=at(0),
                                 until=at(10_000), now=at(10_000))
    assert report["regressions_truncated"] and len(report["regressions"]) == MAX_REGRESSIONS
    assert report["regressions"][0]["at"] == at(1).isoformat()  # the oldest one is left out
    assert f"## Regressions ({MAX_REGRESSIONS}+)" in render_markdown(report)


def test_the_period_defaults_to_the_last_day_and_is_checked():
    report = optimization_report([], {}, RegimeReader(), now=NOW)
    assert report["period"] == {"since": "2025-12-31T15:00:00.000000Z",
                                "until": "2026-01-01T15:00:00.000000Z"}
    with pytest.raises(InvalidInput) as caught:
        optimization_report([], {}, RegimeReader(), since=at(10), until=at(10), now=NOW)
    assert caught.value.field == "since"
    with pytest.raises(InvalidInput):
        optimization_report([], {}, RegimeReader(), since=at(0) - timedelta(days=400),
                            until=at(0), now=NOW)
    for since, until, field in ((datetime(1969, 12, 31, tzinfo=UTC), None, "since"),
                                (None, datetime(6482, 1, 1, tzinfo=UTC), "until")):
        with pytest.raises(InvalidInput) as caught:  # outside what InfluxDB can store
            optimization_report([], {}, RegimeReader(), since=since, until=until, now=NOW)
        assert caught.value.field == field


def test_an_empty_report_says_so_in_plain_sentences():
    reader = RegimeReader()
    report = optimization_report([], {}, reader, since=at(0), until=at(60), now=NOW)
    assert report["changes"] == [] and report["regressions"] == []
    assert report["open_recommendations"] == [] and reader.calls == []
    text = render_markdown(report)
    assert text.startswith("# Optimization report: 2026-01-01T12:00:00.000000Z to "
                           "2026-01-01T13:00:00.000000Z\n")
    assert "No config changes in this period." in text
    assert "No regressions were found in this period." in text
    assert "No recommendations are waiting for a decision." in text


def test_the_markdown_report_has_a_table_per_change_regressions_and_recommendations():
    events = events_of((0, "level_set", {"level": "aggressive"}),
                       (5, "recommendation_issued",
                        {"id": "r1", "parameters": {"batch_size": 5}, "summary": "smaller"}))
    events[0] = EventDraft("level_set", {"level": "aggressive"}, "alice",
                           "p99 | too high\nat peak", at(0)).recorded(1)
    reader = RegimeReader(
        [(at(-60), summary(100.0, 50.0, rss=200 * 2**20)), (at(0), summary(110.0, 40.0))],
        regressions=[{"at": "2026-01-01T12:20:00.000000Z", "metric": "delivery_p99_ms",
                      "direction": "down", "node": "n1", "before_mean": 50.0,
                      "after_mean": 40.0, "magnitude_pct": -20.0, "text": "p99 fell"}])
    report = optimization_report(events, recommendation_states(events), reader,
                                 since=at(-10), until=at(60), now=NOW)
    text = render_markdown(report)
    assert "## Config changes (1)" in text
    assert "### #1 level -> aggressive" in text
    assert "by alice (level_set): p99 \\| too high at peak" in text
    assert "Measured over 15.0 min before and 15.0 min after." in text
    assert "| metric | before | after | Δ% |" in text
    assert "| delivered | 100.0 /s | 110.0 /s | +10.0 % |" in text
    assert "| delivery p99 | 50.0 ms | 40.0 ms | -20.0 % |" in text
    assert "| cache hit rate | 90.0 % | 90.0 % | +0.0 % |" in text
    assert "| RSS, serving nodes | 200.0 MiB | 100.0 MiB | -50.0 % |" in text
    assert ("| 2026-01-01T12:20:00.000000Z | delivery_p99_ms | down | 50.00 | 40.00 | "
            "-20.0 % | p99 fell |") in text
    assert "## Open recommendations (1)" in text
    assert "| r1 | 2026-01-01T12:05:00.000000Z | batch_size=5 (smaller) |" in text
    assert "99th percentile of the per-interval p99" in text


def test_trends_are_listed_by_metric_then_window():
    rows = [{"metric": m, "window": w, "at": "x", "node": "n"}
            for m, w in [("rss_bytes", "7d"), ("delivery_p99_ms", "24h"),
                         ("rss_bytes", "1h"), ("delivery_p99_ms", "1h")]]
    result = trends(RegimeReader(trends=rows))
    assert result["count"] == 4
    assert [(t["metric"], t["window"]) for t in result["trends"]] == [
        ("delivery_p99_ms", "1h"), ("delivery_p99_ms", "24h"),
        ("rss_bytes", "1h"), ("rss_bytes", "7d")]
    assert trends(RegimeReader()) == {"trends": [], "count": 0}
