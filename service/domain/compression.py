"""Compression of large batches, for clients that ask for it. Pure: no I/O.

A client that connects with ``auth.compression = "deflate"`` may receive a
``notifications`` event whose data is binary: the batch's JSON text (UTF-8),
zlib-compressed (RFC 1950, what browsers' ``DecompressionStream("deflate")``
and Node's ``zlib.inflateSync`` read). Small batches stay JSON: below a few
KiB, deflate saves little and costs CPU.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from service.domain.errors import InvalidInput

SCHEMES = ("deflate",)
# Level 1: on a batch of notifications it saves as much as zlib's default
# level 6, in less time (docs/benchmarks.md, "Figures behind constants").
LEVEL = 1


@dataclass(frozen=True)
class CompressionPolicy:
    min_bytes: int = 4096  # 0: never compress

    def wants(self, client_accepts: bool, size: int) -> bool:
        return client_accepts and 0 < self.min_bytes <= size


def deflate(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), LEVEL)


def parse_scheme(value: object) -> bool:
    """``auth.compression``: absent, or one of SCHEMES. Returns whether the
    client accepts compressed batches."""
    if value is None:
        return False
    if value not in SCHEMES:
        raise InvalidInput(f"compression must be one of {', '.join(SCHEMES)}",
                           field="compression")
    return True
