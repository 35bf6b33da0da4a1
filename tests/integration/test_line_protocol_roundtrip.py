"""Escaping, proven against a real InfluxDB: whatever text goes in as a tag
or string field comes back out. Line breaks, which line protocol cannot
carry, become spaces; tags also lose trailing backslashes, which would escape
the separator after them."""

from __future__ import annotations

import itertools
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.adapters.line_protocol import encode

# A day ago: within the raw policy's retention (7 days), which refuses older points
_clock = itertools.count(time.time_ns() - 86_400 * 10**9, 1_000)


def expected_tag(value: str) -> str | None:
    cleaned = value.replace("\n", " ").replace("\r", " ").rstrip("\\")
    return cleaned or None


# Line protocol's special characters, densely, and any other text.
special = st.text(st.sampled_from(list(' ,="\\\n\r\tx=é#')), max_size=20)
anything = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   max_size=40)
text = st.one_of(special, anything)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=text, field=text)
@example(tag="\\ \\,", field="\n")  # once found by this test: a line break ended the line
@example(tag="ends\\", field='say "hi" \\')
def test_tags_and_string_fields_round_trip(influx, tag, field):
    ts = next(_clock)
    line = encode("config_change", {"kind": tag}, {"text": field, "level": "balanced"}, ts,
                  {"node": "roundtrip", "role": "serve"})
    influx.write_lines([line])
    result = influx.query(f'SELECT "kind", "text" FROM "raw"."config_change" WHERE time = {ts}',
                          epoch="ns")
    values = result[0]["series"][0]["values"]
    assert values == [[ts, expected_tag(tag), field.replace("\n", " ").replace("\r", " ")]]
