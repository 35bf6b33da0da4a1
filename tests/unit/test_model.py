import json

import pytest

from service.domain.errors import InvalidInput, PayloadTooLarge
from service.domain.model import MAX_PAYLOAD_BYTES, Priority, PublishRequest, parse_offset


def body(**overrides):
    base = {"user_id": "alice", "category": "chat", "priority": "high", "payload": {"a": 1}}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_a_valid_request_is_parsed():
    request = PublishRequest.from_body(body())
    assert request.recipients.user_ids == ("alice",)
    assert request.priority is Priority.HIGH
    assert json.loads(request.payload_json) == {"a": 1}


def test_priority_defaults_to_normal():
    assert PublishRequest.from_body(body(priority=None)).priority is Priority.NORMAL


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"category": None}, "category"),
        ({"category": "has space"}, "category"),
        ({"category": "x" * 65}, "category"),
        ({"category": "news\n"}, "category"),
        ({"user_id": "alice\n"}, "user_id"),
        ({"payload": [1, 2]}, "payload"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": 42}, "user_id"),
        ({"user_ids": ["bob"]}, "user_ids"),
        ({"broadcast": True}, "broadcast"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_bad_field_is_named(overrides, field):
    with pytest.raises(InvalidInput) as caught:
        PublishRequest.from_body(body(**overrides))
    assert caught.value.field == field


def test_no_recipient_is_refused():
    with pytest.raises(InvalidInput) as caught:
        PublishRequest.from_body({"category": "chat"})
    assert "exactly one" in caught.value.message


def test_broadcast_must_be_true():
    with pytest.raises(InvalidInput) as caught:
        PublishRequest.from_body({"broadcast": False, "category": "chat"})
    assert caught.value.field == "broadcast"


def test_user_ids_are_deduplicated_in_order():
    request = PublishRequest.from_body(body(user_id=None, user_ids=["b", "a", "b"]))
    assert request.recipients.user_ids == ("b", "a")
    assert request.recipients.kind == "users"


def test_empty_or_non_list_user_ids_are_refused():
    for value in ([], "alice", None):
        with pytest.raises(InvalidInput):
            PublishRequest.from_body({"user_ids": value, "category": "chat"})


def test_payload_limit_is_measured_in_utf8_bytes():
    fits = {"t": "x" * (MAX_PAYLOAD_BYTES - 10)}
    PublishRequest.from_body(body(payload=fits))
    too_big = {"t": "é" * (MAX_PAYLOAD_BYTES // 2)}  # 2 bytes per character
    with pytest.raises(PayloadTooLarge) as caught:
        PublishRequest.from_body(body(payload=too_big))
    assert caught.value.field == "payload"


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None, 2**63])
def test_offsets_are_non_negative_integers(bad):
    with pytest.raises(InvalidInput):
        parse_offset(bad, "offset")


def test_body_must_be_an_object():
    with pytest.raises(InvalidInput) as caught:
        PublishRequest.from_body([1])
    assert caught.value.field == "body"
