"""Generated docs: write them, or with ``--check`` say whether they are stale."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(doc: Path, text: str, argv: list[str]) -> int:
    if "--check" in argv:
        if not doc.exists() or doc.read_text() != text:
            print(f"{doc} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(text)
    print(f"wrote {doc}")
    return 0
