"""The use cases the command line, the daemon's API and the controller share, written once.

Where it sits: above the planner, the executor and the engine interface, below ``cli``,
``controller`` and ``api``. ``reconcile plan``/``apply``/``delete``/``status`` run embedded
through these functions, and the daemon serves the same ``plan``/``apply`` through them, so a
plan is made the same way whoever asks: refresh the ``pullPolicy: Always`` images, observe the
engine once, plan (pure), execute.

It returns data and reports progress through callbacks; it must not print, log, parse argv or
know about the daemon's HTTP routes. It takes any ``Engine``: it must not import a backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from reconciler import (
    engine,
    errors,
    executing,
    manifests,
    observed,
    plan_inputs,
    planning,
    plans,
    readiness,
    restarts,
    rollouts,
    stack_locking,
)
from reconciler.holds import Holds

# Called once the plan is made, before any step runs: the plan and the warnings so far.
OnPlanned = Callable[[plans.Plan, Sequence[str]], None]
OnResult = Callable[[executing.StepResult], None]
OnStart = Callable[[plans.Step], None]
# Called with what the planner was given besides the desired state: its options (the rollbacks
# remembered included) and the engine as observed (see reconciler.verdicts).
OnInputs = Callable[[planning.Options, observed.Observed], None]

# How often ``wait_ready`` looks at the engine again.
READY_POLL_INTERVAL = readiness.POLL_INTERVAL


# ---------------------------------------------------------------------------------------------
# Plan and apply
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """What one apply (or delete) did: its plan, each step's result, warnings, and its stacks."""

    plan: plans.Plan
    outcome: executing.Outcome
    warnings: list[str]
    stacks: frozenset[str]
    # How each rollout left half-way (a step failed, or an interruption) was completed or rolled
    # back, a line each; the rollbacks among them (a replacement that did not become ready).
    recovered: list[str] = dataclasses.field(default_factory=list)
    rollbacks: list[rollouts.Rollback] = dataclasses.field(default_factory=list)


def refresh_images(target: engine.Engine, desired: manifests.Desired) -> list[str]:
    """Ask the registry about ``pullPolicy: Always`` images before observing, so that a moved tag
    shows up as "image changed". Returns one message per image that could not be refreshed."""
    problems = []
    for image in sorted({c.spec.image for c in desired.containers.values() if c.spec.pull_policy == "Always"}):
        try:
            target.pull_image(image, policy="Always")
        except errors.EngineError as exc:
            problems.append(f"image {image}: {exc}")
    return problems


def plan_desired(
    target: engine.Engine, desired: manifests.Desired, options: planning.Options
) -> tuple[plans.Plan, observed.Observed]:
    """Observe the engine once (the stacks in scope, the images the manifests name), then plan."""
    stacks = desired.stacks if options.scope is None else options.scope
    actual = target.observe(images=planning.images_of(desired), stacks=stacks)
    return planning.plan(desired, actual, options), actual


def refresh_and_plan(
    target: engine.Engine,
    desired: manifests.Desired,
    options: planning.Options,
    *,
    holds: Holds | None = None,
    on_inputs: OnInputs | None = None,
) -> tuple[plans.Plan, list[str]]:
    """``plan`` and ``apply`` share this: refresh ``Always`` images, observe once, plan (with the
    rollbacks remembered beside ``holds``, see :func:`rollout_options`)."""
    options = rollout_options(target, options, rollouts.Records.beside(holds), desired)
    warnings = refresh_images(target, desired)
    plan, actual = plan_desired(target, desired, options)
    if on_inputs is not None:
        on_inputs(options, actual)
    return plan, warnings


def plan_sources(
    target: engine.Engine,
    sources: Sequence[tuple[str, str]],
    *,
    prune: bool,
    prune_volumes: bool,
    holds: Holds | None = None,
) -> tuple[plans.Plan, list[str]]:
    """Validate manifest texts (``(file, text)``) and plan them: the plan, and warnings. Texts
    that declare no object raise :class:`errors.NoManifests`, as the CLI's own ``-f`` does."""
    desired = manifests.load_sources(sources)
    manifests.require_objects(desired, [file for file, _ in sources])
    return refresh_and_plan(target, desired, planning.Options(prune=prune, prune_volumes=prune_volumes), holds=holds)


def apply_desired(
    target: engine.Engine,
    desired: manifests.Desired,
    options: planning.Options,
    *,
    parallelism: int,
    stack_lock: stack_locking.LockFactory = stack_locking.no_lock,
    on_planned: OnPlanned | None = None,
    on_result: OnResult | None = None,
    cancel: threading.Event | None = None,
    holds: Holds | None = None,
    on_start: OnStart | None = None,
    on_inputs: OnInputs | None = None,
) -> Applied:
    """Refresh, plan and execute while holding the locks of the stacks in scope.

    Once ``cancel`` is set no new step starts (see :func:`executing.execute`). A rollout the
    walk left half-way (a replacement that did not become ready, a failed step, an interruption)
    is then completed or rolled back (:func:`rollouts.settle`), still under the locks; the
    rollbacks are remembered beside ``holds`` and held back by later plans. An explicit apply
    makes the files true: with ``holds``, the declared containers' stopped-on-purpose records are
    released first, and the plan starts them (as ``docker compose up`` starts what ``docker
    compose stop`` stopped)."""
    stacks = desired.stacks if options.scope is None else options.scope
    records = rollouts.Records.beside(holds)
    with stack_locking.hold_stacks(stack_lock, stacks):
        if holds is not None:
            holds.release(desired.containers)
        plan, warnings = refresh_and_plan(target, desired, options, holds=holds, on_inputs=on_inputs)
        if on_planned is not None:
            on_planned(plan, warnings)
        outcome, settled = execute_plan(target, plan, records, parallelism=parallelism, on_result=on_result,
                                        cancel=cancel, on_start=on_start)  # fmt: skip
    return Applied(plan, outcome, warnings, frozenset(stacks), settled.lines, settled.rollbacks)


def rollout_options(
    target: engine.Engine, options: planning.Options, records: rollouts.Records, desired: manifests.Desired
) -> planning.Options:
    """``options`` with what rollouts need: the rollbacks remembered for the declared containers,
    and whether the engine hands host ports over (see :data:`plan_inputs.HANDS_OVER_PORTS`)."""
    return plan_inputs.for_engine(options, target.name, records, desired.containers)


def execute_plan(
    target: engine.Engine,
    plan: plans.Plan,
    records: rollouts.Records,
    *,
    parallelism: int,
    on_result: OnResult | None = None,
    cancel: threading.Event | None = None,
    on_start: OnStart | None = None,
) -> tuple[executing.Outcome, rollouts.Settled]:
    """Execute ``plan``, then settle the rollouts it left half-way (:func:`rollouts.settle`): the
    one way an apply and the controller's passes run a plan. A replacement that an interruption
    kept from becoming ready is removed without being remembered as a rollback."""
    outcome = executing.execute(
        plan, target, parallelism=parallelism, on_result=on_result, cancel=cancel, on_start=on_start
    )
    interrupted = cancel is not None and cancel.is_set()
    return outcome, rollouts.settle(target, plan, outcome, records, remember=not interrupted)


def apply_sources(
    target: engine.Engine,
    sources: Sequence[tuple[str, str]],
    *,
    prune: bool,
    prune_volumes: bool,
    parallelism: int,
    stack_lock: stack_locking.LockFactory = stack_locking.no_lock,
    holds: Holds | None = None,
    force_recreate: Iterable[str] = (),
    cancel: threading.Event | None = None,
) -> Applied:
    """Validate manifest texts (``(file, text)``) and apply them (see :func:`apply_desired`);
    texts that declare no object raise :class:`errors.NoManifests` (applying them would only prune)."""
    desired = manifests.load_sources(sources)
    manifests.require_objects(desired, [file for file, _ in sources])
    options = planning.Options(prune=prune, prune_volumes=prune_volumes, force_recreate=frozenset(force_recreate))
    return apply_desired(target, desired, options, parallelism=parallelism, stack_lock=stack_lock, holds=holds,
                         cancel=cancel)  # fmt: skip


def delete_stacks(
    target: engine.Engine,
    stacks: Iterable[str],
    *,
    prune_volumes: bool,
    parallelism: int,
    stack_lock: stack_locking.LockFactory = stack_locking.no_lock,
    on_planned: OnPlanned | None = None,
    on_result: OnResult | None = None,
    cancel: threading.Event | None = None,
    on_start: OnStart | None = None,
) -> Applied:
    """Remove every object of ``stacks`` (volumes only with ``prune_volumes``): an empty desired
    state, pruned, in the scope of those stacks only. A stack that owns no object at all (not
    even a kept volume) raises :class:`errors.NothingNamed` before anything is removed: a typo in
    a stack's name must not pass for a successful delete."""
    scope = frozenset(stacks)
    present = target.observe(images=[], stacks=scope)
    owned = {item.stack for kind in (present.containers, present.networks, present.volumes) for item in kind.values()}
    if missing := sorted(scope - owned):
        raise errors.NothingNamed(f"no stack named {', '.join(missing)}; nothing was changed")
    options = planning.Options(prune=True, prune_volumes=prune_volumes, scope=scope)
    return apply_desired(target, manifests.Desired.empty(scope), options, parallelism=parallelism,
                         stack_lock=stack_lock, on_planned=on_planned, on_result=on_result,
                         cancel=cancel, on_start=on_start)  # fmt: skip


def outcome_json(plan: plans.Plan, outcome: executing.Outcome) -> dict[str, Any]:
    """The plan, its text, and each step's result with what the step did, as plain JSON."""
    results = []
    for result in outcome.results:
        verb, subject = plans.describe(result.step.action)
        results.append({
            "number": result.step.number, "status": result.status, "seconds": round(result.seconds, 3),
            "error": result.error, "verb": verb, "target": subject,
        })  # fmt: skip
    return {
        "plan": plan.to_json(),
        "text": plan.render(),
        "results": results,
        "summary": outcome.summary(),
        "ok": outcome.ok,
        "interrupted": outcome.interrupted,
    }


# ---------------------------------------------------------------------------------------------
# Start, stop, restart (day-2 verbs on containers that exist)
# ---------------------------------------------------------------------------------------------


def owned_containers(target: engine.Engine, names: Sequence[str], stacks: Sequence[str]) -> list[str]:
    """The owned containers ``names`` and those of ``stacks``, sorted, each once.

    A name the engine does not list as owned (unknown, or another tool's container: unowned
    objects are invisible to ``observe``) and a stack with no container are errors naming them,
    raised before anything is touched.
    """
    actual = target.observe()
    unknown = [name for name in names if name not in actual.containers]
    if unknown:
        raise errors.NotFound(f"no container managed by reconciler named {', '.join(unknown)}")
    chosen = set(names)
    for stack in stacks:
        members = {name for name, c in actual.containers.items() if c.stack == stack}
        if not members:
            raise errors.NotFound(f"stack {stack} has no containers")
        chosen |= members
    return sorted(chosen)


def start_containers(target: engine.Engine, names: Iterable[str], *, holds: Holds | None = None) -> None:
    """Start each container (a running one is left as it is); a stopped-on-purpose record of
    each is released first, so its restart policy applies again."""
    names = list(names)
    if holds is not None:
        holds.release(names)
    for name in names:
        target.start_container(name)


def stop_containers(
    target: engine.Engine,
    names: Iterable[str],
    *,
    holds: Holds | None = None,
    timeout: float | None = None,
    each: Callable[[str], contextlib.AbstractContextManager[object]] | None = None,
) -> None:
    """Stop each container, keeping it (its stop signal, then ``timeout`` or its own stop timeout);
    ``each(name)`` wraps each stop (a terminal shows it in flight).

    With ``holds``, each container is first recorded as stopped on purpose, so that a daemon's
    restart manager, which sees the exit, leaves it stopped (records of containers that are gone
    or were recreated since are dropped on the way)."""
    names = list(names)
    if holds is not None:
        actual = target.observe(images=[])
        holds.forget_stale(actual)
        for name in names:
            if (present := actual.containers.get(name)) is not None:
                holds.hold(name, present.container_id)
    for name in names:
        with each(name) if each is not None else contextlib.nullcontext():
            target.stop_container(name, timeout=timeout)


def boot(target: engine.Engine, holds: Holds) -> list[str]:
    """After a host reboot (or an engine that lost its processes): start the owned containers that
    :func:`restarts.starts_at_boot` brings back, and no other; their names. An ``always``
    container stopped on purpose comes back too (its record is released), as Docker does."""
    actual = target.observe(images=[])
    held = holds.held(actual)
    started = []
    for name, container in sorted(actual.containers.items()):
        if container.state in ("running", "restarting", "paused"):
            continue
        spec = (container.spec_json or {}).get("spec")
        restart = spec.get("restart") if isinstance(spec, dict) else None
        policy = str(restart.get("policy", "no")) if isinstance(restart, dict) else "no"
        if restarts.starts_at_boot(policy, stopped_on_purpose=name in held):
            start_containers(target, [name], holds=holds)
            started.append(name)
    return started


def restart_containers(
    target: engine.Engine,
    names: Sequence[str],
    *,
    holds: Holds | None = None,
    timeout: float | None = None,
    each: Callable[[str], contextlib.AbstractContextManager[object]] | None = None,
) -> None:
    """Stop them all, then start them all: a stack's containers come back together. The stop is
    not on purpose: a daemon may restart one before the start does, which is harmless."""
    stop_containers(target, names, timeout=timeout, each=each)
    start_containers(target, names, holds=holds)


# ---------------------------------------------------------------------------------------------
# Status and readiness
# ---------------------------------------------------------------------------------------------


def status_rows(actual: observed.Observed, desired: manifests.Desired | None) -> list[dict[str, Any]]:
    """One row per owned object (and per declared container that is absent): state, health, exit
    code, restarts, id, spec hash, image, published ports, start time and drift (the planner's
    reason, when it would change it)."""
    rows: list[dict[str, Any]] = []
    drift: dict[tuple[str, str], str] = {}
    if desired is not None:
        for change in planning.plan(desired, actual).changes:
            drift[(change.kind, change.name)] = f"{change.change}: {change.reason}"
        for name in sorted(set(desired.containers) - set(actual.containers)):
            rows.append({"kind": "Container", "name": name, "stack": desired.containers[name].stack,
                         "state": "absent", "image": desired.containers[name].spec.image,
                         "drift": drift.get(("Container", name), "")})  # fmt: skip
    for name, container in sorted(actual.containers.items()):
        rows.append({
            "kind": "Container", "name": name, "stack": container.stack, "state": container.state,
            "health": container.health or container.unprobed_health, "exitCode": container.exit_code,
            "restarts": container.restart_count, "id": container.container_id[:12], "specHash": container.spec_hash,
            "drift": drift.get(("Container", name), ""), "image": container.image,
            "ports": list(container.published_ports), "startedAt": container.started_at,
            "createdAt": container.created_at,
        })  # fmt: skip
    for kind, present in (("Network", actual.networks), ("Volume", actual.volumes)):
        for name, item in sorted(present.items()):
            rows.append({"kind": kind, "name": name, "stack": item.stack, "state": "present",
                         "specHash": item.spec_hash, "drift": drift.get((kind, name), "")})  # fmt: skip
    return rows


def status(target: engine.Engine, desired: manifests.Desired | None) -> list[dict[str, Any]]:
    """Observe every owned object once and describe it (see :func:`status_rows`)."""
    actual = target.observe(images=planning.images_of(desired) if desired else [])
    return status_rows(actual, desired)


def not_ready(actual: observed.Observed, desired: manifests.Desired, watch: readiness.HealthWatch) -> list[str]:
    """The declared containers that are not ready yet, each with why: absent, not running, or not
    healthy where it has a health check (the engine's health, else the probes ``watch`` runs).
    A one-shot job (restart ``no``) that exited 0 is ready."""
    pending = []
    for name, container in sorted(desired.containers.items()):
        why = readiness.not_ready_reason(actual.containers.get(name), container.spec, watch)
        if why is not None:
            pending.append(f"{name} ({why})")
    return pending


def wait_ready(target: engine.Engine, desired: manifests.Desired, *, timeout: float) -> list[str]:
    """Look at the engine until every declared container is ready or ``timeout`` seconds pass.

    Health is the engine's where it probes (Docker), else the probes this function runs through
    ``engine.exec`` (the native engine, with or without a daemon): ``--wait`` sees health alike on
    both. Returns what is still not ready (empty: everything is). The engine is asked at least once."""
    deadline = time.monotonic() + timeout
    watch = readiness.HealthWatch(target)
    while True:
        pending = not_ready(target.observe(images=[], stacks=desired.stacks), desired, watch)
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(max(0.01, min(READY_POLL_INTERVAL, watch.next_probe_in(), deadline - time.monotonic())))
