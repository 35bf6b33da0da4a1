"""The rollups job: raw points downsampled into 1-minute and 1-hour buckets
(each catalogue field's ``rollup`` says how), written to ``rollup_1m`` and ``rollup_1h``.

Each run, per resolution:

- only complete buckets: a bucket is rolled up once ``lag`` has passed after
  its end, so points still in a writer's batch (about a second) or a slow
  node's are in;
- from where the rollups stand: the newest bucket of the marker
  (``process``, which every process samples every 10 s, written last in each
  chunk); when a new bucket is complete, ``overlap`` buckets before it are
  recomputed too (for points that came late), otherwise nothing is done;
- catch-up is bounded: at most ``max_catch_up`` back (2 h of minutes, 48 h of
  hours), in chunks of ``chunk`` buckets per query;
- idempotent: a bucket's points have its start as timestamp and the raw
  series' tags, so computing it again overwrites it with the same values, and
  two runs at once write the same points.

Points that reach InfluxDB later than the overlap (a spool replayed after a
long InfluxDB outage) are not in the rollups of their buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.domain.measurements import ROLLED_UP, ROLLUP_POLICIES
from service.service_layer.ports import RollupStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MARKER_MEASUREMENT = "process"


@dataclass(frozen=True)
class RollupPolicy:
    resolution: str  # "1m" or "1h"
    step: timedelta  # the bucket's length
    lag: timedelta  # a bucket is complete this long after its end
    overlap: int  # complete buckets recomputed before the first new one
    max_catch_up: timedelta  # the oldest bucket a run looks at
    chunk: int  # buckets per query

    @property
    def retention_policy(self) -> str:
        return ROLLUP_POLICIES[self.resolution]


POLICIES = (
    RollupPolicy("1m", timedelta(minutes=1), timedelta(minutes=1), 2, timedelta(hours=2), 30),
    RollupPolicy("1h", timedelta(hours=1), timedelta(minutes=2), 1, timedelta(hours=48), 6),
)


def floor_time(moment: datetime, step: timedelta) -> datetime:
    """The start of the bucket holding ``moment`` (buckets aligned to the epoch,
    as InfluxQL's GROUP BY time aligns them)."""
    return _EPOCH + ((moment - _EPOCH) // step) * step


def pending(policy: RollupPolicy, now: datetime, newest: datetime | None
            ) -> tuple[datetime, datetime] | None:
    """[start, end) of the buckets to compute now, or None: ``newest`` is the
    start of the newest bucket already rolled up."""
    end = floor_time(now - policy.lag, policy.step)  # every bucket before it is complete
    earliest = end - policy.max_catch_up
    if newest is None:
        start = earliest
    elif newest + policy.step >= end:
        return None  # no new complete bucket
    else:
        start = max(earliest, newest + policy.step - policy.overlap * policy.step)
    return (start, end) if start < end else None


def chunks(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    spans = []
    while start < end:
        spans.append((start, min(start + size, end)))
        start += size
    return spans


def _marker_last(measurements: tuple[str, ...]) -> tuple[str, ...]:
    rest = tuple(m for m in measurements if m != MARKER_MEASUREMENT)
    return rest + ((MARKER_MEASUREMENT,) if MARKER_MEASUREMENT in measurements else ())


def run_rollups(store: RollupStore, now: datetime | None = None,
                policies: tuple[RollupPolicy, ...] = POLICIES,
                measurements: tuple[str, ...] = ROLLED_UP) -> int:
    """Compute what is pending at every resolution; returns the points written."""
    now = now or datetime.now(UTC)
    written = 0
    for policy in policies:
        look_back = floor_time(now, policy.step) - policy.max_catch_up - policy.step
        window = pending(policy, now, store.newest_bucket(policy.resolution, look_back))
        if window is None:
            continue
        for start, end in chunks(*window, policy.chunk * policy.step):
            for measurement in _marker_last(measurements):
                points = store.aggregate(measurement, start, end, policy.resolution)
                if points:
                    store.write(points, policy.retention_policy)
                    written += len(points)
    return written
