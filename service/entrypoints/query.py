"""``python -m service query "INFLUXQL"``: print a query's result as a table."""

from __future__ import annotations

import sys

from service.adapters.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from service.config import Settings


def run_query(settings: Settings, influxql: str) -> int:
    client = InfluxClient(settings.influx_settings())
    try:
        results = client.query(influxql, epoch="")
    except (InfluxRejected, InfluxUnavailable) as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    printed = False
    for result in results:
        for series in result.get("series", []):
            print(format_series(series))
            printed = True
    if not printed:
        print("(no rows)")
    return 0


def format_series(series: dict) -> str:
    title = series.get("name", "")
    if series.get("tags"):
        title += " " + ",".join(f"{k}={v}" for k, v in sorted(series["tags"].items()))
    columns = series.get("columns", [])
    rows = [["" if v is None else str(v) for v in row] for row in series.get("values", [])]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    out = [
        title,
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out) + "\n"
