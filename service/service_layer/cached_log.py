"""The notification log with its hot reads cached, invalidated by its own writes.

Two levels (service.domain.cache): the *global* one holds values shared by
everyone (the log's head), the *user* one a user's values, grouped by user
id: stream pages ``read(user, after, limit)``, history pages ``history(user,
query)`` and ``unread(user)``.

Every write goes through this object (the WriteBatcher appends through it,
the hub acks and opens streams through it, the trimmer is wrapped by
``InvalidatingTrimmer``), and each changes exactly what it touched, after
its commit and before its caller is answered:

* a targeted append: its recipients' pages are dropped, except full ones
  (the new entries come after them), their unread counts go up by the
  entries added (refreshed in place);
* a broadcast: every stream changed, so the generation in every user key
  moves on (no scan; the old entries age out through the LRU);
* an ack, or a stream just opened: that user's values are dropped;
* a trim that moved any stream's floor: everything is dropped.

The stale-read guard. A read that missed runs against the database while
writes commit; its result must not be stored once a write it may not have
seen has invalidated the key. So each read takes a stamp (``_Versions``)
before it starts, and stores only if no write touched its user since, and if
no write to its user is in flight (a read that ran after such a commit but
finished before its invalidation would otherwise be refreshed a second time).
The head is patched into cached positions on the way out: it changes with
every publish to anyone and is not part of any user's value.

With several nodes, the writes made through the others are reported here
as they reach this node (``changed_elsewhere``): an entry when the hub takes
it, in log order, from Redis or, when a message was lost, from the log; acks
and trims through Redis. A node that only publishes hears nothing, so it
caches nothing (``cache_reads=False``). See docs/operations.md, "Query
result cache".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from service.domain.cache import TtlLruCache
from service.domain.history import HistoryPage, HistoryQuery
from service.domain.idempotency import PriorPublish
from service.domain.model import Appended, Notification, PublishRequest
from service.service_layer.ports import (
    UNREAD_CAP,
    Draft,
    NotificationLog,
    StreamPosition,
    StreamTrimmer,
    TrimResult,
    Unread,
)

_MISS = object()
_HEAD = ("head",)
UserKey = tuple[Any, ...]  # (kind, user id, generation, what the read was given)
MAX_TOUCHED = 50_000  # users remembered by the stale-read guard before it forgets them all


class _Versions:
    """Which writes a read that started at a given stamp may have missed.

    ``seq`` moves on with every invalidating write; ``_last`` holds each
    user's last such write. Bounded: past ``MAX_TOUCHED`` users it forgets
    them and raises ``_floor`` instead, so every read begun before then is
    treated as stale (never stored), which is safe, only a missed store.
    """

    def __init__(self) -> None:
        self.seq = 0
        self._last: dict[str, int] = {}
        self._floor = 0

    def stamp(self) -> int:
        return self.seq

    def touch(self, user_id: str) -> None:
        self.seq += 1
        if len(self._last) >= MAX_TOUCHED:
            self.touch_all()
            return
        self._last[user_id] = self.seq

    def touch_all(self) -> None:
        self.seq += 1
        self._floor = self.seq
        self._last.clear()

    def fresh(self, user_id: str, stamp: int) -> bool:
        return stamp >= self._floor and self._last.get(user_id, 0) <= stamp


class CachedNotificationLog:
    def __init__(self, inner: NotificationLog, users: TtlLruCache,
                 shared: TtlLruCache, *, cache_reads: bool = True) -> None:
        self._inner = inner
        self.cache_reads = cache_reads
        self.users = users  # the user level: grouped by user id
        self.shared = shared  # the global level
        self._versions = _Versions()
        self._generation = 0  # in every user key: a broadcast moves it on
        self._writing: Counter[str] = Counter()  # users with a write in flight
        self._writing_all = 0  # broadcasts in flight: every user
        self._appends = 0  # completed appends, for the head's guard

    # -- reads ----------------------------------------------------------------
    def read(self, user_id: str, after: int, limit: int) -> tuple[list[Notification],
                                                                   StreamPosition]:
        if not self.cache_reads:
            return self._inner.read(user_id, after, limit)
        key = ("page", user_id, self._generation, after, limit)
        hit = self.users.get(key, _MISS)
        if hit is not _MISS:
            page, position = hit
            return page, replace(position, head=max(position.head, self.head()))
        stamp = self._versions.stamp()
        page, position = self._inner.read(user_id, after, limit)
        # since == head: the stream began at the head, or does not exist yet and
        # its position is made of the head (which moves): not a user's own value
        if position.since != position.head and self._may_store(user_id, stamp):
            self.users.put(key, (page, position), group=user_id)
        return page, position

    def history(self, user_id: str, query: HistoryQuery) -> tuple[HistoryPage, StreamPosition]:
        """As ``read``: the user's value, dropped by any write to their stream
        (its ``read`` flags come from the ack), the head patched in."""
        if not self.cache_reads:
            return self._inner.history(user_id, query)
        key = ("history", user_id, self._generation, query)
        hit = self.users.get(key, _MISS)
        if hit is not _MISS:
            page, position = hit
            return page, replace(position, head=max(position.head, self.head()))
        stamp = self._versions.stamp()
        page, position = self._inner.history(user_id, query)
        if position.since != position.head and self._may_store(user_id, stamp):
            self.users.put(key, (page, position), group=user_id)
        return page, position

    def unread(self, user_id: str, cap: int = UNREAD_CAP) -> Unread:
        if not self.cache_reads:
            return self._inner.unread(user_id, cap)
        key = ("unread", user_id, self._generation, cap)
        hit = self.users.get(key, _MISS)
        if hit is not _MISS:
            count, acked, exists = hit
            head = self.head()
            return Unread(count, acked if exists else head, head, exists)
        stamp = self._versions.stamp()
        result = self._inner.unread(user_id, cap)
        if self._may_store(user_id, stamp):
            self.users.put(key, (result.count, result.acked, result.exists), group=user_id)
        return result

    def head(self) -> int:
        if not self.cache_reads:
            return self._inner.head()
        cached = self.shared.get(_HEAD, _MISS)
        if cached is not _MISS:
            return cast(int, cached)
        appends = self._appends
        head = self._inner.head()
        if appends == self._appends:  # no append completed meanwhile: still the head
            self.shared.put(_HEAD, head)
        return head

    def read_span(self, after: int, upto: int, limit: int = 500) -> list[Appended]:
        return self._inner.read_span(after, upto, limit)

    def ping(self) -> None:
        self._inner.ping()

    def _may_store(self, user_id: str, stamp: int) -> bool:
        return (not self._writing_all and not self._writing.get(user_id)
                and self._versions.fresh(user_id, stamp))

    # -- writes ---------------------------------------------------------------
    def append(self, request: PublishRequest, message_id: str, created_at: datetime) -> Appended:
        return self.append_many([(request, message_id, created_at)])[0]

    def append_many(self, drafts: Sequence[Draft]) -> list[Appended]:
        added: Counter[str] = Counter()  # entries per recipient
        broadcast = False
        for request, _id, _at in drafts:
            if request.recipients.broadcast:
                broadcast = True
            else:
                added.update(request.recipients.user_ids)
        self._begin_writes(added, broadcast)
        try:
            appended = self._inner.append_many(drafts)
        except BaseException:
            # committed or not, we cannot tell (a lost connection at commit): drop
            self._end_writes(added, broadcast)
            self._invalidate(added, broadcast, refresh=False)
            raise
        self._end_writes(added, broadcast)
        self._appends += 1
        if appended:
            head = self.shared.peek(_HEAD, 0)
            self.shared.put(_HEAD, max(head, appended[-1].offset))
        self._invalidate(added, broadcast, refresh=True)
        return appended

    def prior_publish(self, key: str) -> PriorPublish | None:
        return self._inner.prior_publish(key)  # rare (a retry): never cached

    def open_stream(self, user_id: str) -> StreamPosition:
        return self.open_streams((user_id,))[user_id]

    def open_streams(self, user_ids: Sequence[str]) -> dict[str, StreamPosition]:
        users = tuple(user_ids)
        self._begin_writes(users, False)
        try:
            positions = self._inner.open_streams(users)
        except BaseException:
            self._end_writes(users, False)
            self._invalidate(users, False, refresh=False)
            raise
        self._end_writes(users, False)
        # created just now (or nothing since): what was cached of them goes
        begun = [u for u, p in positions.items() if p.since == p.head]
        if begun:
            self._invalidate(begun, False, refresh=False)
        return positions

    def ack_many(self, acks: Mapping[str, int]) -> int:
        users = tuple(acks)
        self._begin_writes(users, False)
        try:
            return self._inner.ack_many(acks)
        finally:
            self._end_writes(users, False)
            self._invalidate(users, False, refresh=False)

    def changed_elsewhere(self, appended: Appended) -> None:
        """Another node committed this entry: drop what it changed here."""
        head = self.shared.peek(_HEAD, _MISS)
        if head is not _MISS:
            self.shared.put(_HEAD, max(head, appended.offset))
        self._invalidate(appended.user_ids or (), appended.user_ids is None, refresh=False)

    def acked_elsewhere(self, user_ids: Sequence[str]) -> None:
        """Another node wrote these users' acks: drop their values."""
        self._invalidate(user_ids, False, refresh=False)

    def invalidate_all(self) -> None:
        """Every user's values are dropped (a trim that cannot say whose)."""
        self._versions.touch_all()
        self._generation += 1
        self.users.clear()

    def _begin_writes(self, users: Any, broadcast: bool) -> None:
        self._writing.update(users)
        self._writing_all += broadcast

    def _end_writes(self, users: Any, broadcast: bool) -> None:
        self._writing.subtract(users)
        for user_id in set(users):
            if self._writing[user_id] <= 0:
                del self._writing[user_id]
        self._writing_all -= broadcast

    def _invalidate(self, users: Mapping[str, int] | Sequence[str], broadcast: bool,
                    *, refresh: bool) -> None:
        """After a write: guard in-flight reads, then drop (or, for the unread
        count of a targeted append, refresh) what it changed."""
        if broadcast:
            self._versions.touch_all()
            self._generation += 1  # every stream got it: every user key is gone
            return
        generation = self._generation
        added = users if refresh and isinstance(users, Mapping) else None  # entries per user
        for user_id in users:
            self._versions.touch(user_id)
            # the user level holds only UserKeys (read, history and unread put them)
            for key in cast(tuple[UserKey, ...], self.users.group_keys(user_id)):
                if added is not None and key[0] == "unread" and key[2] == generation:
                    self._refresh_unread(key, added[user_id])
                elif not (added is not None and key[0] == "page" and self._full(key)):
                    self.users.invalidate(key)

    def _full(self, key: UserKey) -> bool:
        """A page that holds its ``limit`` entries does not change when
        entries are appended after them (offsets only grow, and the head is
        patched in on the way out): it stays."""
        value = self.users.peek(key, _MISS)
        return value is not _MISS and len(value[0]) >= key[4]

    def _refresh_unread(self, key: UserKey, added: int) -> None:
        """The value was stored before this append began (no store while a
        write to the user is in flight), so it lacks exactly ``added``."""
        value = self.users.peek(key, _MISS)
        if value is _MISS:
            return
        count, acked, exists = value
        if not exists:  # the append began the stream: its acked comes from the log
            self.users.invalidate(key)
            return
        self.users.put(key, (min(key[3], count + added), acked, True), group=key[1])


class InvalidatingTrimmer:
    """The offline-queue trimmer, telling the cached log when it moved a
    stream's floor. It cannot say whose, so everything is dropped, once it
    returns: a trim commits in several transactions, and a value read
    between two of them is dropped with the rest (the stamps keep a read that
    straddles the end from storing)."""

    def __init__(self, inner: StreamTrimmer, cached: CachedNotificationLog,
                 tell_others: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._cached = cached
        self._tell_others = tell_others  # several nodes: their caches hold the floors too

    def trim(self, keep: int, max_age_s: float | None, now: float | None = None) -> TrimResult:
        moved = True  # an exception: some of its transactions may have committed
        try:
            result = self._inner.trim(keep, max_age_s, now)
            moved = result.streams > 0  # only floors change what a read returns
            return result
        finally:
            if moved:
                self._cached.invalidate_all()
                if self._tell_others is not None:
                    self._tell_others()
