"""The controller's work queue and its clock: which key runs next, and when.

Where it sits: the bottom of the controller package; the loop (``controller``) adds keys on
triggers and its workers take them. Keys are opaque strings here (stack names and the loop's
internal keys); this module knows nothing of manifests, engines or plans, and must not.

:class:`WorkQueue` has client-go's semantics: a key is never processed by two workers at once,
re-adds while processing are coalesced into one more pass, ``add_after`` delays, and a per-key
exponential requeue backoff (5 ms → 1000 s) for passes that failed. Time comes from an injected
:class:`Clock`, so unit tests run on a fake clock without threads or sleeps.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from typing import Protocol

REQUEUE_BASE = 0.005
REQUEUE_MAX = 1000.0


class Clock(Protocol):
    """Monotonic seconds for every delay the controller computes; wall time for reports."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class WorkQueue:
    """A key-deduplicating queue with client-go's guarantees (see the module docstring).

    ``get`` marks a key as processing until ``done``; an ``add`` of a processing key only marks
    it dirty, and ``done`` puts it back once, so a burst of triggers costs one more pass, never
    two workers on one stack. Delayed adds live in a heap on the injected clock and become ready
    in :meth:`promote` (called by ``get`` and by the controller's timer).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._failures: dict[str, int] = {}
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            if self._closed or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._clock.monotonic() + delay, next(self._sequence), key))
            self._cond.notify_all()

    def add_rate_limited(self, key: str, *, at_least: float = 0.0) -> float:
        """Requeue after a failure: 5 ms, 10 ms, 20 ms … capped at 1000 s (or ``at_least``, the
        engine's own ``retry_after``, when that is longer). Returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = max(at_least, requeue_delay(failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def promote(self) -> float | None:
        """Move due delayed keys to the ready queue; seconds until the next one (None: none)."""
        now = self._clock.monotonic()
        due: list[str] = []
        with self._cond:
            while self._delayed and self._delayed[0][0] <= now:
                due.append(heapq.heappop(self._delayed)[2])
            following = self._delayed[0][0] - now if self._delayed else None
        for key in due:
            self.add(key)
        return following

    def try_get(self) -> str | None:
        """The next ready key (marked processing), or None; never blocks (fake-clock tests)."""
        self.promote()
        with self._cond:
            if not self._ready:
                return None
            return self._take()

    def get(self, timeout: float | None = None) -> str | None:
        """Block until a key is ready (or ``timeout``, or shutdown: then None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # The condition's lock is re-entrant: promoting under it means an ``add_after`` can never
        # slip in between computing the wait and waiting (a lost wake-up would delay a restart).
        with self._cond:
            while True:
                following = self.promote()
                if self._ready:
                    return self._take()
                if self._closed:
                    return None
                wait = following
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def _take(self) -> str:
        key = self._ready.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready.append(key)
                self._cond.notify()

    def busy(self, key: str) -> bool:
        """Whether ``key`` is being processed or waits to be (the resync leaves those alone)."""
        with self._cond:
            return key in self._processing or key in self._dirty

    def processing(self) -> int:
        with self._cond:
            return len(self._processing)

    def depth(self) -> int:
        with self._cond:
            return len(self._ready)

    def delayed(self) -> int:
        with self._cond:
            return len(self._delayed)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def requeue_delay(failures: int) -> float:
    """client-go's per-item exponential failure limiter: 5 ms × 2^failures, at most 1000 s."""
    return float(min(REQUEUE_MAX, REQUEUE_BASE * 2.0 ** min(failures, 40)))


class Alarm:
    """Wakes a sleeping timer early when something new is scheduled.

    The generation counter closes the window between computing a sleep and starting it: a ring
    in between is not lost, the sleep is skipped.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def ring(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def sleep(self, delay: float, *, since: int, stop: threading.Event) -> None:
        """Sleep ``delay`` seconds unless stopped or rung since generation ``since``."""
        with self._cond:
            if not stop.is_set() and since == self._generation:
                self._cond.wait(delay)
