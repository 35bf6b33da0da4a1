"""A page of a user's history from the SQL notification log (both dialects).

The rules are service.domain.history's; here they are one statement. Each
side of a stream is walked through its own index from the cursor, and
stops at ``limit + 1`` matching entries: the user's own entries through
``log_recipients`` (user id, offset), the broadcasts through the partial
index on broadcast entries. Their union, nearest the cursor first, is cut
to the page by ``domain.history.cut``. The stream's floor (``trimmed``,
which is at or above where the stream began) is read in the same statement,
as ``read`` does: a user with no stream has no floor, so no entries.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, Select, select, union_all

from service.adapters.notification_log import (
    _ENTRY_COLUMNS,
    IS_BROADCAST,
    _notification,
    entries,
    recipients,
    streams,
)
from service.domain.history import HistoryPage, HistoryQuery, cut


def history_statement(user_id: str, query: HistoryQuery) -> Select:
    """Up to ``limit + 1`` entries of the stream matching ``query``, nearest
    the cursor first (ascending after ``after``, else descending)."""
    floor = select(streams.c.trimmed).where(streams.c.user_id == user_id).scalar_subquery()

    def window(offset: ColumnElement[int]) -> list[ColumnElement[bool]]:
        conditions = [offset > floor]
        if query.after is not None:
            conditions.append(offset > query.after)
        if query.before is not None:
            conditions.append(offset < query.before)
        if query.category is not None:
            conditions.append(entries.c.category == query.category)
        if query.priority is not None:
            conditions.append(entries.c.priority == query.priority.value)
        return conditions

    def nearest(offset: ColumnElement[int]) -> ColumnElement[int]:
        return offset if query.forward else offset.desc()

    fetch = query.limit + 1
    mine = select(recipients.c.log_offset.label("o")).where(recipients.c.user_id == user_id)
    if query.category is not None or query.priority is not None:  # the filters are the entry's
        mine = mine.join(entries, entries.c.log_offset == recipients.c.log_offset)
    own = (mine.where(*window(recipients.c.log_offset))
           .order_by(nearest(recipients.c.log_offset)).limit(fetch).subquery())
    shared = (select(entries.c.log_offset.label("o"))
              .where(IS_BROADCAST, *window(entries.c.log_offset))
              .order_by(nearest(entries.c.log_offset)).limit(fetch).subquery())
    picked = union_all(select(own.c.o), select(shared.c.o)).subquery()
    return (select(*_ENTRY_COLUMNS).join(picked, entries.c.log_offset == picked.c.o)
            .order_by(nearest(entries.c.log_offset)).limit(fetch))


def read_history(conn: Connection, user_id: str, query: HistoryQuery) -> HistoryPage:
    rows = conn.execute(history_statement(user_id, query)).all()
    return cut([_notification(r) for r in rows], query)
