"""Rollouts after the executor: finish or roll back each replacement, and remember the rollbacks.

A recreate is a rollout through ``<name>.next`` (see :mod:`reconciler.planning`): the old
container is switched off only after the new one's await-ready step succeeded. When a plan did
not run to its end (a step failed, or Ctrl-C), :func:`settle` looks at each replacement once:

* its await-ready step succeeded: the switch was decided, so it is completed (the old one
  removed, the new one renamed), as the plan would have;
* otherwise the new container is removed and the old one keeps serving, started again if this
  plan had stopped it (stop-first). If the new one was started and did not become ready (it
  exited, restarted, turned unhealthy or missed its ``progressDeadline``), that is a rollback:
  its spec hash and image are recorded (:class:`Records`) with the time and the reason, and
  the planner holds that recreate back until the manifest or the image changes.

The records are one JSON file per container under the root's ``rollbacks/`` folder, beside the
stopped-on-purpose records (:mod:`reconciler.holds`), written by :func:`files.write_json`, so that
an embedded apply and a daemon share them and they survive restarts.

Where it sits: above the executor (it reads an :class:`executing.Outcome`), below
``operations`` and the controller, which call it. It must not plan, print or report events: it
returns what it did, and its callers say it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

from reconciler import engine, errors, executing, observed, plan_inputs, planning, plans

STAGED_SUFFIX = ".next"


@dataclasses.dataclass(frozen=True, slots=True)
class Rollback:
    """One replacement rolled back: the container, its stack, and the record kept."""

    name: str
    stack: str
    record: planning.RolledBack

    def text(self) -> str:
        return f"rollback of container {self.name}: {self.record.reason}; the old container keeps serving"


@dataclasses.dataclass(frozen=True, slots=True)
class Settled:
    """What :func:`settle` did: a line per replacement settled, and the rollbacks among them."""

    lines: list[str] = dataclasses.field(default_factory=list)
    rollbacks: list[Rollback] = dataclasses.field(default_factory=list)


# The rollback records, read by the planner's callers (and the CLI's remembered no-op, without
# this module), written here: the same class.
Records = plan_inputs.Records


@dataclasses.dataclass(slots=True)
class _Replacement:
    """The steps of one rollout in a plan, and how each ended (absent: never started)."""

    staged: str
    stack: str
    spec_hash: str
    steps: dict[type, plans.Step] = dataclasses.field(default_factory=dict)

    @property
    def old(self) -> str:
        return self.staged.removesuffix(STAGED_SUFFIX)


def _replacements(plan: plans.Plan) -> list[_Replacement]:
    found: dict[str, _Replacement] = {}
    for step in plan.steps:
        action = step.action
        if isinstance(action, plans.CreateContainer) and action.request.name.endswith(STAGED_SUFFIX):
            labels = action.request.labels
            found[action.request.name] = _Replacement(
                action.request.name, labels.get(observed.LABEL_STACK, ""), labels.get(observed.LABEL_HASH, "")
            )
    for step in plan.steps:
        name = _staged_name(step.action)
        if name in found:
            found[name].steps[type(step.action)] = step
    return [found[name] for name in sorted(found)]


def _staged_name(action: plans.Action) -> str | None:
    """The staged container a rollout's step is about (the stop of the old one included)."""
    match action:
        case plans.CreateContainer(request=request):
            return request.name
        case plans.StartContainer(name=name) | plans.AwaitReady(name=name):
            return name
        case plans.StopContainer(name=name) | plans.RemoveContainer(name=name):
            return name + STAGED_SUFFIX
        case plans.RenameContainer(name=name):
            return name
        case _:
            return None


def settle(
    target: engine.Engine,
    plan: plans.Plan,
    outcome: executing.Outcome,
    records: Records,
    *,
    remember: bool = True,
    wall: Callable[[], float] = time.time,
) -> Settled:
    """Finish or roll back every rollout of ``plan`` that ``outcome`` left half-way (see the module
    docstring), and forget the rollbacks of those that went through; an engine error is reported
    in that rollout's line, not raised. Without
    ``remember`` (an interrupted walk) a rollback is not recorded: the replacement was cut short,
    it did not fail."""
    results = {result.step.number: result for result in outcome.results}
    replacements = _replacements(plan)
    pending = [r for r in replacements if _status(r, results, plans.RenameContainer) != "done"]
    # A replacement that went through leaves nothing to hold back any more.
    records.forget(r.old for r in replacements if r not in pending)
    if not pending:
        return Settled()
    actual = target.observe(images=[], stacks={r.stack for r in pending})
    settled = Settled()
    for replacement in pending:
        try:
            _settle_one(target, replacement, results=results, actual=actual, settled=settled, now=wall(),
                        records=records if remember else Records(None))  # fmt: skip
        except errors.ReconcilerError as exc:
            settled.lines.append(f"rollout of {replacement.old} left half-way ({exc}); the next apply finishes it")
    return settled


def _status(replacement: _Replacement, results: Mapping[int, executing.StepResult], kind: type) -> str | None:
    step = replacement.steps.get(kind)
    result = results.get(step.number) if step is not None else None
    return result.status if result is not None else None


def _settle_one(
    target: engine.Engine,
    replacement: _Replacement,
    *,
    results: Mapping[int, executing.StepResult],
    actual: observed.Observed,
    records: Records,
    settled: Settled,
    now: float,
) -> None:
    new, old = actual.containers.get(replacement.staged), replacement.old
    if new is None:
        return  # never created (or renamed already): the old one was never touched
    if _status(replacement, results, plans.AwaitReady) == "done":
        if old in actual.containers:
            target.remove_container(old)
        target.rename_container(replacement.staged, old)
        settled.lines.append(f"recreate of {old} completed: the new container was ready and runs as {old}")
        return
    failed = [
        results[step.number]
        for kind in (plans.StartContainer, plans.AwaitReady)
        if (step := replacement.steps.get(kind)) is not None and _status(replacement, results, kind) == "failed"
    ]
    rollback = None
    if failed:  # remembered first: a failure to start the old one again must not lose it
        record = planning.RolledBack(replacement.spec_hash, new.image_id or None, now, failed[0].error or "not ready")
        records.record(old, record)
        rollback = Rollback(old, replacement.stack, record)
        settled.rollbacks.append(rollback)
    target.remove_container(replacement.staged)
    stopped = _status(replacement, results, plans.StopContainer) == "done"
    if stopped and old in actual.containers:
        target.start_container(old)
    how = "started again" if stopped else "kept running"
    if rollback is None:
        settled.lines.append(f"recreate of {old} rolled back: {replacement.staged} removed, {old} {how}")
    else:
        settled.lines.append(f"{rollback.text()} ({how})")
