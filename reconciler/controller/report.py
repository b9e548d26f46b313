"""What the controller tells the outside: its events, what is wrong where, and its metrics.

Where it sits: every other part of the controller writes here (the loop, the restart driver);
the daemon's API reads it through the loop's ``events_since``, ``follow_events``, ``status`` and
``metric_samples``. It must not act on anything it records: it only keeps and renders.

* :class:`EventLog`: the last 1000 :class:`ControllerEvent` (reconcile, drift, step-failed, exit,
  restart, gave-up, health, manifest-error, error), each also logged.
* :class:`Problems`: the last error of each object and each stack, and each stack's drift.
* :class:`PassTimes` and :class:`Sample`: what ``/metrics`` shows.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

from reconciler import planning, plans
from reconciler.controller import queue

log = logging.getLogger("reconciler.controller")

EVENT_BUFFER = 1000
_WARNINGS = frozenset({"step-failed", "manifest-error", "error", "gave-up", "image-check-failed", "commit-refused",
                       "fetch-failed"})  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class ControllerEvent:
    sequence: int
    time: float
    # reconcile | drift | step-failed | exit | restart | gave-up | held | health | manifest-error | error |
    # image-updated | image-check-failed | commit-applied | commit-refused | fetch-failed
    kind: str
    stack: str
    name: str
    message: str
    commit: str = ""  # the git source's commit in force when it happened (watch --git)

    def to_json(self) -> dict[str, Any]:
        document = {"seq": self.sequence, "time": round(self.time, 6), "kind": self.kind, "stack": self.stack,
                    "name": self.name, "message": self.message}  # fmt: skip
        if self.commit:
            document["commit"] = self.commit
        return document


class EventLog:
    """The controller's recent events, numbered; readers may follow new ones as they come."""

    def __init__(self, clock: queue.Clock) -> None:
        self.clock = clock
        self._events: deque[ControllerEvent] = deque(maxlen=EVENT_BUFFER)
        self._cond = threading.Condition()
        self._sequence = itertools.count(1)
        self._listeners: list[Callable[[ControllerEvent], None]] = []
        # The commit each event is stamped with (``watch --git`` sets it to the git source's).
        self.revision: Callable[[], str] = str

    def subscribe(self, listener: Callable[[ControllerEvent], None]) -> None:
        """Call ``listener`` with each new event (it must return at once: notifications queue)."""
        self._listeners.append(listener)

    def add(self, kind: str, stack: str, name: str, message: str, *, at: float | None = None) -> None:
        """Record (and log) an event; ``at`` is its wall time when not now."""
        moment = self.clock.wall() if at is None else at
        level = logging.WARNING if kind in _WARNINGS else logging.INFO
        log.log(level, "%s: %s", kind, message, extra={"stack": stack, "container": name, "event": kind})
        with self._cond:
            event = ControllerEvent(next(self._sequence), moment, kind, stack, name, message, self.revision())
            self._events.append(event)
            self._cond.notify_all()
        for listener in self._listeners:
            listener(event)

    def since(self, sequence: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return [event.to_json() for event in self._events if event.sequence > sequence]

    def follow(self, stop: threading.Event, *, since: int = 0) -> Iterator[dict[str, Any]]:
        """Every event after ``since``, then new ones as they happen, until ``stop`` is set."""
        last = since
        while not stop.is_set():
            with self._cond:
                fresh = [event for event in self._events if event.sequence > last]
                if not fresh:
                    self._cond.wait(0.5)
                    continue
            for event in fresh:
                last = event.sequence
                yield event.to_json()


def action_object(action: plans.Action) -> str:
    """``kind/name`` of the object an action touches, for per-object errors and metrics."""
    container = planning.container_of(action)
    if container is not None:
        return f"container/{container}"
    _, target = plans.describe(action)
    kind, _, name = target.partition(" ")
    return f"{kind}/{name}"


class Problems:
    """The last error of each object (``kind/name``) and stack, and each stack's drift."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, str] = {}
        self._stacks: dict[str, str] = {}
        self._files: dict[str, dict[str, list[str]]] = {}  # stack → file → why it cannot apply
        self._drift: dict[str, dict[str, str]] = {}  # stack → object → why it differs
        self._totals: dict[str, int] = {}  # failed steps per object (a metric)

    def object_failed(self, key: str, error: str) -> None:
        with self._lock:
            self._objects[key] = error
            self._totals[key] = self._totals.get(key, 0) + 1

    def object_done(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def object_error(self, key: str) -> str | None:
        with self._lock:
            return self._objects.get(key)

    def stack_failed(self, stack: str, error: str) -> None:
        with self._lock:
            self._stacks[stack] = error

    def stack_done(self, stack: str) -> None:
        with self._lock:
            self._stacks.pop(stack, None)
            self._files.pop(stack, None)

    def files_failed(self, stack: str, blame: Iterable[tuple[str, str]]) -> None:
        """Files of ``stack`` that parse but cannot be applied (an object another stack owns):
        status marks those files, until the stack's next successful pass."""
        with self._lock:
            files: dict[str, list[str]] = {}
            for file, message in blame:
                files.setdefault(file, []).append(message)
            self._files[stack] = files

    def file_errors(self, file: str) -> list[str]:
        with self._lock:
            return [message for files in self._files.values() for message in files.get(file, ())]

    def stack_error(self, stack: str) -> str | None:
        with self._lock:
            return self._stacks.get(stack)

    def any_error(self) -> bool:
        with self._lock:
            return bool(self._stacks or self._objects)

    def set_drift(self, stack: str, drift: Mapping[str, str]) -> None:
        with self._lock:
            self._drift[stack] = dict(drift)

    def keep_failed_drift(self, stack: str) -> None:
        """After a pass: the stack's drift is what still failed (the rest was healed)."""
        with self._lock:
            drift = self._drift.get(stack, {})
            self._drift[stack] = {key: why for key, why in drift.items() if key in self._objects}

    def drift(self) -> dict[str, str]:
        """``kind/name → why it differs`` over every stack."""
        with self._lock:
            return {key: why for per_stack in self._drift.values() for key, why in per_stack.items()}

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One Prometheus sample: the API renders these as the text exposition format."""

    name: str
    kind: Literal["counter", "gauge", "summary"]
    help: str
    labels: tuple[tuple[str, str], ...]
    value: float


class PassTimes:
    """Time spent in passes per key, and engine events read: the loop's own metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._durations: dict[str, tuple[float, int]] = {}
        self._engine_events = 0

    def passed(self, key: str, elapsed: float) -> None:
        with self._lock:
            total, count = self._durations.get(key, (0.0, 0))
            self._durations[key] = (total + elapsed, count + 1)

    def engine_event(self) -> None:
        with self._lock:
            self._engine_events += 1

    def samples(self) -> list[Sample]:
        with self._lock:
            samples = [Sample("reconciler_engine_events_total", "counter",
                              "Engine events read (every owned container on the host, not only ours).", (),
                              float(self._engine_events))]  # fmt: skip
            for key, (total, count) in sorted(self._durations.items()):
                labels = (("key", key),)
                samples.append(Sample("reconciler_reconcile_duration_seconds", "summary",
                                      "Time spent in reconcile passes.", labels, total))  # fmt: skip
                samples.append(Sample("reconciler_reconcile_duration_seconds_count", "summary",
                                      "Time spent in reconcile passes.", labels, float(count)))  # fmt: skip
        return samples


def counter_samples(restarts: Mapping[str, int], errors: Mapping[str, int]) -> list[Sample]:
    """Restarts made per container and failed steps per object, as samples."""
    samples = [
        Sample("reconciler_restarts_total", "counter", "Restarts made by the controller.",
               (("object", f"container/{name}"),), float(count))
        for name, count in sorted(restarts.items())
    ]  # fmt: skip
    samples += [
        Sample("reconciler_errors_total", "counter", "Failed steps per object.", (("object", key),), float(count))
        for key, count in sorted(errors.items())
    ]
    return samples
