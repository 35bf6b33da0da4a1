import gzip

from service.adapters.telemetry_spool import DiskSpool


def body(text: str) -> bytes:
    return gzip.compress(text.encode())


def test_segments_come_back_oldest_first_and_survive_a_restart(tmp_path):
    spool = DiskSpool(tmp_path, max_bytes=10_000)
    for i in range(3):
        spool.put(body(f"batch {i}"), lines=i + 1)
    reopened = DiskSpool(tmp_path, max_bytes=10_000)
    assert len(reopened) == 3 and reopened.lines == 6
    seen = []
    while (segment := reopened.oldest()) is not None:
        seen.append(gzip.decompress(reopened.read(segment)).decode())
        reopened.remove(segment)
    assert seen == ["batch 0", "batch 1", "batch 2"]
    assert list(tmp_path.iterdir()) == []
    assert reopened.bytes == 0


def test_a_full_spool_drops_the_oldest_and_says_how_many_lines(tmp_path):
    one = body("x" * 10)
    spool = DiskSpool(tmp_path, max_bytes=len(one) * 2)
    assert spool.put(one, lines=5)[1] == 0
    assert spool.put(one, lines=7)[1] == 0
    segment, dropped = spool.put(one, lines=9)
    assert dropped == 5 and segment is not None
    assert spool.lines == 16 and spool.bytes <= spool.max_bytes


def test_a_batch_bigger_than_the_spool_is_refused_whole(tmp_path):
    spool = DiskSpool(tmp_path, max_bytes=10)
    segment, dropped = spool.put(b"x" * 11, lines=3)
    assert segment is None and dropped == 0 and len(spool) == 0


def test_sequence_numbers_continue_after_a_restart(tmp_path):
    spool = DiskSpool(tmp_path, max_bytes=10_000)
    spool.put(body("a"), 1)
    first, _ = DiskSpool(tmp_path, max_bytes=10_000).put(body("b"), 1)
    assert first.sequence == 2


def test_a_half_written_file_from_a_crash_is_discarded(tmp_path):
    (tmp_path / "0000000000000001-5.lp.gz.tmp").write_bytes(b"partial")
    spool = DiskSpool(tmp_path, max_bytes=10_000)
    assert len(spool) == 0 and not any(tmp_path.iterdir())
