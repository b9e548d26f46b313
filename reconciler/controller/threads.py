"""The controller's threads: workers, a timer and an engine-event reader around its synchronous core.

Where it sits: the loop (``controller``) builds one :class:`Threads` in ``start`` and hands it its
core as callables: process a key, run the timers, handle an engine event. Unit tests drive the
same core by hand on a fake clock and never start these. This module must not decide anything
about manifests, restarts or health; it only calls the core at the right moments, and it never
polls: workers block on the queue, the timer sleeps until the next timer is due (idle CPU is a
target) and the reader blocks on the engine's event stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from reconciler import engine, errors
from reconciler.controller import queue

log = logging.getLogger("reconciler.controller")


class Threads:
    """Runs the loop's core on threads until :meth:`stop`."""

    def __init__(
        self,
        work: queue.WorkQueue,
        alarm: queue.Alarm,
        *,
        process: Callable[[str], None],
        tick: Callable[[], float],
        events: Callable[[threading.Event], Iterable[engine.Event]],
        handle_event: Callable[[engine.Event], None],
        reconnected: Callable[[], None],
    ) -> None:
        self.work = work
        self.alarm = alarm
        self.stopping = threading.Event()
        self._process = process
        self._tick = tick
        self._events = events
        self._handle_event = handle_event
        self._reconnected = reconnected
        self._threads: list[threading.Thread] = []

    def start(self, workers: int) -> None:
        for index in range(max(1, workers)):
            self._spawn(f"worker-{index}", self._worker)
        self._spawn("timer", self._timer)
        self._spawn("events", self._event_reader)

    def stop(self, *, timeout: float) -> None:
        """Let the passes in flight finish (up to ``timeout`` in all), start no new one."""
        self.stopping.set()
        self.work.shutdown()
        self.alarm.ring()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"controller-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _worker(self) -> None:
        while not self.stopping.is_set():
            key = self.work.get()  # blocks without polling; shutdown() wakes it
            if key is not None:
                self._process(key)

    def _timer(self) -> None:
        # The alarm rings when something new is scheduled, so a sleep never outlasts a new timer.
        while not self.stopping.is_set():
            generation = self.alarm.generation()
            delay = self._tick()
            self.alarm.sleep(delay, since=generation, stop=self.stopping)

    def _event_reader(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                for event in self._events(self.stopping):
                    failures = 0
                    self._handle_event(event)
            except errors.EngineError as exc:
                log.warning("engine event stream failed: %s", exc)
            if self.stopping.is_set():
                break
            # The stream ended (dockerd restarted, a socket error): reconnect with backoff, and
            # resync, because exits may have been missed meanwhile.
            failures += 1
            self.stopping.wait(min(30.0, 0.1 * 2**failures))
            self._reconnected()
