"""Writes the analysis jobs' findings that carry their own time (a change
point is stamped with the first bucket of its new regime, not the run time),
straight to InfluxDB. Tagged ``node=cluster``: whichever node's job found it,
the same finding is the same point, so a rerun overwrites instead of adding.
Written to the ``raw`` retention policy, beside the telemetry it was found in."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.adapters.influx import RAW_POLICY, InfluxClient
from service.adapters.line_protocol import encode

CLUSTER_TAGS = {"node": "cluster", "role": "jobs"}


def write_regressions(client: InfluxClient, rows: Iterable[dict[str, Any]]) -> int:
    lines = [encode("analysis_regression",
                    {"metric": r["metric"], "direction": r["direction"]},
                    {"before_mean": r["before_mean"], "after_mean": r["after_mean"],
                     "magnitude_pct": r["magnitude_pct"], "text": r["text"]},
                    int(r["at"].timestamp() * 1e9), CLUSTER_TAGS)
             for r in rows]
    if lines:
        client.write_lines(lines, retention_policy=RAW_POLICY)
    return len(lines)
