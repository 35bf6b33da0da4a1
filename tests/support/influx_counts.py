"""Counts a node wrote to InfluxDB, read back as a test checks them."""

from __future__ import annotations

import time

from service.adapters.influx import InfluxClient, InfluxSettings
from tests.support.backing_services import INFLUX_URL


def connection_events(influx_database: str, event: str, reason: str) -> int:
    """How many connection events of this kind the server recorded in InfluxDB."""
    influx = InfluxClient(InfluxSettings(url=INFLUX_URL, database=influx_database))
    result = influx.query('SELECT sum("count") FROM "notify_connection" '
                          f"WHERE \"event\" = '{event}' AND \"reason\" = '{reason}'")
    series = result[0].get("series")
    return series[0]["values"][0][1] if series else 0


def wait_for_sum(influx: InfluxClient, measurement: str, expected: int,
                 timeout: float = 15.0) -> int | None:
    """The sum of ``count`` over a measurement once it is ``expected``, else
    its last value when ``timeout`` runs out (None if there was no point)."""
    query = f'SELECT sum("count") FROM "{measurement}"'
    value = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        series = influx.query(query)[0].get("series")
        value = series[0]["values"][0][1] if series else None
        if value == expected:
            return value
        time.sleep(0.25)
    return value
