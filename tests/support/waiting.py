"""Waiting for a condition in a test against real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: Callable[[], T], timeout: float, step: float = 0.1) -> T | None:
    """``what()``'s first truthy answer within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(step)
    return None


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, step: float = 0.2) -> T:
    """``predicate()``'s first truthy answer within ``timeout`` seconds, else a failure."""
    value = wait_for(predicate, timeout, step)
    if not value:
        raise AssertionError("condition not met in time")
    return value
