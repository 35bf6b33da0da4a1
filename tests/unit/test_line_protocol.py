import pytest

from service.adapters.line_protocol import SchemaError, encode, escape_string_field, escape_tag

COMMON = {"node": "n1", "role": "serve"}


def test_a_point_is_encoded_with_sorted_tags_and_typed_fields():
    line = encode("notify_publish", {"priority": "high", "category": "chat"},
                  {"count": 3, "duration_ms": 1.25}, 17, COMMON)
    assert line == ("notify_publish,category=chat,node=n1,priority=high,role=serve "
                    "count=3i,duration_ms=1.25 17")


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
    line = encode("notify_publish", {}, {"count": 1, "duration_ms": float("nan")}, 5, COMMON)
    assert "duration_ms" not in line
