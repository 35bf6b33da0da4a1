"""How high can any cache's hit rate go on the storage benchmark's Zipf
workload? A simulation over the same operations (``bench.storage.zipf_ops``),
no database: each read is a lookup of its key, each publish changes the
drawn user's stream page (kept only if a policy patches it) and unread count
(refreshed in place, as the real cache does).

Policies, each at the maximum level's 20,000 entries and unbounded:

- ``lru_per_key``: what the service does (a user's page and count are two
  entries; a page read of a user without a stream is not stored);
- ``lru_per_user``: a user's values share one entry;
- ``lru_per_user_patched``: that, with pages patched on publish instead of dropped;
- ``tinylfu_per_user_patched``: that, with TinyLFU admission (Caffeine's
  policy: a newcomer evicts the LRU victim only if it was asked for more often);
- ``unbounded``: every key ever seen kept (only compulsory misses remain).

Prints the hit rate of each after the benchmark's warm-up (60,000
operations) and after a long one (500,000), over the same 20,000 measured.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, OrderedDict

from bench.storage import zipf_ops

Ops = list[tuple[str, str]]


def simulate(warmup: Ops, measured: Ops, capacity: int, *, per_user: bool, patch: bool,
             tinylfu: bool) -> float:
    lru: OrderedDict = OrderedDict()
    published: set[str] = set()
    freq: Counter = Counter()
    hits = reads = seen = 0
    for counting, ops in ((False, warmup), (True, measured)):
        for kind, user in ops:
            if kind == "publish":
                published.add(user)
                if not patch:
                    if per_user and user in lru:
                        lru[user].discard("page")
                    elif not per_user:
                        lru.pop(("page", user), None)
                continue
            key = user if per_user else (kind, user)
            freq[key] += 1
            seen += 1
            if seen % (10 * capacity) == 0:  # TinyLFU's ageing: halve every count
                freq = Counter({k: v // 2 for k, v in freq.items() if v > 1})
            reads += counting
            if key in lru and (not per_user or kind in lru[key]):
                lru.move_to_end(key)
                hits += counting
                continue
            if kind == "page" and user not in published:
                continue  # a stream that does not exist: its position moves with the head
            if per_user and key in lru:
                lru[key].add(kind)
                lru.move_to_end(key)
                continue
            if len(lru) >= capacity:
                victim = next(iter(lru))
                if tinylfu and freq[key] <= freq[victim]:
                    continue
                lru.popitem(last=False)
            lru[key] = {kind}
    return hits / max(reads, 1)


POLICIES = {
    "lru_per_key": {"per_user": False, "patch": False, "tinylfu": False},
    "lru_per_user": {"per_user": True, "patch": False, "tinylfu": False},
    "lru_per_user_patched": {"per_user": True, "patch": True, "tinylfu": False},
    "tinylfu_per_user_patched": {"per_user": True, "patch": True, "tinylfu": True},
}


def run(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench cache_ceiling")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--zipf-s", type=float, default=1.1)
    args = parser.parse_args(argv)
    measured = zipf_ops(20_000, args.users, args.zipf_s, seed=2)
    out: dict = {"entries": args.entries}
    for warm in (60_000, 500_000):
        print(f"cache_ceiling: warm-up {warm:,}", file=sys.stderr, flush=True)
        warmup = zipf_ops(warm, args.users, args.zipf_s, seed=1)
        rates = {name: round(simulate(warmup, measured, args.entries, **p), 3)
                 for name, p in POLICIES.items()}
        rates["unbounded"] = round(simulate(warmup, measured, 10**9, per_user=False,
                                            patch=True, tinylfu=False), 3)
        out[f"warmup_{warm}"] = rates
    out["notes"] = ("simulated over bench.storage.zipf_ops (s=1.1, 100,000 users, 95 % "
                    "reads); hit rate over the same 20,000 measured operations")
    return out
