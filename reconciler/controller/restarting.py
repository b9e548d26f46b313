"""The restart driver: carries out restart policies for the containers the controller restarts.

Where it sits: the controller's loop hands it die events, unhealthy verdicts and what a look at
the engine found; it keeps one :class:`RestartState` per container (count, backoff attempt, the
restart pending), starts what is due and persists the counts through
:mod:`reconciler.controller.state`. *Whether* and *after how long* come from the pure policy in
:mod:`reconciler.restarts`; this module only applies it, on the injected clock.

When it schedules the restart of an exited container it asks an engine that can
(:class:`reconciler.engine.PreparesRuns`) to prepare the next run during the backoff, so that the
restart itself is only the runtime's start. It must not plan, enqueue passes or touch the health
state: it returns what happened and calls the ``wake`` callback with the stack and delay of each
restart it schedules, and ``on_restart`` with the name of each container it restarted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

from reconciler import engine, errors, hashing, manifests, observed, restarts
from reconciler.controller import queue, report, state
from reconciler.holds import Holds

log = logging.getLogger("reconciler.controller")

Wake = Callable[[str, float], None]


@dataclasses.dataclass(slots=True)
class RestartState:
    """What the controller remembers about one container's restarts (shown in status)."""

    container_id: str
    restarts: int = 0
    # Index into the backoff sequence; reset when the container ran for ``resetAfter``.
    attempt: int = 0
    last_exit_code: int | None = None
    started_at: float | None = None  # monotonic, when the controller saw it start
    due_at: float | None = None  # monotonic, when the pending restart may happen
    exited_at: float | None = None  # monotonic, when the exit (or unhealthy verdict) was seen
    delay: float | None = None
    reason: str = ""
    gave_up: bool = False

    def to_record(self) -> dict[str, Any]:
        return {"containerId": self.container_id, "restarts": self.restarts, "attempt": self.attempt,
                "gaveUp": self.gave_up, "lastExitCode": self.last_exit_code}  # fmt: skip

    @classmethod
    def from_record(cls, record: Any) -> RestartState:
        return cls(
            container_id=str(record["containerId"]),
            restarts=int(record["restarts"]),
            attempt=int(record["attempt"]),
            gave_up=bool(record["gaveUp"]),
            last_exit_code=record.get("lastExitCode"),
        )


@dataclasses.dataclass(slots=True)
class Performed:
    """What a round of restarts did: who restarted, who vanished, what failed (``name → error``)."""

    restarted: list[str] = dataclasses.field(default_factory=list)
    vanished: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


class RestartDriver:
    """Restart bookkeeping and actions for every container whose restarts the controller owns."""

    def __init__(
        self,
        target: engine.Engine,
        clock: queue.Clock,
        records: state.ControllerState,
        events: report.EventLog,
        *,
        engine_restarts: bool,
        rng: random.Random,
        wake: Wake,
        on_restart: Callable[[str], None],
        holds: Holds | None = None,
    ) -> None:
        self.engine = target
        self.holds = holds or Holds(None)
        self.clock = clock
        self.engine_restarts = engine_restarts
        self.rng = rng
        self._records = records
        self._events = events
        self._wake = wake
        self._on_restart = on_restart
        self._lock = threading.RLock()
        self._states: dict[str, RestartState] = {}
        self._totals: dict[str, int] = {}
        for name, record in records.load_restarts().items():
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                self._states[name] = RestartState.from_record(record)

    def owns(self, container: manifests.DesiredContainer) -> bool:
        return restarts.controller_owns_restarts(container.spec, engine_restarts=self.engine_restarts)

    def held(self, actual: observed.Observed) -> frozenset[str]:
        """The containers stopped on purpose: their restart policy waits for ``reconcile start``."""
        return self.holds.held(actual)

    def started(self, name: str, container_id: str, now: float) -> None:
        """A start event of an owned container: its run time counts towards ``resetAfter``."""
        with self._lock:
            current = self._states.get(name)
            if current is None or current.container_id != container_id:
                current = self._states[name] = RestartState(container_id=container_id)
            current.started_at = now

    def keep_only(self, names: Collection[str]) -> None:
        """Containers no longer declared take their restart bookkeeping with them."""
        with self._lock:
            for name in [n for n in self._states if n not in names]:
                del self._states[name]

    def schedule(
        self,
        desired: manifests.DesiredContainer,
        container_id: str,
        exit_code: int | None,
        *,
        reason: str,
        late: float = 0.0,
    ) -> None:
        """Decide about an exit (``reason="exit"``) or an unhealthy verdict; schedule the restart.

        ``late``: how long ago the exit happened when it was seen (the event's delivery).
        """
        if reason == "exit" and self.holds.is_held(desired.name, container_id):
            self._events.add("held", desired.stack, desired.name, "stopped on purpose (reconcile stop): not restarted")
            return
        restart = desired.spec.restart
        backoff = restart.backoff or restarts.DEFAULT_BACKOFF
        now = self.clock.monotonic()
        with self._lock:
            current = self._states.get(desired.name)
            if current is None or current.container_id != container_id:
                current = self._states[desired.name] = RestartState(container_id=container_id)
            if current.due_at is not None:
                return  # one restart pending is enough
            # A container that ran long enough starts its backoff over (Docker: 10 s).
            if current.started_at is not None and now - current.started_at >= backoff.reset_after:
                current.attempt = 0
            current.last_exit_code = exit_code
            if reason == "exit" and not restarts.wants_restart(restart, exit_code, restarts=current.restarts):
                gave_up = restart.policy == "on-failure" and exit_code not in (0, None)
                if gave_up and not current.gave_up:
                    message = f"exit {exit_code} after {current.restarts} restarts: maxRetries reached"
                    self._events.add("gave-up", desired.stack, desired.name, message)
                current.gave_up = gave_up
                self._save()
                return
            current.delay = restarts.restart_delay(backoff, current.attempt, rng=self.rng)
            current.exited_at = now
            wait = max(0.0, current.delay - late)
            current.due_at = now + wait
            current.reason = reason
        log.info("restart of %s in %.3fs (%s)", desired.name, current.delay, reason,
                 extra={"stack": desired.stack, "container": desired.name})  # fmt: skip
        if reason == "exit" and isinstance(self.engine, engine.PreparesRuns):
            # The slow part of the start (the native engine: a new keeper, ``runtime create``)
            # runs during the backoff; the restart is then only the runtime's start.
            self.engine.prepare_next_run(desired.name)
        self._wake(desired.stack, wait)

    def found(
        self,
        desired: manifests.Desired,
        actual: observed.Observed,
        now: float,
        *,
        dry_run: bool,
        observed_at: float | None = None,
    ) -> list[str]:
        """Owned containers of a stack that should be (re)started now, given what the engine shows.

        An exit the controller did not see is scheduled like a die event (unless ``dry_run``).
        ``observed_at`` is when ``actual`` was read: a container seen running *before* its exit
        was seen must not cancel the restart that exit scheduled.
        """
        due = []
        for name, container in sorted(desired.containers.items()):
            present = actual.containers.get(name)
            if not self.owns(container) or present is None or present.spec_hash != hashing.container_hash(container):
                continue
            with self._lock:
                current = self._states.get(name)
                if current is not None and current.container_id != present.container_id:
                    del self._states[name]
                    current = None
                if present.state == "running":
                    if current is not None and self._running_is_due(current, now, dry_run, observed_at):
                        due.append(name)
                    continue
                if present.state not in ("exited", "dead") or self.holds.is_held(name, present.container_id):
                    continue
                if current is None or (current.due_at is None and not current.gave_up):
                    # Missed (the controller was down, or the event was lost): same decision as a die.
                    if not dry_run:
                        self.schedule(container, present.container_id, present.exit_code, reason="exit")
                    elif restarts.wants_restart(
                        container.spec.restart, present.exit_code, restarts=current.restarts if current else 0
                    ):
                        due.append(name)
                    continue
                if current.due_at is not None and current.due_at <= now:
                    due.append(name)
        return due

    @staticmethod
    def _running_is_due(current: RestartState, now: float, dry_run: bool, observed_at: float | None) -> bool:
        """A running container is due only for an unhealthy restart; a restart pending after an
        exit seen *before* this look is void: someone else started it meanwhile."""
        if current.due_at is not None and current.reason == "unhealthy":
            return current.due_at <= now
        if (
            not dry_run
            and current.due_at is not None
            and observed_at is not None
            and current.exited_at is not None
            and observed_at > current.exited_at
        ):
            current.due_at = None
        return False

    def due_now(self, desired: manifests.Desired, now: float) -> list[str]:
        """The stack's containers whose pending restart is due (from the bookkeeping alone)."""
        with self._lock:
            return sorted(
                name
                for name, current in self._states.items()
                if name in desired.containers and current.due_at is not None and current.due_at <= now
            )

    def perform(self, stack: str, desired: manifests.Desired, names: Sequence[str]) -> Performed:
        """Restart ``names`` (stop first when unhealthy); report each restart as an event."""
        performed = Performed()
        for name in names:
            with self._lock:
                current = self._states[name]
                reason = current.reason
            # The event carries the moment of the start *request*: the backoff is the controller's
            # to keep; what the engine then takes to start a process is the engine's latency.
            requested_at, requested_wall = self.clock.monotonic(), self.clock.wall()
            try:
                if reason == "unhealthy":
                    self.engine.stop_container(name, timeout=desired.containers[name].spec.stop_timeout)
                self.engine.start_container(name)
            except errors.NotFound:
                # Removed meanwhile (``docker rm``): its bookkeeping goes with it; the loop's full
                # pass creates the container again.
                with self._lock:
                    self._states.pop(name, None)
                performed.vanished.append(name)
                continue
            except errors.EngineError as exc:
                performed.failed[name] = str(exc)
                continue
            self._restarted(stack, name, current, requested_at, requested_wall)
            performed.restarted.append(name)
        return performed

    def _restarted(self, stack: str, name: str, current: RestartState, requested_at: float, wall: float) -> None:
        with self._lock:
            current.restarts += 1
            current.attempt += 1
            current.due_at = None
            current.started_at = self.clock.monotonic()
            self._totals[name] = self._totals.get(name, 0) + 1
            self._save()
            count = current.restarts
            waited = requested_at - current.exited_at if current.exited_at is not None else None
        self._on_restart(name)
        waited_text = f" after {waited:.3f}s" if waited is not None else ""
        detail = f"backoff {current.delay or 0:.3f}s; {current.reason}, exit code {current.last_exit_code}"
        self._events.add("restart", stack, name, f"restart {count}{waited_text} ({detail})", at=wall)

    def next_in(self, desired: manifests.Desired, now: float) -> float | None:
        """Seconds until the stack's next pending restart (None: none pending)."""
        with self._lock:
            pending = [
                current.due_at - now
                for name, current in self._states.items()
                if name in desired.containers and current.due_at is not None
            ]
        return max(0.0, min(pending)) if pending else None

    def status_of(self, name: str, now: float) -> tuple[int, dict[str, Any] | None]:
        """The restarts the controller made of ``name`` and its backoff, as status shows them."""
        with self._lock:
            current = self._states.get(name)
            if current is None:
                return 0, None
            next_in = None if current.due_at is None else round(max(0.0, current.due_at - now), 3)
            return current.restarts, {"attempt": current.attempt, "delay": current.delay, "nextRestartIn": next_in,
                                      "gaveUp": current.gave_up, "reason": current.reason}  # fmt: skip

    def totals(self) -> dict[str, int]:
        """Restarts made per container since this controller started (a metric)."""
        with self._lock:
            return dict(self._totals)

    def _save(self) -> None:
        """Persist restart counts (caller holds the lock): a restarted controller must not give an
        ``on-failure`` container that already used its ``maxRetries`` a fresh set of retries."""
        self._records.save_restarts({name: current.to_record() for name, current in self._states.items()})
