"""Health checks and the ``dependsOn`` gates they open: Docker's state machine, run by the controller.

Where it sits: the controller's loop calls :class:`Health` when containers start and after each
look at the engine, and its timer runs the probes that are due. Probes are ``CMD``/``CMD-SHELL``
commands run through ``engine.exec``; a container is ``starting`` until a probe passes
(``healthy``) or ``retries`` probes in a row fail (``unhealthy``), and failures during its
``startPeriod`` do not count (Docker's rule): :mod:`reconciler.probing` holds that state machine
and runs the probe, for this module and for the CLI's own waits alike.

:meth:`Health.health_of` is the one answer to "how healthy is this container": status shows it and
the ``dependsOn: healthy`` gate waits on it, so the two never disagree. This module must not
report events, schedule restarts or enqueue passes: :meth:`Health.probe` returns a verdict and
the loop acts on it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection

from reconciler import engine, manifests, observed, probing
from reconciler.controller import folder, queue

# The state machine and the probe itself live a layer down, shared with the CLI's own waits.
HealthStatus = probing.HealthStatus
HealthState = probing.HealthState
probe_argv = probing.probe_argv


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """A probe changed a container's health: to ``status``, with the probe's exit code."""

    container: manifests.DesiredContainer
    container_id: str
    status: HealthStatus
    exit_code: int


@dataclasses.dataclass(frozen=True, slots=True)
class DueProbe:
    name: str
    container: manifests.DesiredContainer
    state: HealthState


def _probed(container: manifests.DesiredContainer) -> manifests.Healthcheck | None:
    return probing.probed_check(container.spec)


class Health:
    """Every probed container's :class:`HealthState`, the probes that are due, and the gates."""

    def __init__(self, target: engine.Engine, clock: queue.Clock, desired: folder.DesiredFolder) -> None:
        self.engine = target
        self.clock = clock
        self.desired = desired
        self._lock = threading.Lock()
        self._states: dict[str, HealthState] = {}

    def started(self, container: manifests.DesiredContainer, container_id: str, now: float) -> bool:
        """A start event: probing starts with the process, not with the next observe. Whether a
        new state machine began (the timer must then wake for its first probe)."""
        check = _probed(container)
        if check is None:
            return False
        with self._lock:
            state = self._states.get(container.name)
            if state is not None and state.container_id == container_id:
                return False
            self._states[container.name] = probing.new_state(container_id, check, now)
            return True

    def sync(self, desired: manifests.Desired, actual: observed.Observed, now: float) -> None:
        """After a look at the engine: probe exactly the running containers that declare a probe."""
        with self._lock:
            for name, container in desired.containers.items():
                check = _probed(container)
                present = actual.containers.get(name)
                if check is None or present is None or present.state != "running":
                    self._states.pop(name, None)
                    continue
                state = self._states.get(name)
                if state is None or state.container_id != present.container_id:
                    self._states[name] = probing.new_state(present.container_id, check, now)

    def forget(self, name: str) -> None:
        """A restarted container starts its health over (at its start event or the next sync)."""
        with self._lock:
            self._states.pop(name, None)

    def keep_only(self, names: Collection[str]) -> None:
        """Containers no longer declared take their state with them."""
        with self._lock:
            for name in [n for n in self._states if n not in names]:
                del self._states[name]

    def due(self, now: float) -> tuple[list[DueProbe], float]:
        """Every probe due now (marked as running), and the seconds until the next one is due."""
        due: list[DueProbe] = []
        following = 3600.0
        with self._lock:
            for name, state in self._states.items():
                container = self.desired.container(name)
                if container is None or container.spec.healthcheck is None or state.probing:
                    continue
                if state.next_probe_at <= now:
                    state.probing = True
                    due.append(DueProbe(name, container, state))
                else:
                    following = min(following, state.next_probe_at - now)
        return due, following

    def probe(self, due: DueProbe) -> Verdict | None:
        """Run one probe through the engine; the verdict when the container's health changed."""
        check = due.container.spec.healthcheck
        assert check is not None
        code, output = probing.probe(self.engine, due.name, check)
        now = self.clock.monotonic()
        state = due.state
        with self._lock:
            if self._states.get(due.name) is not state:
                state.probing = False
                return None  # restarted or forgotten meanwhile: this verdict is about an old run
            changed = probing.judge(state, check, code, output, now)
            if changed is None:
                return None
        return Verdict(due.container, state.container_id, changed, code)

    def health_of(self, present: observed.ObservedContainer) -> str | None:
        """The container's health: the controller's own verdict on this run, else the engine's,
        else ``starting`` while a running container that declares a health check has none yet."""
        with self._lock:
            state = self._states.get(present.name)
            if state is not None and state.container_id == present.container_id:
                return state.status
        if present.health is not None:
            return present.health
        declared = self.desired.container(present.name)
        if present.state == "running" and declared is not None and declared.spec.healthcheck is not None:
            return "starting"
        return None

    def gate(self, container: manifests.DesiredContainer, actual: observed.Observed) -> str:
        """Why a container must not start yet (a ``healthy``/``completed`` dependency), or ''."""
        for dependency in container.spec.depends_on:
            other = actual.containers.get(dependency.name)
            if dependency.condition == "healthy":
                if other is None or other.state != "running" or self.health_of(other) not in ("healthy", None):
                    return f"waiting for {dependency.name} to be healthy"
            elif dependency.condition == "completed" and (
                other is None or other.state != "exited" or other.exit_code != 0
            ):
                return f"waiting for {dependency.name} to complete"
        return ""
