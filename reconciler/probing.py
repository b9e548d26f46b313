"""Health probes: Docker's health state machine and the one way a probe is run, for whoever watches.

Where it sits: above ``engine`` and ``manifests``, below the controller (whose
:class:`reconciler.controller.health.Health` probes the declared containers of a watched folder)
and below :mod:`reconciler.rollouts` and :mod:`reconciler.operations` (which probe a replacement,
or the containers ``apply --wait`` and ``dependsOn: healthy`` wait for, when no daemon does and the
engine does not probe by itself). A probe is a ``CMD``/``CMD-SHELL`` command run through
``engine.exec``; a container is ``starting`` until a probe passes (``healthy``) or ``retries`` probes
in a row fail (``unhealthy``), and failures during its ``startPeriod`` do not count (Docker's rule).

It must not schedule, sleep or keep a table of containers: a caller keeps one :class:`HealthState`
per container run and asks :func:`probe` and :func:`judge`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from reconciler import engine, errors, manifests

HealthStatus = Literal["starting", "healthy", "unhealthy"]
# How much of a probe's output is kept (Docker keeps 4 KiB per probe too).
OUTPUT_KEPT = 4096


@dataclasses.dataclass(slots=True)
class HealthState:
    """Docker's health state machine for one running container (keyed by container id).

    ``started_at`` and ``next_probe_at`` are on the caller's monotonic clock."""

    container_id: str
    started_at: float
    status: HealthStatus = "starting"
    failing_streak: int = 0
    next_probe_at: float = 0.0
    probing: bool = False
    last_output: str = ""
    last_exit_code: int | None = None


def probe_argv(check: manifests.Healthcheck) -> list[str] | None:
    """The exec argv of a health check (``CMD-SHELL`` runs through ``/bin/sh -c``), or None."""
    kind, *rest = check.test
    if kind == "CMD":
        return list(rest)
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    return None


def probed_check(spec: manifests.ContainerSpec) -> manifests.Healthcheck | None:
    """The health check a container is probed with, or None (none declared, or ``[NONE]``)."""
    check = spec.healthcheck
    return check if check is not None and probe_argv(check) is not None else None


def new_state(container_id: str, check: manifests.Healthcheck, started_at: float) -> HealthState:
    """The state of a run that started at ``started_at``: its first probe one interval later."""
    return HealthState(container_id, started_at, next_probe_at=started_at + check.interval)


def probe(target: engine.Engine, name: str, check: manifests.Healthcheck) -> tuple[int, str]:
    """Run the probe in the container once: its exit code (-1 when the engine could not run it)
    and the end of its output."""
    try:
        result = target.exec(name, probe_argv(check) or [], timeout=check.timeout)
    except errors.EngineError as exc:
        return -1, str(exc)[-OUTPUT_KEPT:]
    return result.exit_code, (result.stdout + result.stderr).decode("utf-8", "replace")[-OUTPUT_KEPT:]


def judge(state: HealthState, check: manifests.Healthcheck, code: int, output: str, now: float) -> HealthStatus | None:
    """Record one probe's result on ``state`` (schedules the next); the new status if it changed."""
    state.probing = False
    state.last_exit_code = code
    state.last_output = output
    state.next_probe_at = now + check.interval
    changed: HealthStatus | None
    if code == 0:
        state.failing_streak = 0
        changed = "healthy" if state.status != "healthy" else None
    elif state.status == "starting" and now - state.started_at < check.start_period:
        changed = None  # failures during the start period do not count (Docker's rule)
    else:
        state.failing_streak += 1
        unhealthy = state.failing_streak >= check.retries and state.status != "unhealthy"
        changed = "unhealthy" if unhealthy else None
    if changed is not None:
        state.status = changed
    return changed
