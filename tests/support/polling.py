"""The one polling helper of the test suite: wait for a condition, never for a fixed time.

``eventually(probe)`` calls ``probe`` until it returns something truthy and returns that value.
A probe may also raise ``AssertionError`` or ``OSError`` while the state is not there yet (a
socket not listening, a file not written); those count as "not yet". When the time is up the test
fails with ``what`` and the probe's last answer or error, so a failure says what was awaited.
The timeout is a bound on waiting, not a measurement: nothing asserts how long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    A probe typed ``X | None`` (a lookup) gives an ``X``: None is never returned.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            answer = probe()
            last = answer
            if answer:
                return answer
        except (AssertionError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or getattr(probe, '__name__', probe)} (last: {last!r})")
        time.sleep(interval)
