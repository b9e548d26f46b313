"""Readiness: whether a started container is ready, watched through the engine alone.

A container with a health check is ready once it is healthy; one without, once it has run for a
while (``minReadySeconds``) without exiting or restarting; a one-shot job (restart ``no``) once
it exited 0. Health is the engine's word where the engine probes by itself (Docker); elsewhere
(the native engine) :class:`HealthWatch` runs the probes here, through ``engine.exec``, with the
one state machine of :mod:`reconciler.probing`, so that ``apply --wait``, ``dependsOn: healthy``
and a rollout's gate see health without a daemon and the same way a daemon does.

Where it sits: above ``probing``, ``engine`` and ``plans``, below the executor (which runs an
:class:`plans.AwaitReady` step through :func:`await_ready`) and ``operations`` (``apply --wait``).
It must not start, stop or remove anything: it only looks (and probes), and says why not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reconciler import engine, errors, manifests, observed, plans, probing

# How often the engine is looked at while waiting (a probe that is due may wake it earlier).
POLL_INTERVAL = 0.2

Clock = Callable[[], float]


class NotReady(errors.ReconcilerError):
    """A container that was waited for did not become ready: the message says why."""


class HealthWatch:
    """Health as the engine reports it, else as probes run here say (Docker's state machine).

    One state per container name, started afresh for each new run (container id or start time)."""

    def __init__(self, target: engine.Engine, *, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.engine = target
        self.clock = clock
        self.wall = wall
        self._states: dict[str, tuple[float | None, probing.HealthState]] = {}

    def health(self, present: observed.ObservedContainer, check: manifests.Healthcheck | None) -> str | None:
        """``healthy``/``unhealthy``/``starting``, or None when it has no health check (``check``,
        or a ``[NONE]`` one) or is not running. A probe that is due runs now (it may take up to
        the check's timeout)."""
        if check is None or probing.probe_argv(check) is None or present.state != "running":
            return None
        if present.health is not None:
            return present.health  # the engine probes by itself
        now = self.clock()
        known = self._states.get(present.name)
        if known is None or known[1].container_id != present.container_id or known[0] != present.started_at:
            # Docker's first probe is one interval after the start: of this run, not of our look.
            age = max(0.0, self.wall() - present.started_at) if present.started_at else 0.0
            known = (present.started_at, probing.new_state(present.container_id, check, now - age))
            self._states[present.name] = known
        state = known[1]
        if state.next_probe_at <= now:
            code, output = probing.probe(self.engine, present.name, check)
            probing.judge(state, check, code, output, self.clock())
        return state.status

    def last_exit_code(self, name: str) -> int | None:
        known = self._states.get(name)
        return known[1].last_exit_code if known is not None else None

    def next_probe_in(self) -> float:
        """Seconds until the next probe of a watched container is due (a poll may wait that long)."""
        now = self.clock()
        return min((state.next_probe_at - now for _, state in self._states.values()), default=POLL_INTERVAL)


def not_ready_reason(
    present: observed.ObservedContainer | None, spec: manifests.ContainerSpec, watch: HealthWatch
) -> str | None:
    """Why a declared container is not ready now (None: it is), as ``apply --wait`` says it:
    absent, not running, or not healthy where it has a health check. A one-shot job (restart
    ``no``) that exited 0 is ready."""
    if present is None:
        return "absent"
    if spec.restart.policy == "no" and present.state == "exited" and present.exit_code == 0:
        return None
    if present.state != "running":
        return present.state
    health = watch.health(present, spec.healthcheck)
    if health is not None and health != "healthy":
        return health
    return None


class _Gate:
    """One :class:`plans.AwaitReady` step's verdicts, look after look."""

    def __init__(self, action: plans.AwaitReady, watch: HealthWatch) -> None:
        self.action = action
        self.watch = watch
        self.run: tuple[str, float | None] | None = None  # the run first seen: (container id, start time)
        self.running_since: float | None = None

    def look(self, present: observed.ObservedContainer | None, now: float) -> bool:
        """Whether it is ready now; raises :class:`NotReady` when it never will be."""
        action = self.action
        if present is None:
            raise NotReady(f"container {action.name} is gone")
        run = (present.container_id, present.started_at)
        if self.run is None:
            self.run = run
        elif run != self.run and present.state != "exited":
            raise NotReady(f"container {action.name} restarted (it exited with code {present.exit_code})")
        if present.state in ("exited", "dead", "restarting"):
            if action.exit_zero_ok and present.state == "exited" and present.exit_code == 0:
                return True
            oom = ", out of memory" if present.oom_killed else ""
            raise NotReady(f"container {action.name} exited with code {present.exit_code}{oom}")
        if present.state != "running":
            return False
        if action.healthcheck is not None and probing.probe_argv(action.healthcheck) is not None:
            return self._healthy(present)
        if self.running_since is None:
            self.running_since = now
        return now - self.running_since >= action.min_ready

    def _healthy(self, present: observed.ObservedContainer) -> bool:
        health = self.watch.health(present, self.action.healthcheck)
        if health == "unhealthy":
            code = self.watch.last_exit_code(present.name)
            probe = f" (its last probe exited with code {code})" if code is not None else ""
            raise NotReady(f"container {self.action.name} turned unhealthy{probe}")
        return health == "healthy"

    def waiting_for(self, now: float) -> str:
        """What it was still waiting for, for the message at the deadline."""
        if self.action.healthcheck is not None and probing.probe_argv(self.action.healthcheck) is not None:
            return "it was not healthy yet"
        if self.running_since is None:
            return "it was not running"
        return f"it had run {now - self.running_since:.1f}s of minReadySeconds {self.action.min_ready:g}"


def await_ready(
    target: engine.Engine,
    action: plans.AwaitReady,
    *,
    cancel: threading.Event | None = None,
    clock: Clock = time.monotonic,
    wall: Clock = time.time,
) -> None:
    """Look at the engine until the container of ``action`` is ready; :class:`NotReady` (why)
    when it exits, restarts or turns unhealthy, when ``action.deadline`` passes, or when
    ``cancel`` is set."""
    watch = HealthWatch(target, clock=clock, wall=wall)
    gate = _Gate(action, watch)
    pause = cancel if cancel is not None else threading.Event()
    deadline = clock() + action.deadline
    while True:
        present = target.observe(images=[], stacks={action.stack}).containers.get(action.name)
        now = clock()
        if gate.look(present, now):
            return
        if now >= deadline:
            raise NotReady(
                f"container {action.name} was not ready within {action.deadline:g}s (progressDeadline): "
                f"{gate.waiting_for(now)}"
            )
        if pause.wait(max(0.01, min(POLL_INTERVAL, watch.next_probe_in(), deadline - now))):
            raise NotReady(f"waiting for container {action.name} was interrupted")
