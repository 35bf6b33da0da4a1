"""``StreamTrimmer`` over the in-memory notification log: the offline-queue
bounds (``adapters.stream_trim``) as rules on lists, so that a unit test and
the contract suite can trim the fake as the SQL trimmer trims the real log."""

from __future__ import annotations

import time

from service.service_layer.ports import TrimResult
from tests.support.fakes import InMemoryNotificationLog


class InMemoryStreamTrimmer:
    def __init__(self, log: InMemoryNotificationLog) -> None:
        self.log = log

    def trim(self, keep: int, max_age_s: float | None, now: float | None = None) -> TrimResult:
        """Each stream keeps its newest ``keep`` entries, and none at or below
        the newest offset created before ``now - max_age_s``; a stream that
        loses entries its user had not acknowledged moves to a new epoch.
        Entries no stream holds any more leave the log."""
        log, keep = self.log, max(keep, 0)
        now = time.time() if now is None else now
        age_cut = 0
        if max_age_s is not None:
            old = [n.offset for n, _ in log.entries
                   if n.created_at.timestamp() < now - max_age_s]
            age_cut = max(old, default=0)
        result = TrimResult()
        for user_id in sorted(log.since):
            floor = log.trimmed[user_id]
            held = [n.offset for n in log.stream(user_id)]  # above the floor, ascending
            cut = held[-keep - 1] if len(held) > keep else 0
            if age_cut > floor and any(o <= age_cut for o in held):
                cut = max(cut, age_cut)
            if cut <= floor:
                continue
            seen = max(log.acked[user_id], floor)
            unacked = sum(1 for o in held if seen < o <= cut)
            result.streams += 1
            result.entries += sum(1 for o in held if o <= cut)
            result.unacked += unacked
            result.epochs_bumped += int(unacked > 0)
            log.epochs[user_id] += int(unacked > 0)
            log.trimmed[user_id] = cut
        result.messages = self._forget_unheld(keep, age_cut)
        return result

    def _forget_unheld(self, keep: int, age_cut: int) -> int:
        """Remove what no stream can read: a targeted entry once every
        recipient's floor passed it, a broadcast once every stream's did (with
        no stream at all, the broadcasts the bounds would not keep)."""
        log = self.log
        broadcasts = [n.offset for n, users in log.entries if users is None]
        if log.since:
            lowest = min(log.trimmed[u] for u in log.since)
        else:
            lowest = max(age_cut, broadcasts[-keep - 1] if len(broadcasts) > keep else 0)
        kept = [(n, users) for n, users in log.entries
                if (n.offset > lowest if users is None else
                    any(n.offset > log.trimmed[u] for u in users))]
        gone = len(log.entries) - len(kept)
        log.entries[:] = kept
        return gone
