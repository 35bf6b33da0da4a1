import pytest

from service.adapters.line_protocol import SchemaError, encode, escape_string_field, escape_tag

COMMON = {"node": "n1", "role": "serve"}


def test_a_point_is_encoded_with_sorted_tags_and_typed_fields():
    line = encode("notify_publish", {"priority": "high", "category": "chat"},
                  {"count": 3, "duration_ms_max": 1.25}, 17, COMMON)
    assert line == ("notify_publish,category=chat,node=n1,priority=high,role=serve "
                    "count=3i,duration_ms_max=1.25 17")


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("a b", r"a\ b"), ("a,b", r"a\,b"), ("a=b", r"a\=b"), ("line\nbreak", r"line\ break"),
     ("ends\\", "ends")],
)
def test_tag_values_are_escaped(raw, escaped):
    assert escape_tag(raw) == escaped


def test_string_fields_escape_quotes_and_backslashes():
    assert escape_string_field('say "hi" \\') == '"say \\"hi\\" \\\\"'


def test_names_outside_the_catalogue_are_refused():
    with pytest.raises(SchemaError):
        encode("notify_bogus", {}, {"count": 1}, 1, COMMON)
    with pytest.raises(SchemaError):
        encode("notify_ack", {"user_id": "alice"}, {"count": 1}, 1, COMMON)
    with pytest.raises(SchemaError):
        encode("notify_ack", {}, {"bogus": 1}, 1, COMMON)


def test_non_finite_floats_are_left_out():
    line = encode("notify_publish", {}, {"count": 1, "duration_ms_max": float("nan")}, 5, COMMON)
    assert "duration_ms" not in line
    line = encode("notify_publish", {}, {"count": 1, "duration_ms_max": float("inf")}, 5, COMMON)
    assert line.endswith(" count=1i 5")


def test_values_of_the_wrong_type_are_coerced_or_refused():
    assert encode("notify_ack", {}, {"count": 2.0}, 1, COMMON).endswith(" count=2i 1")
    assert encode("notify_ack", {}, {"count": True}, 1, COMMON).endswith(" count=1i 1")
    with pytest.raises(ValueError):
        encode("notify_ack", {}, {"count": "many"}, 1, COMMON)


def test_catalogue_field_names_need_no_escaping():
    import re

    from service.domain.measurements import CATALOGUE

    for m in CATALOGUE.values():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", m.name)
        for name in (*m.fields, *m.all_tags):
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name), (m.name, name)
