"""Waiting for a condition with a deadline: the one way live tests observe other processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def eventually(
    condition: Callable[[], Any],
    what: str,
    *,
    within_s: float = 90.0,
    logs: Callable[[], str] = lambda: "",
    interval_s: float = 0.1,
) -> Any:
    """Poll `condition()` until it returns something true and return that; fail with `logs()`
    when the deadline passes. Deadlines are generous: a busy machine is slower, not wrong."""
    deadline = time.monotonic() + within_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {within_s:.0f} s waiting for {what}\n{logs()[-6000:]}")
        time.sleep(interval_s)
