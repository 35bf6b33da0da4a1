"""A user's notification history, paged by offset: the rules, no I/O.

A page is a window of the user's stream (their own entries and the
broadcasts since their stream began, above what the offline-queue bounds
trimmed), optionally filtered by category and priority:

* ``after=A``: the oldest ``limit`` entries with offset > A (forward: newer);
* ``before=B``: the newest ``limit`` entries with offset < B (backward: older);
* neither: the newest ``limit`` entries (the first page of an inbox).

Giving both is refused: a page goes one way. Items are always in offset
order, oldest first. The adapters fetch ``limit + 1`` entries nearest the
cursor, and ``cut`` turns them into the page and whether there is more in
the direction asked; ``select`` is the same rule on an in-memory stream (the
model the SQL query is tested against).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.domain.errors import InvalidInput
from service.domain.model import MAX_OFFSET, Notification, Priority, _parse_category

# A page's size and its cursors' range, declared once for parse_query and the
# OpenAPI document (service.entrypoints.api_spec.history_paths).
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
PARAMETERS = ("before", "after", "limit", "category", "priority")
_DIGITS = re.compile(rf"[0-9]{{1,{len(str(MAX_OFFSET))}}}")


@dataclass(frozen=True)
class HistoryQuery:
    before: int | None = None
    after: int | None = None
    limit: int = DEFAULT_LIMIT
    category: str | None = None
    priority: Priority | None = None

    @property
    def forward(self) -> bool:
        """Oldest first from ``after``; otherwise newest first (from ``before``, or the head)."""
        return self.after is not None

    def matches(self, entry: Notification) -> bool:
        return ((self.after is None or entry.offset > self.after)
                and (self.before is None or entry.offset < self.before)
                and (self.category is None or entry.category == self.category)
                and (self.priority is None or entry.priority is self.priority))


@dataclass(frozen=True)
class HistoryPage:
    items: list[Notification]  # offset order, at most the query's limit
    has_more: bool  # more matching entries beyond the page, in the direction asked


def parse_query(args: Mapping[str, Sequence[str]]) -> HistoryQuery:
    """From query parameters, each name mapped to the values given for it
    (a name given twice is refused). InvalidInput names the parameter."""
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}; this route "
                           f"takes {', '.join(PARAMETERS)}", field=unknown[0])
    value: dict[str, str] = {}
    for name, values in args.items():
        if len(values) != 1:
            raise InvalidInput(f"give {name} once", field=name)
        value[name] = values[0]
    before = _offset(value, "before")
    after = _offset(value, "after")
    if before is not None and after is not None:
        raise InvalidInput("give before or after, not both: a page goes one way",
                           field="before")
    limit = DEFAULT_LIMIT
    if "limit" in value:
        limit = _integer(value["limit"], "limit", f"an integer from 1 to {MAX_LIMIT}")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    category = _parse_category(value["category"]) if "category" in value else None
    priority = Priority.parse(value["priority"]) if "priority" in value else None
    return HistoryQuery(before, after, limit, category, priority)


def _offset(value: Mapping[str, str], name: str) -> int | None:
    if name not in value:
        return None
    return _integer(value[name], name, f"an offset, an integer from 0 to {MAX_OFFSET}")


def _integer(text: str, name: str, what: str) -> int:
    if not _DIGITS.fullmatch(text) or int(text) > MAX_OFFSET:
        raise InvalidInput(f"{name} must be {what}", field=name)
    return int(text)


def cut(fetched: Sequence[Notification], query: HistoryQuery) -> HistoryPage:
    """``fetched``: up to limit + 1 matching entries, nearest the cursor first
    (ascending from ``after``, else descending). The page, in offset order."""
    items = list(fetched[:query.limit])
    if not query.forward:
        items.reverse()
    return HistoryPage(items, len(fetched) > query.limit)


def select(stream: Iterable[Notification], query: HistoryQuery) -> HistoryPage:
    """The page of an in-memory stream (offset order), by the same rules."""
    matching = [n for n in stream if query.matches(n)]
    nearest = matching if query.forward else matching[::-1]
    return cut(nearest[:query.limit + 1], query)


def cursors(page: HistoryPage, query: HistoryQuery, head: int) -> dict[str, Any]:
    """What a client pages on: ``next_before`` for the older page (None when
    a backward page shows there is none), ``next_after`` for the newer page
    (or to poll for new entries: never None)."""
    items = page.items
    first: int | None
    last: int | None
    if items:
        first, last = items[0].offset, items[-1].offset
    elif query.forward:
        first = last = None
    else:
        first, last = None, head if query.before is None else max(0, query.before - 1)
    next_before: int | None
    next_after: int | None
    if query.forward:
        next_before = first if first is not None else min((query.after or 0) + 1, MAX_OFFSET)
        next_after = last if last is not None else query.after
    else:
        next_before = first if page.has_more else None
        next_after = last
    return {"has_more": page.has_more, "next_before": next_before, "next_after": next_after}


def is_read(offset: int, acked: int) -> bool:
    """Read: at or below the user's acknowledged offset (acks are cumulative)."""
    return offset <= acked
