"""The executor: walks a plan's DAG and makes one engine call per step. It decides nothing.

Independent steps run concurrently on a bounded thread pool (``parallelism``); a step starts when
every step it waits for has succeeded. When a step fails, the steps that depend on it (directly or
transitively) are skipped, and every independent step still runs, so one bad object never blocks
the rest of the stack. Starts and results are reported as they happen (``on_start``,
``on_result``) and results are returned in step order, so the CLI can show the steps in flight,
print a per-step line and a summary.

A cancellation token (``cancel``, set by the CLI on Ctrl-C) is checked before a step starts:
once it is set, no new step starts, the steps in flight finish and are reported, and the steps
never started are listed in the outcome (``not_started``) so the summary can say what was not done.

It sits above the planner's data (``plans``), ``readiness`` and the ``engine`` protocol, below the
operations and the controller. It makes one engine call per step (a wait for readiness looks
until the container is ready, see :func:`perform`) and decides nothing: what to do and in which
order is the plan's; it never retries, never edits the plan, and observes only in an await step.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Literal, assert_never

from reconciler import engine, errors, plans, readiness, vocabulary

Status = Literal["done", "failed", "skipped"]


@dataclasses.dataclass(frozen=True, slots=True)
class StepResult:
    step: plans.Step
    status: Status
    seconds: float = 0.0
    error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    results: tuple[StepResult, ...]
    # The steps an interruption kept from starting (empty unless the walk was cancelled).
    not_started: tuple[plans.Step, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.not_started and all(result.status == "done" for result in self.results)

    @property
    def interrupted(self) -> bool:
        return bool(self.not_started)

    def count(self, status: Status) -> int:
        return sum(1 for result in self.results if result.status == status)

    def summary(self) -> str:
        total = len(self.results) + len(self.not_started)
        stopped = f", {len(self.not_started)} not started" if self.not_started else ""
        return (
            f"{self.count('done')} done, {self.count('failed')} failed, {self.count('skipped')} skipped"
            f"{stopped} of {vocabulary.counted(total, 'step')}"
        )


def perform(action: plans.Action, target: engine.Engine, cancel: threading.Event | None = None) -> None:
    """The one engine call for ``action``; mypy checks that every action variant is handled.

    An :class:`plans.AwaitReady` step is the one that looks more than once: it watches the engine
    until the container is ready (:func:`readiness.await_ready`), and ``cancel`` ends the wait."""
    match action:
        case plans.PullImage(image=image, policy=policy):
            target.pull_image(image, policy=policy)
        case plans.CreateNetwork() | plans.RemoveNetwork() | plans.CreateVolume() | plans.RemoveVolume():
            _perform_storage(action, target)
        case plans.CreateContainer(request=request):
            target.create_container(request)
        case plans.StartContainer(name=name):
            target.start_container(name)
        case plans.StopContainer(name=name, timeout=timeout):
            target.stop_container(name, timeout=timeout)
        case plans.RemoveContainer(name=name):
            target.remove_container(name)
        case plans.RenameContainer(name=name, new_name=new_name):
            target.rename_container(name, new_name)
        case plans.UpdateContainer(name=name, resources=resources):
            target.update_container(name, resources)
        case plans.AwaitReady():
            readiness.await_ready(target, action, cancel=cancel)
        case _:
            assert_never(action)


def _perform_storage(
    action: plans.CreateNetwork | plans.RemoveNetwork | plans.CreateVolume | plans.RemoveVolume, target: engine.Engine
) -> None:
    match action:
        case plans.CreateNetwork(request=request):
            target.create_network(request)
        case plans.RemoveNetwork(name=name):
            target.remove_network(name)
        case plans.CreateVolume(request=volume):
            target.create_volume(volume)
        case plans.RemoveVolume(name=name):
            target.remove_volume(name)
        case _:
            assert_never(action)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())  # one line per failed object, always


def _run(step: plans.Step, target: engine.Engine, cancel: threading.Event | None = None) -> StepResult:
    """Perform one step, timing it; a failure is a result, never an exception."""
    started = time.monotonic()
    try:
        perform(step.action, target, cancel)
    except errors.ReconcilerError as exc:
        return StepResult(step, "failed", time.monotonic() - started, _error_text(exc))
    except Exception as exc:  # a backend bug must not abort the other steps
        return StepResult(step, "failed", time.monotonic() - started, f"{type(exc).__name__}: {_error_text(exc)}")
    return StepResult(step, "done", time.monotonic() - started)


class _Walk:
    """One walk of a plan's DAG: which steps wait for which, and the results so far."""

    def __init__(self, plan: plans.Plan, on_result: Callable[[StepResult], None] | None) -> None:
        self.steps = {step.number: step for step in plan.steps}
        self._dependents: dict[int, list[int]] = {number: [] for number in self.steps}
        self._waiting: dict[int, int] = {}
        for step in plan.steps:
            self._waiting[step.number] = len(step.after)
            for before in step.after:
                self._dependents[before].append(step.number)
        self._results: dict[int, StepResult] = {}
        self._on_result = on_result

    def startable(self) -> list[int]:
        """The steps that wait for nothing, in step order."""
        return sorted(number for number, count in self._waiting.items() if count == 0)

    def finished(self, result: StepResult) -> list[int]:
        """Record ``result``; the steps it was the last one to wait for, in step order."""
        self._report(result)
        number = result.step.number
        if result.status == "failed":
            verb, target = plans.describe(result.step.action)
            self._skip_dependents(number, f"step {number} ({verb} {target}) failed")
            return []
        ready = []
        for child in sorted(self._dependents[number]):
            self._waiting[child] -= 1
            if self._waiting[child] == 0 and child not in self._results:
                ready.append(child)
        return ready

    def outcome(self) -> Outcome:
        not_started = tuple(self.steps[number] for number in sorted(self.steps) if number not in self._results)
        return Outcome(tuple(self._results[number] for number in sorted(self._results)), not_started)

    def _report(self, result: StepResult) -> None:
        self._results[result.step.number] = result
        if self._on_result is not None:
            self._on_result(result)

    def _skip_dependents(self, number: int, cause: str) -> None:
        stack = list(self._dependents[number])
        while stack:
            child = stack.pop()
            if child in self._results:
                continue
            self._report(StepResult(self.steps[child], "skipped", error=f"skipped: {cause}"))
            stack.extend(self._dependents[child])


def execute(
    plan: plans.Plan,
    target: engine.Engine,
    *,
    parallelism: int = 4,
    on_result: Callable[[StepResult], None] | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[plans.Step], None] | None = None,
) -> Outcome:
    """Run ``plan`` against ``target``; never raises for a failed step (see :class:`Outcome`).

    Once ``cancel`` is set, no step starts; those in flight finish (see the module docstring).
    ``on_start`` hears of each step as it is handed to a worker (a terminal shows it in flight)."""
    walk = _Walk(plan, on_result)
    width = max(1, parallelism)
    # A step is handed to the pool only when a worker is free, so "started" means running: a
    # step queued in the pool could not be held back by the cancellation token any more.
    ready = walk.startable()
    running: dict[concurrent.futures.Future[StepResult], int] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=width) as pool:
        while True:
            while ready and len(running) < width and (cancel is None or not cancel.is_set()):
                number = ready.pop(0)
                if on_start is not None:
                    on_start(walk.steps[number])
                running[pool.submit(_run, walk.steps[number], target, cancel)] = number
            if not running:
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: running[f]):
                del running[future]
                ready = sorted(ready + walk.finished(future.result()))
    return walk.outcome()
