"""The ack buffer writes acks in bounded transactions, keeping what failed."""

from service.domain.errors import StorageUnavailable
from service.service_layer.acks import CHUNK, AckBuffer
from tests.support.fakes import RecordingTelemetry


class ChunkLog:
    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[dict[str, int]] = []
        self.fail_at = fail_at

    def ack_many(self, acks: dict[str, int]) -> int:
        if len(self.calls) == self.fail_at:
            self.fail_at = None
            raise StorageUnavailable("down")
        self.calls.append(dict(acks))
        return len(acks)


def test_acks_of_many_users_go_in_transactions_of_at_most_a_chunk():
    log, telemetry = ChunkLog(), RecordingTelemetry()
    buffer = AckBuffer(log, telemetry)
    for i in range(CHUNK * 2 + 10):
        buffer.record(f"u{i}", 7, covered=1)
    assert buffer.flush() == CHUNK * 2 + 10
    assert [len(c) for c in log.calls] == [CHUNK, CHUNK, 10]
    assert telemetry.total("notify_ack") == CHUNK * 2 + 10


def test_a_failed_transaction_keeps_its_acks_and_the_rest_for_the_next_round():
    log = ChunkLog(fail_at=1)
    buffer = AckBuffer(log, None)
    for i in range(CHUNK * 2):
        buffer.record(f"u{i}", 3)
    assert buffer.flush() == 0
    assert len(log.calls) == 1  # the first chunk was written
    buffer.flush()
    written = {u for c in log.calls for u in c}
    assert written == {f"u{i}" for i in range(CHUNK * 2)}
