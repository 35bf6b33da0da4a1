"""The history's paging rules (service.domain.history): parsing the query,
cutting a page either way, the cursors, and walking a whole stream with them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.errors import InvalidInput
from service.domain.history import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    HistoryPage,
    HistoryQuery,
    cursors,
    cut,
    is_read,
    parse_query,
    select,
)
from service.domain.model import Notification, Priority

AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
CATEGORIES = ("chat", "news")


def entry(offset: int, category: str = "chat", priority: Priority = Priority.NORMAL
          ) -> Notification:
    return Notification(f"{offset:032x}", offset, category, priority, f'{{"n":{offset}}}', AT)


def stream(*offsets: int) -> list[Notification]:
    return [entry(o) for o in offsets]


def offsets(page: HistoryPage) -> list[int]:
    return [n.offset for n in page.items]


def q(**args: str) -> HistoryQuery:
    return parse_query({k: [v] for k, v in args.items()})


# -- parsing ----------------------------------------------------------------------


def test_no_parameters_mean_the_newest_default_page():
    assert q() == HistoryQuery(None, None, DEFAULT_LIMIT, None, None)
    assert not q().forward and q(after="0").forward and not q(before="9").forward


def test_each_parameter_is_parsed():
    assert q(after="5", limit="100", category="order.shipped", priority="high") == \
        HistoryQuery(None, 5, MAX_LIMIT, "order.shipped", Priority.HIGH)
    assert q(before="9223372036854775807", limit="1").before == 2**63 - 1


@pytest.mark.parametrize(("args", "field"), [
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": ""}, "limit"),
    ({"before": "-1"}, "before"),
    ({"before": "1.5"}, "before"),
    ({"after": " 3"}, "after"),
    ({"after": "+3"}, "after"),
    ({"after": "9223372036854775808"}, "after"),
    ({"after": "1" * 40}, "after"),
    ({"before": "5", "after": "1"}, "before"),
    ({"priority": "urgent"}, "priority"),
    ({"category": "bad category"}, "category"),
    ({"category": ""}, "category"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_parameters_are_refused_naming_them(args, field):
    with pytest.raises(InvalidInput) as refused:
        q(**args)
    assert refused.value.field == field and refused.value.message


def test_a_parameter_given_twice_is_refused():
    with pytest.raises(InvalidInput, match="once") as refused:
        parse_query({"limit": ["5", "6"]})
    assert refused.value.field == "limit"


# -- pages ------------------------------------------------------------------------


def test_the_default_page_is_the_newest_entries_in_offset_order():
    page = select(stream(1, 3, 4, 7, 9), HistoryQuery(limit=3))
    assert (offsets(page), page.has_more) == ([4, 7, 9], True)
    page = select(stream(1, 3), HistoryQuery(limit=3))
    assert (offsets(page), page.has_more) == ([1, 3], False)


def test_before_pages_back_and_after_pages_forward():
    s = stream(1, 3, 4, 7, 9)
    assert (offsets(select(s, HistoryQuery(before=7, limit=2))),
            select(s, HistoryQuery(before=7, limit=2)).has_more) == ([3, 4], True)
    assert select(s, HistoryQuery(before=3, limit=2)) == HistoryPage(stream(1), False)
    assert (offsets(select(s, HistoryQuery(after=3, limit=2))),
            select(s, HistoryQuery(after=3, limit=2)).has_more) == ([4, 7], True)
    assert select(s, HistoryQuery(after=7, limit=2)) == HistoryPage(stream(9), False)
    assert select(s, HistoryQuery(after=9)) == HistoryPage([], False)


def test_filters_apply_before_the_page_is_cut():
    s = [entry(1, "news"), entry(2), entry(3, "news", Priority.HIGH), entry(4),
         entry(5, "news", Priority.HIGH), entry(6, "news")]
    assert offsets(select(s, HistoryQuery(category="news", limit=2))) == [5, 6]
    assert offsets(select(s, HistoryQuery(priority=Priority.HIGH, limit=5))) == [3, 5]
    page = select(s, HistoryQuery(after=0, category="news", priority=Priority.HIGH, limit=1))
    assert (offsets(page), page.has_more) == ([3], True)


def test_cut_takes_what_an_adapter_fetched_nearest_the_cursor_first():
    assert cut(stream(9, 7, 4), HistoryQuery(limit=2)) == HistoryPage(stream(7, 9), True)
    assert cut(stream(4, 7), HistoryQuery(after=3, limit=2)) == HistoryPage(stream(4, 7), False)


# -- cursors ----------------------------------------------------------------------


@pytest.mark.parametrize(("query", "items", "has_more", "expected"), [
    # a backward page: older ones exist only when it says so
    (HistoryQuery(limit=2), [7, 9], True, (7, 9)),
    (HistoryQuery(limit=2), [7, 9], False, (None, 9)),
    (HistoryQuery(before=7, limit=2), [3, 4], True, (3, 4)),
    # empty: nothing at all up to the head, or below `before`
    (HistoryQuery(), [], False, (None, 40)),
    (HistoryQuery(before=5), [], False, (None, 4)),
    (HistoryQuery(before=0), [], False, (None, 0)),
    # a forward page: older ones may exist; newer ones may come
    (HistoryQuery(after=3, limit=2), [4, 7], True, (4, 7)),
    (HistoryQuery(after=9), [], False, (10, 9)),
    (HistoryQuery(after=2**63 - 1), [], False, (2**63 - 1, 2**63 - 1)),
])
def test_cursors(query, items, has_more, expected):
    answer = cursors(HistoryPage(stream(*items), has_more), query, head=40)
    assert (answer["next_before"], answer["next_after"]) == expected
    assert answer["has_more"] is has_more


def test_an_entry_is_read_at_or_below_the_ack():
    assert is_read(5, 5) and is_read(4, 5) and not is_read(6, 5)


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.tuples(st.sampled_from(CATEGORIES), st.sampled_from(list(Priority)),
                                st.integers(1, 3)), max_size=25),
       limit=st.integers(1, 6), category=st.sampled_from((None, *CATEGORIES)),
       priority=st.sampled_from((None, Priority.HIGH, Priority.LOW)))
def test_walking_either_way_with_the_cursors_finds_every_match_once(
        kinds, limit, category, priority):
    """Offsets with gaps (other users' entries); pages followed by their cursors."""
    s, offset = [], 0
    for cat, prio, gap in kinds:
        offset += gap
        s.append(entry(offset, cat, prio))
    head = offset + 2
    wanted = [n.offset for n in s if (category is None or n.category == category)
              and (priority is None or n.priority is priority)]
    filters = {"limit": limit, "category": category, "priority": priority}

    backward, query = [], HistoryQuery(**filters)
    for _ in range(len(s) + 2):
        page = select(s, query)
        assert len(page.items) <= limit
        backward = offsets(page) + backward
        nxt = cursors(page, query, head)["next_before"]
        if nxt is None:
            break
        query = HistoryQuery(before=nxt, **filters)
    assert backward == wanted

    forward, query = [], HistoryQuery(after=0, **filters)
    for _ in range(len(s) + 2):
        page = select(s, query)
        forward += offsets(page)
        if not page.has_more:
            break
        query = HistoryQuery(after=cursors(page, query, head)["next_after"], **filters)
    assert forward == wanted
    assert select(s, HistoryQuery(after=cursors(page, query, head)["next_after"],
                                  **filters)).items == []  # polling finds nothing new
