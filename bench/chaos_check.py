"""The chaos run's history checker (Jepsen-style): does what clients received
keep the service's delivery promise, given what the publisher was told?

The history is a stream of JSON records (one per line in the files):

- the publisher's, one per attempt (a publish is retried with the same
  Idempotency-Key and ``seq`` until a 202 or a definitive 4xx)::

    {"type": "publish", "seq", "key", "users": [...] | null (broadcast), "node",
     "t", "status": 202 | 4xx | 5xx | null (no answer), "id", "offset"}

- the orchestrator's ``{"type": "run", "broadcast_after": B}``: broadcasts
  past offset B are owed to every client (all of them had connected by then);
- the clients' (``clients/js/chaos.mjs``): ``connect`` {client, user, conn,
  node, t, last_offset}, ``batch`` {client, conn, node, t, items: [[offset,
  id, seq], ...]}, ``reload`` {client, conn, node, t, first_offset, epoch},
  ``disconnect``, ``connect_error``, ``error`` and, once per client at the
  end, ``final`` {client, user, t, connected, last_offset}.

Violations (``Violation.kind``):

- ``lost``: an acknowledged entry (an attempt got 202) owed to a client that
  was still connected at the end (``final.connected``) and that none of its
  connections received. Owed: the client's user is a recipient, or it is a
  broadcast past ``broadcast_after``; and its offset is past the
  ``last_offset`` of the client's first connection, and not below the
  ``first_offset`` of a ``reload`` it was told (trimmed), and its 202 came
  before the client's ``final``.
- ``duplicate`` / ``out_of_order``: an offset one connection had already
  received / not above the highest it had received (one or the other).
- ``at_or_below_last_offset``: an offset not past the ``last_offset`` the
  connection was opened with.
- ``refused_delivered``: an entry of a publish that got no 202, every attempt
  of which was answered (a timeout leaves it unknown: see ``unconfirmed``).
- ``wrong_entry``: the delivered (offset, id) is not what the 202 said for
  that seq, or two 202s for one seq differ (the retry was stored twice).
- ``misdelivered``: a targeted entry at a client whose user is not among its
  recipients.
- ``phantom``: an entry whose seq no publish record has (or no seq at all).

Memory is bounded by the number of publishes and of connections, plus eight
bytes per delivered item (offsets in ``array('q')``, one per connection):
a 30-minute run's millions of deliveries fit in tens of MB. Records may come
in any order across sources, but each connection's own in its order;
``read_history`` gives the publisher's and the run's records first.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

KINDS = ("lost", "duplicate", "out_of_order", "at_or_below_last_offset", "refused_delivered",
         "wrong_entry", "misdelivered", "phantom")
MAX_KEPT = 100  # violations kept in full; all are counted
MAX_KEPT_PER_KIND = 25  # so that one flood does not hide the other kinds
# answers after which a publish is known not to be stored: not these, nor none
_NOT_DEFINITIVE = (429, 409)


@dataclass(frozen=True)
class Violation:
    kind: str
    client: str | None
    detail: str


@dataclass
class CheckReport:
    violations: list[Violation] = field(default_factory=list)  # the first ones in full
    counts: dict[str, int] = field(default_factory=dict)  # all of them, by kind
    deliveries_checked: int = 0  # delivered items
    publishes: int = 0  # distinct seqs
    acknowledged: int = 0  # seqs with a 202
    refused: int = 0  # seqs without one
    unconfirmed: int = 0  # of refused, those with an attempt that got no answer
    clients: int = 0
    reloads: int = 0
    connections: int = 0  # connect records
    reconnects: int = 0  # connect records past a client's first
    clients_checked_for_loss: int = 0  # clients whose final said connected
    owed_checked: int = 0  # (client, entry) pairs checked for loss
    # the books: every (client, acknowledged entry) owed since its first
    # connect was delivered, excused by a reload (trimmed first), or lost
    owed_total: int = 0
    owed_delivered: int = 0
    excused_by_reload: int = 0
    malformed: int = 0  # lines read_history could not parse

    @property
    def ok(self) -> bool:
        return not self.counts

    def add(self, kind: str, client: str | None, detail: str) -> None:
        seen = self.counts.get(kind, 0)
        self.counts[kind] = seen + 1
        if len(self.violations) < MAX_KEPT and seen < MAX_KEPT_PER_KIND:
            self.violations.append(Violation(kind, client, detail))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        return out


class _Publish:
    __slots__ = ("users", "offset", "id", "t", "answered_all", "attempts")

    def __init__(self) -> None:
        self.users: frozenset[str] | None = None
        self.offset: int | None = None  # from the first 202
        self.id: str | None = None
        self.t: float | None = None  # of the earliest 202
        self.answered_all = True  # every attempt got an answer (no timeout, no reset)
        self.attempts = 0


class _Conn:
    __slots__ = ("last_offset", "top", "accepted", "odd")

    def __init__(self) -> None:
        self.last_offset: int | None = None  # from its connect record
        self.top = -1  # the highest offset it received
        self.accepted = array("q")  # offsets that came in order: increasing
        self.odd: set[int] | None = None  # offsets that did not


class _Client:
    __slots__ = ("user", "first_conn", "first_last_offset", "reload_floor", "final",
                 "final_t", "conns")

    def __init__(self) -> None:
        self.user: str | None = None
        self.first_conn: int | None = None
        self.first_last_offset: int | None = None
        self.reload_floor = 0  # the highest first_offset of a reload: below it, trimmed
        self.final: bool | None = None  # final.connected
        self.final_t: float | None = None
        self.conns: dict[int, _Conn] = {}


class _Checker:
    def __init__(self) -> None:
        self.report = CheckReport()
        self.pubs: dict[int, _Publish] = {}
        self.clients: dict[str, _Client] = {}
        self.broadcast_after: int | None = None
        # offset -> (id, seq, client) as first delivered; other versions apart
        self.delivered: dict[int, tuple] = {}
        self.variants: dict[tuple, str] = {}
        self.conflicts: set[int] = set()  # seqs whose 202s disagree, reported

    def client(self, name: str) -> _Client:
        state = self.clients.get(name)
        if state is None:
            state = self.clients[name] = _Client()
        return state

    def conn(self, client: _Client, number: int) -> _Conn:
        state = client.conns.get(number)
        if state is None:
            state = client.conns[number] = _Conn()
        return state

    # -- one pass over the records ---------------------------------------------
    def take(self, rec: dict) -> None:
        kind = rec.get("type")
        if kind == "batch":
            self.batch(rec)
        elif kind == "publish":
            self.publish(rec)
        elif kind == "connect":
            self.connected(rec)
        elif kind == "reload":
            self.report.reloads += 1
            client = self.client(rec["client"])
            first = rec.get("first_offset")
            if isinstance(first, int) and first > client.reload_floor:
                client.reload_floor = first
        elif kind == "final":
            client = self.client(rec["client"])
            client.final = bool(rec.get("connected"))
            client.final_t = rec.get("t")
            if rec.get("user") is not None:
                client.user = rec["user"]
        elif kind == "run":
            if rec.get("broadcast_after") is not None:
                self.broadcast_after = int(rec["broadcast_after"])
        elif kind == "malformed":
            self.report.malformed += 1
        # disconnect, connect_error, error and anything else: nothing to verify

    def publish(self, rec: dict) -> None:
        seq = rec["seq"]
        pub = self.pubs.get(seq)
        if pub is None:
            pub = self.pubs[seq] = _Publish()
        pub.attempts += 1
        users = rec.get("users")
        if users is not None and pub.users is None:
            pub.users = frozenset(users)
        status = rec.get("status")
        if status is None:
            pub.answered_all = False
        if status != 202:
            return
        offset, entry_id, t = rec.get("offset"), rec.get("id"), rec.get("t")
        if pub.offset is None and pub.id is None:
            pub.offset, pub.id, pub.t = offset, entry_id, t
            return
        if (offset, entry_id) != (pub.offset, pub.id) and seq not in self.conflicts:
            self.conflicts.add(seq)
            self.report.add("wrong_entry", None,
                            f"seq {seq} (key {rec.get('key')}): two 202s name different "
                            f"entries, {pub.id}@{pub.offset} and {entry_id}@{offset}")
        if t is not None and (pub.t is None or t < pub.t):
            pub.t = t

    def connected(self, rec: dict) -> None:
        client = self.client(rec["client"])
        if rec.get("user") is not None:
            client.user = rec["user"]
        number = rec["conn"]
        last = rec.get("last_offset")
        self.conn(client, number).last_offset = last
        self.report.connections += 1
        if client.first_conn is None or number < client.first_conn:
            client.first_conn = number
            client.first_last_offset = last

    def batch(self, rec: dict) -> None:
        name = rec["client"]
        number = rec["conn"]
        conn = self.conn(self.client(name), number)
        report = self.report
        delivered = self.delivered
        accepted = conn.accepted
        last = conn.last_offset
        top = conn.top
        items = rec.get("items") or ()
        report.deliveries_checked += len(items)
        for item in items:
            offset, entry_id, seq = item[0], item[1], item[2] if len(item) > 2 else None
            if last is not None and offset <= last:
                report.add("at_or_below_last_offset", name,
                           f"conn {number} opened with last_offset {last} got {offset}")
            if offset > top:
                top = offset
                accepted.append(offset)
            else:
                odd = conn.odd
                i = bisect_left(accepted, offset)
                seen = (i < len(accepted) and accepted[i] == offset) or (
                    odd is not None and offset in odd)
                if seen:
                    report.add("duplicate", name, f"conn {number} got offset {offset} again")
                else:
                    report.add("out_of_order", name,
                               f"conn {number} got offset {offset} after {top}")
                    if odd is None:
                        odd = conn.odd = set()
                    odd.add(offset)
            first = delivered.get(offset)
            if first is None:
                delivered[offset] = (entry_id, seq, name)
            elif (first[0] != entry_id or first[1] != seq) and (
                    offset, entry_id, seq) not in self.variants:
                self.variants[(offset, entry_id, seq)] = name
        conn.top = top

    # -- after the pass ----------------------------------------------------------
    def finish(self) -> CheckReport:
        report = self.report
        pubs = self.pubs
        report.publishes = len(pubs)
        for pub in pubs.values():
            if pub.offset is not None or pub.id is not None:
                report.acknowledged += 1
            else:
                report.refused += 1
                if not pub.answered_all:
                    report.unconfirmed += 1
        report.clients = len(self.clients)
        report.reconnects = sum(max(0, len(c.conns) - 1) for c in self.clients.values())
        entries = [(o, *v) for o, v in self.delivered.items()]
        entries += [(*k, c) for k, c in self.variants.items()]
        for offset, entry_id, seq, client in entries:
            self.verify_entry(offset, entry_id, seq, client)
        self.misdelivered()
        self.lost()
        return report

    def verify_entry(self, offset: int, entry_id: str | None, seq: int | None,
                     client: str) -> None:
        """What a client got at ``offset`` against what the publisher was told."""
        pub = self.pubs.get(seq) if seq is not None else None
        if pub is None:
            self.report.add("phantom", client,
                            f"offset {offset} (id {entry_id}) has seq {seq}, never published")
        elif pub.offset is None and pub.id is None:
            if pub.answered_all:
                self.report.add("refused_delivered", client,
                                f"offset {offset}: seq {seq} was refused on each of its "
                                f"{pub.attempts} attempts, yet delivered")
        elif (pub.offset, pub.id) != (offset, entry_id):
            self.report.add("wrong_entry", client,
                            f"seq {seq} delivered as {entry_id}@{offset}; its 202 said "
                            f"{pub.id}@{pub.offset}")

    def misdelivered(self) -> None:
        delivered, pubs = self.delivered, self.pubs
        for name, client in self.clients.items():
            user = client.user
            if user is None:
                continue
            for conn in client.conns.values():
                for offset in self._offsets(conn):
                    seq = delivered[offset][1]
                    pub = pubs.get(seq) if seq is not None else None
                    if pub is not None and pub.users is not None and user not in pub.users:
                        self.report.add("misdelivered", name,
                                        f"offset {offset} (seq {seq}) went to user {user}, "
                                        f"not among its {len(pub.users)} recipients")

    @staticmethod
    def _offsets(conn: _Conn) -> Iterator[int]:
        yield from conn.accepted
        if conn.odd:
            yield from conn.odd

    def lost(self) -> None:
        by_user: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
        broadcasts: list[tuple[int, float | None]] = []
        for pub in self.pubs.values():
            if pub.offset is None:
                continue
            if pub.users is None:
                broadcasts.append((pub.offset, pub.t))
            else:
                for user in pub.users:
                    by_user[user].append((pub.offset, pub.t))
        broadcasts.sort()
        for offsets in by_user.values():
            offsets.sort()
        bcast_offsets = [o for o, _ in broadcasts]
        after = self.broadcast_after if self.broadcast_after is not None else 0
        for name, client in self.clients.items():
            if not client.final or client.first_last_offset is None:
                continue
            self.report.clients_checked_for_loss += 1
            start = client.first_last_offset
            floor = max(start, client.reload_floor - 1)  # owed: past it
            every = [e for e in by_user.get(client.user, ()) if e[0] > start]
            every += broadcasts[bisect_right(bcast_offsets, max(start, after)):]
            if client.final_t is not None:
                every = [e for e in every if e[1] is None or e[1] <= client.final_t]
            owed = [e for e in every if e[0] > floor]
            self.report.owed_checked += len(owed)
            got: set[int] = set()
            for conn in client.conns.values():
                got.update(conn.accepted)
                if conn.odd:
                    got.update(conn.odd)
            delivered = sum(1 for offset, _ in every if offset in got)
            self.report.owed_total += len(every)
            self.report.owed_delivered += delivered
            self.report.excused_by_reload += sum(
                1 for offset, _ in every if offset <= floor and offset not in got)
            for offset, _ in owed:
                if offset not in got:
                    self.report.add("lost", name,
                                    f"offset {offset} owed to user {client.user} (first "
                                    f"connect last_offset {client.first_last_offset}) never "
                                    f"arrived over {len(client.conns)} connections")


def check(records: Iterable[dict]) -> CheckReport:
    """The violations of the delivery promise in a history (see the module doc)."""
    checker = _Checker()
    for rec in records:
        checker.take(rec)
    return checker.finish()


_FIRST = ("publish", "run")


def read_history(paths: Iterable[str | Path]) -> Iterator[dict]:
    """The records of JSONL history files: first every file's publish and run
    records, then the rest, each file in its order. A line that is not JSON (a
    run cut off mid-write) comes as ``{"type": "malformed", ...}``."""
    paths = list(paths)
    for first in (True, False):
        for path in paths:
            with open(path, encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    if first and '"publish"' not in line and '"run"' not in line:
                        continue  # a cheap pre-filter; the type decides below
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        if not first:
                            yield {"type": "malformed", "path": str(path), "line": number}
                        continue
                    if not isinstance(rec, dict):
                        continue
                    if (rec.get("type") in _FIRST) == first:
                        yield rec


def summary(report: CheckReport) -> dict:
    """The report without the kept violations' texts: counts only."""
    out = report.to_dict()
    out.pop("violations")
    out["kept"] = len(report.violations)
    return out


__all__ = ["KINDS", "CheckReport", "Violation", "check", "read_history", "summary"]
