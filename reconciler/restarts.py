"""The one restart policy and backoff: pure functions every layer asks, never re-implements.

Who restarts a container (the controller or the engine's own policy), whether an exited container
runs again, how long to wait first, and whether an apply should start a container that is not
running. The planner, the controller and (through the controller) the native engine's prepared
runs all decide with these functions, so ``status``, ``plan`` and the restart manager agree.

The numbers follow Docker's restart manager: the first restart after 100 ms, doubling up to a
minute, and the sequence starts again once a container ran for 10 s (``manifests.Backoff``'s
defaults). It sits beside ``plans`` and ``hashing``, above ``manifests`` and ``observed``, and
below the planner and the controller, which ask it and never restate it. It is pure: no clock, no
I/O, no engine; randomness comes from the caller.
"""

from __future__ import annotations

import random

from reconciler import manifests, observed

# Docker's backoff, made on first use (module ``__getattr__``): building a model imports pydantic,
# which a command that restarts nothing (a no-op apply) does not load.
DEFAULT_BACKOFF: manifests.Backoff


def __getattr__(name: str) -> manifests.Backoff:
    if name != "DEFAULT_BACKOFF":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    backoff = globals()[name] = manifests.Backoff()
    return backoff


def controller_owns_restarts(spec: manifests.ContainerSpec, *, engine_restarts: bool) -> bool:
    """Who restarts this container: the controller, or the engine's own restart policy.

    Engines without restart policies (native, memory) leave every restart to the controller;
    Docker keeps its own unless the manifest asks for what Docker cannot do (a custom backoff,
    restarts on unhealthy), in which case the backend sets Docker's policy to ``no``.
    """
    if spec.restart.policy == "no" and not spec.restart.on_unhealthy:
        return False
    if not engine_restarts:
        return True
    return spec.restart.backoff is not None or spec.restart.on_unhealthy


def wants_restart(restart: manifests.Restart, exit_code: int | None, *, restarts: int) -> bool:
    """Whether a container that exited with ``exit_code`` after ``restarts`` restarts runs again.

    ``always`` and ``unless-stopped``: yes; ``on-failure``: on a non-zero exit while fewer than
    ``maxRetries`` restarts were made; ``no``: never.
    """
    if restart.policy in ("always", "unless-stopped"):
        return True
    if restart.policy == "on-failure":
        if exit_code in (0, None):
            return False
        return restart.max_retries is None or restarts < restart.max_retries
    return False


def restart_delay(backoff: manifests.Backoff, attempt: int, *, rng: random.Random | None = None) -> float:
    """The wait before restart number ``attempt + 1``: initial × factor^attempt, capped, jittered.

    Jitter spreads each delay uniformly by ±``jitter`` of itself (so that many containers dying
    together do not restart in lockstep); the cap applies before the jitter.
    """
    delay = min(backoff.max, backoff.initial * backoff.factor ** min(attempt, 64))
    if backoff.jitter and rng is not None:
        delay *= 1.0 + backoff.jitter * rng.uniform(-1.0, 1.0)
    return max(0.0, delay)


def starts_at_boot(policy: str, *, stopped_on_purpose: bool) -> bool:
    """Whether a container comes back when the host (or the engine) starts again, as Docker's
    daemon brings its containers back: ``always`` ones whatever happened to them, and
    ``unless-stopped`` ones unless they were stopped on purpose."""
    if policy == "always":
        return True
    return policy == "unless-stopped" and not stopped_on_purpose


def should_run(spec: manifests.ContainerSpec, container: observed.ObservedContainer) -> bool:
    """Whether an apply should (re)start a container that is not running.

    A created container is started. Otherwise :func:`wants_restart` decides, counting the
    restarts the engine reports: ``always`` and ``unless-stopped`` containers are meant to run;
    ``on-failure`` ones while their last exit was a failure and retries remain; ``no`` ones only
    until they have run once (a one-shot job that completed stays completed).
    """
    if container.state in ("running", "restarting", "paused"):
        return False
    if container.state == "created":
        return True
    return wants_restart(spec.restart, container.exit_code, restarts=container.restart_count)
