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


def progressing(
    measure: Callable[[], int],
    target: int,
    what: str,
    *,
    stall_s: float = 120.0,
    within_s: float = 900.0,
    logs: Callable[[], str] = lambda: "",
    interval_s: float = 0.5,
) -> None:
    """Wait until `measure()` reaches `target`, for as long as it keeps moving towards it:
    fail when it has not grown for `stall_s` (stuck, which is a bug) or after `within_s` in
    all. For a thousand processes' worth of work on a shared machine, where how long it takes
    says how busy the machine is, not whether the system works."""
    started = last_moved = time.monotonic()
    best = measure()
    while best < target:
        time.sleep(interval_s)
        now, value = time.monotonic(), measure()
        if value > best:
            best, last_moved = value, now
        stalled = now - last_moved > stall_s
        if stalled or now - started > within_s:
            why = f"no progress for {stall_s:.0f} s" if stalled else f"{within_s:.0f} s passed"
            pytest.fail(f"{what}: {best} of {target}, {why}\n{logs()[-6000:]}")
