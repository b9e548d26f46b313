"""One pass for one key: what the controller does when a worker takes a key from its queue.

Where it sits: under the loop (``controller``), which decides *when* a key runs and what happens
when its pass fails; this module decides *what* the pass does. A pass re-reads the folder and the
engine and runs the same pure planner and mechanical executor as ``reconcile apply``
(level-triggered). The keys are stack names, plus :data:`SCAN_KEY` (re-read the folder, enqueue
the stacks whose declared content changed) and :data:`RESYNC_KEY` (observe the engine once,
enqueue the stacks that drifted, reporting each drift). Stack names are DNS labels, so these
internal keys (with a colon) never collide with one.

It must not start threads, sleep, or stop containers on its own account: it plans and executes,
and the planner decides what to stop or remove.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence

from reconciler import (
    engine,
    errors,
    executing,
    manifests,
    observed,
    operations,
    planning,
    plans,
    rollouts,
    stack_locking,
)
from reconciler.controller import folder, health, images, queue, report, restarting

log = logging.getLogger("reconciler.controller")

SCAN_KEY = ":scan"
RESYNC_KEY = ":resync"


class RetryableFailure(errors.ReconcilerError):
    """Some steps of a pass failed: the pass is retried with the per-key backoff."""


class Passes:
    """The passes of every key, with what they share: the last look at the engine, and which
    stacks need a full pass (any trigger but a due restart)."""

    def __init__(
        self,
        target: engine.Engine,
        *,
        clock: queue.Clock,
        work: queue.WorkQueue,
        alarm: queue.Alarm,
        desired: folder.DesiredFolder,
        checks: health.Health,
        driver: restarting.RestartDriver,
        problems: report.Problems,
        events: report.EventLog,
        stack_lock: stack_locking.LockFactory,
        parallelism: int,
        refresh: images.ImageRefresh | None = None,
    ) -> None:
        self.engine = target
        self.refresh = refresh
        self.clock = clock
        self.queue = work
        self.alarm = alarm
        self.desired = desired
        self.health = checks
        self.restarts = driver
        self.problems = problems
        self.events = events
        self.stack_lock = stack_lock
        self.parallelism = parallelism
        # Rolled-back replacements, remembered beside the stopped-on-purpose records (one root).
        self.rollbacks = rollouts.Records.beside(driver.holds)
        self._lock = threading.Lock()
        self._observed = observed.Observed()  # what the last look at the engine found (status)
        # Stacks with a trigger other than a due restart: their next pass re-reads everything.
        # A pass triggered only by a restart timer starts the container at once (the restart
        # reaction time target is 0.2 s; a full observe can take longer than that on its own).
        self._full_pass: set[str] = set()

    def run(self, key: str) -> float | None:
        """One pass for ``key``; seconds until it is due again (a pending restart), or None."""
        if key == SCAN_KEY:
            self._scan()
            return None
        if key == RESYNC_KEY:
            self._resync()
            return None
        if key == images.IMAGES_KEY:
            self._check_images()
            return None
        return self._reconcile(key)

    def enqueue(self, key: str) -> None:
        """A full pass for ``key`` (a stack, or an internal key)."""
        self.mark_full(key)
        self.queue.add(key)

    def mark_full(self, key: str) -> None:
        """``key``'s next pass re-reads everything (it failed, or something else changed)."""
        with self._lock:
            self._full_pass.add(key)

    def last_observed(self) -> observed.Observed:
        """What the last look at the engine found (status shows it)."""
        with self._lock:
            return self._observed

    def _scan(self) -> None:
        """Re-read the folder; enqueue the stacks whose declared content changed (all of them the
        first time, and every managed stack, so that a file deleted while we were down prunes)."""
        scan = self.desired.rescan()
        declared = scan.snapshot.desired.containers
        self.restarts.keep_only(declared)
        self.health.keep_only(declared)
        for file in scan.new_errors:
            kept = " (last good version kept)" if file.using_last_good else ""
            self.events.add("manifest-error", ",".join(file.stacks), file.path, "; ".join(file.errors) + kept)
        for stack in sorted(scan.changed - scan.snapshot.frozen):
            self.enqueue(stack)

    def _resync(self) -> None:
        """Observe once and bring the bookkeeping up to date: status, health checks, exits that
        were missed; every stack whose plan is not empty drifted: report it, enqueue it.

        It also runs right after every pass that changed something (instead of that pass
        observing a second time while it holds its key, which would delay a restart of the same
        stack by a full observe).
        """
        snapshot = self.desired.current()
        known = self.desired.known_stacks()
        # Only our stacks in detail: other tenants' containers cost a list entry, not an inspect.
        actual = self.engine.observe(images=planning.images_of(snapshot.desired), stacks=known)
        now = self.clock.monotonic()
        with self._lock:
            self._observed = actual
        for stack in sorted(known - snapshot.frozen):
            desired = folder.only_stack(snapshot.desired, stack)
            self.health.sync(desired, actual, now)
            self.alarm.ring()
            if self.queue.busy(stack) or self.queue.failures(stack):
                continue  # a pass is under way or queued (its steps would look like drift), or retrying
            if not folder.declares_anything(desired) and not _has_objects(actual, stack):
                self.desired.forget(stack)  # a deleted file's stack, pruned: nothing to manage
                continue
            self._check_drift(stack, desired, actual, now)

    def _check_images(self) -> None:
        """Ask the registry about the ``Always`` images; a full pass for each stack behind a moved tag."""
        if self.refresh is None:
            return
        snapshot = self.desired.current()
        for stack in sorted(self.refresh.check(snapshot.desired, self.last_observed()) - snapshot.frozen):
            self.enqueue(stack)

    def _check_drift(self, stack: str, desired: manifests.Desired, actual: observed.Observed, now: float) -> None:
        try:
            plan = planning.plan(desired, actual, self._plan_options(stack, desired, actual))
        except errors.PlanError:
            self.enqueue(stack)
            return
        missed = self.restarts.found(desired, actual, now, dry_run=True)
        if plan.converged and not missed:
            return
        reasons = [f"{c.kind.lower()} {c.name}: {c.change} ({c.reason})" for c in plan.changes]
        for name in missed:
            present = actual.containers[name]
            reasons.append(f"container {name}: {present.state} ({present.exit_code}), restart pending")
        self.events.add("drift", stack, "", "; ".join(reasons))
        self.enqueue(stack)

    def _reconcile(self, stack: str) -> float | None:
        with self._lock:
            full = stack in self._full_pass or self.desired.last() is None
            self._full_pass.discard(stack)
        # Due restarts first, on the last known state: a full pass observes the engine first,
        # which alone can take longer than the restart reaction target (0.2 s). Before a full
        # pass a failed restart is only logged: the full pass sees the real state and decides.
        try:
            requeue = self._restart_pass(stack)
        except RetryableFailure:
            if not full:
                raise
            requeue = None
        if not full:
            return requeue
        with self.stack_lock(stack):
            return self._full(stack)

    def _full(self, stack: str) -> float | None:
        """Load, observe, plan and execute one stack (its lock held); seconds to its next restart."""
        snapshot = self.desired.reload()
        if stack in snapshot.frozen:
            log.warning("stack %s is frozen: a manifest that may declare it does not parse", stack,
                        extra={"stack": stack})  # fmt: skip
            return None
        desired = folder.only_stack(snapshot.desired, stack)
        observed_at = self.clock.monotonic()
        actual = self.engine.observe(images=planning.images_of(desired), stacks={stack})
        with self._lock:
            self._observed = _merged(self._observed, actual, stack)
        plan = planning.plan(desired, actual, self._plan_options(stack, desired, actual))
        self.problems.stack_done(stack)
        self.problems.set_drift(stack, {f"{c.kind.lower()}/{c.name}": f"{c.change}: {c.reason}" for c in plan.changes})
        failed: list[str] = []
        if not plan.converged:
            log.info("reconciling: %s", plan.summary(), extra={"stack": stack})
            outcome, settled = operations.execute_plan(self.engine, plan, self.rollbacks, parallelism=self.parallelism)
            failed = self._record_outcome(stack, outcome)
            self.events.add("reconcile", stack, "", plan.summary() + " " + outcome.summary())
            for rollback in settled.rollbacks:
                self.events.add("rollback", stack, rollback.name, rollback.text())
            # What the engine looks like now is read by a resync, after this key is released:
            # observing again here would hold the key, and a restart of this stack with it.
            self.queue.add(RESYNC_KEY)
        else:
            now = self.clock.monotonic()
            due = self.restarts.found(desired, actual, now, dry_run=False, observed_at=observed_at)
            failed += self._perform_restarts(stack, desired, due)
            self.health.sync(desired, actual, now)
            self.alarm.ring()
        self.problems.keep_failed_drift(stack)
        if folder.declares_anything(desired):
            self.desired.manage(stack)
        if failed:
            raise RetryableFailure(f"{len(failed)} step(s) failed: " + "; ".join(failed[:3]))
        return self.restarts.next_in(desired, self.clock.monotonic())

    def _plan_options(self, stack: str, desired: manifests.Desired, actual: observed.Observed) -> planning.Options:
        """The controller's inputs to the planner: the restarts it owns, and dependsOn gates."""
        owned = frozenset(name for name, container in desired.containers.items() if self.restarts.owns(container))
        gates = {name: why for name, c in desired.containers.items() if (why := self.health.gate(c, actual))}
        held = self.restarts.held(actual)
        # No await-healthy steps: the gates hold dependents until the health checks here say so.
        options = planning.Options(scope=frozenset({stack}), restarts_elsewhere=owned, gates=gates, held=held,
                                   await_healthy=False)  # fmt: skip
        return operations.rollout_options(self.engine, options, self.rollbacks, desired)

    def _record_outcome(self, stack: str, outcome: executing.Outcome) -> list[str]:
        failed = []
        for result in outcome.results:
            key = report.action_object(result.step.action)
            if result.status == "done":
                self.problems.object_done(key)
            elif result.status == "failed":
                verb, target = plans.describe(result.step.action)
                self.problems.object_failed(key, result.error or "failed")
                failed.append(f"{verb} {target}: {result.error}")
        for message in failed:
            self.events.add("step-failed", stack, "", message)
        return failed

    def _restart_pass(self, stack: str) -> float | None:
        """A pass triggered only by restart timers: start what is due, on the last known state.

        Starting an exited container is idempotent and the die event said it exited; if the
        container went away meanwhile the start fails, and the retry is a full pass.
        """
        desired = folder.only_stack(self.desired.current().desired, stack)
        now = self.clock.monotonic()
        due = self.restarts.due_now(desired, now)
        if due:
            with self.stack_lock(stack):
                failed = self._perform_restarts(stack, desired, due)
            if failed:
                with self._lock:
                    self._full_pass.add(stack)  # the retry re-reads everything
                raise RetryableFailure(f"{len(failed)} restart(s) failed: " + "; ".join(failed[:3]))
        return self.restarts.next_in(desired, now)

    def _perform_restarts(self, stack: str, desired: manifests.Desired, names: Sequence[str]) -> list[str]:
        performed = self.restarts.perform(stack, desired, names)
        if performed.vanished:
            self.enqueue(stack)  # removed meanwhile: the full pass creates them again
        for name, error in performed.failed.items():
            self.problems.object_failed(f"container/{name}", error)
        return [f"restart container {name}: {error}" for name, error in performed.failed.items()]


def _merged(old: observed.Observed, new: observed.Observed, stack: str) -> observed.Observed:
    """``new`` (observed in detail for ``stack`` only) with the detail ``old`` had of the others.

    What exists is always ``new``'s word; only the fields an engine may leave out for other
    stacks (limits, times, restart count) are kept from the last detailed look.
    """

    def best(name: str, container: observed.ObservedContainer) -> observed.ObservedContainer:
        before = old.containers.get(name)
        if container.stack == stack or before is None:
            return container
        same = before.container_id == container.container_id and before.state == container.state
        return before if same else container

    containers = {name: best(name, container) for name, container in new.containers.items()}
    return dataclasses.replace(new, containers=containers)


def _has_objects(actual: observed.Observed, stack: str) -> bool:
    tables: tuple[Mapping[str, observed.Owned], ...] = (actual.containers, actual.networks, actual.volumes)
    return any(item.stack == stack for table in tables for item in table.values())
