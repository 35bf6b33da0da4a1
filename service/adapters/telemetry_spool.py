"""A bounded, fsynced disk spool of telemetry batches.

While InfluxDB is unreachable, each batch (its gzip body, exactly as it would
have been POSTed) becomes one file, ``<sequence>-<lines>.lp.gz``. Replay takes
them oldest first. The spool is bounded in bytes: to make room it deletes the
oldest files and reports how many lines that cost, so nothing is lost
silently. Files survive a restart; a new writer replays them.

The blocking file work (write, fsync, rename) runs in gevent's thread pool so
that an fsync never stalls the event loop.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^(\d{16})-(\d+)\.lp\.gz$")


@dataclass(frozen=True)
class Segment:
    sequence: int
    lines: int
    size: int
    path: Path


def _in_threadpool(func: Callable[[], object]) -> object:
    try:
        import gevent

        return gevent.get_hub().threadpool.apply(func)
    except ImportError:  # pragma: no cover - gevent is a dependency
        return func()


class DiskSpool:
    def __init__(self, directory: str | os.PathLike, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segments: deque[Segment] = deque()
        self.bytes = 0
        for path in sorted(self.directory.iterdir()):
            match = _NAME.match(path.name)
            if match is None:
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write cut short by a crash
                continue
            segment = Segment(int(match[1]), int(match[2]), path.stat().st_size, path)
            self._segments.append(segment)
            self.bytes += segment.size
        self._next = self._segments[-1].sequence + 1 if self._segments else 1

    def __len__(self) -> int:
        return len(self._segments)

    @property
    def lines(self) -> int:
        return sum(s.lines for s in self._segments)

    def put(self, body: bytes, lines: int) -> tuple[Segment | None, int]:
        """Store one batch. Returns the new segment (None if the batch alone is
        larger than the whole spool) and the number of lines dropped to make
        room, oldest segments first."""
        if len(body) > self.max_bytes:
            return None, 0
        dropped = 0
        while self._segments and self.bytes + len(body) > self.max_bytes:
            dropped += self._evict_oldest()
        segment = Segment(self._next, lines, len(body),
                          self.directory / f"{self._next:016d}-{lines}.lp.gz")
        self._next += 1
        _in_threadpool(lambda: self._write_durably(segment.path, body))
        self._segments.append(segment)
        self.bytes += segment.size
        return segment, dropped

    def oldest(self) -> Segment | None:
        return self._segments[0] if self._segments else None

    def read(self, segment: Segment) -> bytes:
        return segment.path.read_bytes()

    def remove(self, segment: Segment) -> None:
        if self._segments and self._segments[0] == segment:
            self._segments.popleft()
        else:
            self._segments.remove(segment)
        self.bytes -= segment.size
        segment.path.unlink(missing_ok=True)

    def _evict_oldest(self) -> int:
        segment = self._segments[0]
        self.remove(segment)
        return segment.lines

    def _write_durably(self, path: Path, body: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
