"""Group commit on the real databases: many publishers at once, on one node
and on two, leave the log gap-free and every stream in each publisher's
order, in fewer transactions than publishes."""

import gevent
import pytest

from service.adapters.database import make_engine
from service.adapters.notification_log import SqlNotificationLog
from service.domain.model import PublishRequest, utcnow
from service.service_layer.write_batching import WriteBatcher
from tests.support.fakes import RecordingTelemetry
from tests.support.notification_streams import check_streams

USERS = ["u1", "u2", "u3", "u4"]


def publisher(batcher: WriteBatcher, name: str, count: int, returned: dict) -> None:
    for i in range(count):
        if i % 5 == 0:
            body = {"broadcast": True}
        elif i % 3 == 0:
            body = {"user_ids": USERS[:3]}
        else:
            body = {"user_id": USERS[(len(name) + i) % 4]}
        body["category"] = "c"
        appended = batcher.append(PublishRequest.from_body(body), f"{name}-{i}", utcnow())
        for user in appended.user_ids or ():
            returned[(user, f"{name}-{i}")] = appended.offset


@pytest.mark.usefixtures("cooperative_psycopg2")
def test_many_publishers_at_once_are_committed_together_without_gaps(notification_log, engine):
    for user in USERS:
        notification_log.open_stream(user)
    delivered, telemetry, returned = [], RecordingTelemetry(), {}
    batcher = WriteBatcher(notification_log, lambda a: delivered.append(a.offset), telemetry,
                           max_batch=50)
    greenlets = [gevent.spawn(publisher, batcher, f"p{k}", 25, returned) for k in range(40)]
    gevent.joinall(greenlets, raise_error=True)
    assert [a.offset for a in notification_log.read_span(0, 10_000, 10_000)] == list(
        range(1, 1001))
    assert batcher.wait_delivered(timeout=10)
    assert delivered == list(range(1, 1001))  # handed to the hub in offset order
    check_streams(notification_log, USERS, returned)
    batches = telemetry.total("db_write_batch", "batches")
    assert telemetry.total("db_write_batch") == 1000
    if engine.dialect.name == "postgresql":  # SQLite's commits never yield: nothing gathers
        assert batches < 1000 / 5, f"{batches} transactions for 1,000 publishes"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.usefixtures("cooperative_psycopg2")
def test_two_nodes_batching_at_once_share_one_gap_free_log(notification_log, pg_url):
    other_engine = make_engine(pg_url)
    try:
        other = SqlNotificationLog(other_engine)
        returned: dict = {}
        nodes = [WriteBatcher(log, lambda a: None, max_batch=20)
                 for log in (notification_log, other)]
        greenlets = [gevent.spawn(publisher, nodes[k % 2], f"n{k % 2}p{k}", 20, returned)
                     for k in range(20)]
        gevent.joinall(greenlets, raise_error=True)
        assert [a.offset for a in notification_log.read_span(0, 10_000, 10_000)] == list(
            range(1, 401))
        check_streams(notification_log, USERS, returned)
    finally:
        other_engine.dispose()
