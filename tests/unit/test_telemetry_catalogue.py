"""The catalogue is the one source of names: its doc is current, its names
are well-formed, and the service's own samplers emit only what it defines."""

from pathlib import Path

from service.adapters.line_protocol import LineEncoder
from service.adapters.runtime_metrics import RuntimeSampler, ping_fields
from service.domain.measurements import CATALOGUE, ROLES
from service.entrypoints.telemetry_doc import DOC, render
from service.service_layer.telemetry import TelemetryRing


def test_the_generated_doc_is_current():
    assert DOC.read_text() == render(), "docs/telemetry.md is stale: run `make docs`"


def test_the_fixed_names_of_the_design_are_there():
    assert CATALOGUE["notify_publish"].fields["count"].value == "integer"
    assert CATALOGUE["notify_delivery"].fields["count"].value == "integer"
    assert CATALOGUE["notify_ack"].fields["count"].value == "integer"
    assert {"emitted", "written", "spooled", "dropped"} <= set(CATALOGUE["telemetry_self"].fields)
    assert all(CATALOGUE["telemetry_self"].fields[f].value == "integer"
               for f in ("emitted", "written", "spooled", "dropped"))


def test_no_tag_can_carry_a_user_or_notification_id():
    for m in CATALOGUE.values():
        for tag in m.all_tags:
            assert "user" not in tag and tag not in ("id", "sid", "offset"), (m.name, tag)


def test_every_summary_field_of_a_sampler_is_in_the_catalogue():
    ring = TelemetryRing()
    sampler = RuntimeSampler(ring, handlers=[1, 2], eio_sockets={})
    sampler.sample()
    sampler.stop()
    encoder = LineEncoder({"node": "n", "role": ROLES[0]})
    records = ring.drain(100)
    assert {r[0] for r in records} == {"process", "notify_ping"}
    for measurement, tags, fields, ts in records:
        encoder.encode(measurement, tags, fields, ts)  # raises SchemaError otherwise


def test_ping_health_counts_outstanding_and_late_pongs():
    class Sock:
        def __init__(self, last_ping):
            self.last_ping = last_ping

    sockets = {"a": Sock(None), "b": Sock(100.0), "c": Sock(96.0)}
    assert ping_fields(sockets, ping_timeout=8.0, now=100.5) == {
        "connections": 3, "awaiting_pong": 2, "late_pong": 1}


def test_docs_name_only_catalogue_measurements():
    import re

    docs = Path(__file__).resolve().parents[2] / "docs"
    for path in docs.glob("*.md"):
        # a retention policy may come first: FROM "rollup_1m"."notify_delivery"
        for name in re.findall(r'FROM (?:"(?:raw|rollup_1m|rollup_1h)"\.)?"([a-z_0-9]+)"',
                               path.read_text()):
            assert name in CATALOGUE, f"{path.name} queries unknown measurement {name}"
