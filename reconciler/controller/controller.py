"""The controller's loop: keys in, passes out; it ties the folder, the queue, restarts and health.

Where it sits: the top of the controller package (``reconcile watch`` builds one
:class:`Controller`; the daemon's API serves it). A trigger (a file event, an engine event, a
timer) only *enqueues a key* (a stack, :data:`SCAN_KEY` or :data:`RESYNC_KEY`); workers take
keys and run their pass (:mod:`reconciler.controller.passes`), and a failed pass is retried with
the queue's per-key backoff.

It must not import a backend (it takes any ``Engine``), watchdog or the CLI, print (it logs and
reports events), or stop containers when it shuts down.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

from reconciler import engine, errors, manifests, operations, plans, stack_locking
from reconciler.controller import (
    folder,
    git_source,
    health,
    images,
    notifications,
    passes,
    queue,
    report,
    restarting,
    state,
    status,
    threads,
)
from reconciler.holds import Holds

log = logging.getLogger("reconciler.controller")

SCAN_KEY = passes.SCAN_KEY
RESYNC_KEY = passes.RESYNC_KEY
LockFactory = stack_locking.LockFactory
DEFAULT_RELIST = 20.0
# The periodic resync is a safety net: exits, stops and removals arrive as engine events and
# bring a resync forward. Each one observes every owned container (on Docker ~2 ms of CPU per
# container), so 60 s keeps a 100-container host's idle cost under half a percent of a core.
DEFAULT_RESYNC = 60.0
# A resync this long after a stop/destroy event (lets a burst of events and our own passes end).
EVENT_RESYNC_DELAY = 0.5
# A die event's own time is trusted for the backoff only when it is at most this old.
MAX_EVENT_LATENESS = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How often the loop looks again, and how much it does at once."""

    engine_restarts: bool = False  # the engine restarts containers itself (Docker)
    relist_interval: float = DEFAULT_RELIST
    resync_interval: float = DEFAULT_RESYNC
    parallelism: int = 4
    workers: int = 2


class Controller:
    """The loop. Synchronous core (``handle_event``, ``tick``, ``run_ready``) plus threads (``start``).

    Unit tests drive the core with a fake clock: ``handle_event`` for engine events, ``tick``
    for timers and probes, ``run_ready`` to process every ready key. ``start``/``stop`` run the
    same core on threads: workers, a timer, an engine-event reader and a small probe pool.
    """

    def __init__(
        self,
        target: engine.Engine,
        folder_path: Path,
        *,
        clock: queue.Clock | None = None,
        state_dir: Path | None = None,
        engine_restarts: bool = False,
        relist_interval: float = DEFAULT_RELIST,
        resync_interval: float = DEFAULT_RESYNC,
        parallelism: int = 4,
        workers: int = 2,
        stack_lock: LockFactory = stack_locking.no_lock,
        rng: random.Random | None = None,
        threaded_probes: bool = False,
        holds: Holds | None = None,
        image_refresh: float = images.DEFAULT_IMAGE_REFRESH,
        notifier: notifications.Notifier | None = None,
        git: git_source.GitSource | None = None,
    ) -> None:
        """``git``: the folder is that git source's (``folder_path`` is then not read)."""
        self.engine = target
        self.clock: queue.Clock = clock or queue.SystemClock()
        self.settings = Settings(engine_restarts, relist_interval, resync_interval, parallelism, workers)
        self.stack_lock = stack_lock
        self.queue = queue.WorkQueue(self.clock)
        self.alarm = queue.Alarm()
        records = state.ControllerState(state_dir)
        self.desired = folder.DesiredFolder(git.folder if git else folder_path, records)
        self.events = report.EventLog(self.clock)
        self.git = git
        if git is not None:
            # Each event names the commit in force; a new commit in force is a rescan.
            self.events.revision = git.commit_in_force
            git.connect(events=self.events, exclusive=self.desired.manifests.exclusive(),
                        changed=lambda: self.queue.add(SCAN_KEY))  # fmt: skip
        self.problems = report.Problems()
        self.pass_times = report.PassTimes()
        self.health = health.Health(target, self.clock, self.desired)
        self.images = images.ImageRefresh(target, self.events, interval=image_refresh, start=self.clock.monotonic())
        self.notifier = notifier
        if notifier is not None:
            self.events.subscribe(notifier.offer)
        self.restarts = restarting.RestartDriver(
            target, self.clock, records, self.events, engine_restarts=self.settings.engine_restarts,
            rng=rng or random.Random(), wake=self._restart_scheduled, on_restart=self.health.forget,  # noqa: S311 (jitter)
            holds=holds,
        )  # fmt: skip
        self.passes = passes.Passes(
            target, clock=self.clock, work=self.queue, alarm=self.alarm, desired=self.desired, checks=self.health,
            driver=self.restarts, problems=self.problems, events=self.events, stack_lock=stack_lock,
            parallelism=self.settings.parallelism, refresh=self.images,
        )  # fmt: skip
        self._next_relist = self.clock.monotonic() + self.settings.relist_interval
        self._next_resync = self.clock.monotonic() + self.settings.resync_interval
        self._probe_pool = futures.ThreadPoolExecutor(4, "probe") if threaded_probes else None
        self._threads: threads.Threads | None = None

    # -- triggers -------------------------------------------------------------------------------

    def file_changed(self, path: str) -> None:
        """The watcher's callback: a manifest file was written, created, moved or deleted."""
        log.debug("file changed: %s", path)
        self.queue.add(SCAN_KEY)

    def enqueue(self, key: str) -> None:
        """A full pass for ``key`` (a stack, or an internal key)."""
        self.passes.enqueue(key)

    def handle_event(self, event: engine.Event) -> None:
        """An engine event: a ``die`` of a container the controller restarts schedules a restart.

        A ``stop`` or ``destroy`` of a declared container brings the next resync forward: it finds
        what was stopped or removed by hand, reports it as drift and heals it.
        """
        self.pass_times.engine_event()
        desired = self.desired.container(event.name)
        if desired is None:
            return
        if event.action == "start":
            now = self.clock.monotonic()
            self.health.started(desired, event.container_id, now)
            if self.restarts.owns(desired):
                self.restarts.started(event.name, event.container_id, now)
            self.alarm.ring()
        elif event.action in ("stop", "destroy"):
            # Possibly someone's ``docker stop``/``docker rm``: resync shortly instead of waiting
            # for the periodic one. Our own recreates cause these too; the resync skips stacks
            # with a pass under way and reports nothing for converged ones.
            self.queue.add_after(RESYNC_KEY, EVENT_RESYNC_DELAY)
        elif event.action == "die":
            self._died(desired, event)

    def _died(self, desired: manifests.DesiredContainer, event: engine.Event) -> None:
        self.events.add("exit", desired.stack, event.name, f"exited with code {event.exit_code}")
        if event.exit_code == 0 and self.desired.has_dependents(event.name, "completed"):
            self.enqueue(desired.stack)  # dependents gated on this job's completion may start now
        if not self.restarts.owns(desired):
            return
        # The backoff counts from the exit the engine reports, not from when its event arrived;
        # a time that is missing, in the future or implausibly old (a replay) counts from now.
        late = self.clock.wall() - event.time
        late = late if 0.0 < late < MAX_EVENT_LATENESS else 0.0
        self.restarts.schedule(desired, event.container_id, event.exit_code, reason="exit", late=late)

    def _restart_scheduled(self, stack: str, wait: float) -> None:
        self.queue.add_after(stack, wait)
        self.alarm.ring()

    # -- the synchronous core -------------------------------------------------------------------

    def tick(self) -> float:
        """Run every timer that is due (delayed keys, re-list, resync, probes); seconds to the next."""
        now = self.clock.monotonic()
        following = [self.queue.promote() or self.settings.relist_interval]
        if now >= self._next_relist:
            self._next_relist = now + self.settings.relist_interval
            if self.desired.changed_on_disk():
                self.queue.add(SCAN_KEY)
        following.append(self._next_relist - now)
        if now >= self._next_resync:
            self._next_resync = now + self.settings.resync_interval
            self.queue.add(RESYNC_KEY)
        following.append(self._next_resync - now)
        if self.images.due(now):
            self.queue.add(images.IMAGES_KEY)
        following.append(self.images.next_in(now))
        following.append(self._run_probes(now))
        return max(0.001, min(following))

    def run_ready(self, *, limit: int = 1000) -> int:
        """Process ready keys until none is ready (fake-clock tests, ``--once``). Returns the count."""
        count = 0
        while count < limit:
            key = self.queue.try_get()
            if key is None:
                break
            self.process(key)
            count += 1
        return count

    def converge_once(self) -> bool:
        """``--once``: scan, reconcile every stack, then report whether every pass succeeded."""
        if self.git is not None:
            self.git.sync()
        self.queue.add(SCAN_KEY)
        self.run_ready()  # the first scan enqueues every declared and every managed stack
        snapshot = self.desired.last()
        broken = any(not file.ok for file in (snapshot.files.values() if snapshot else ()))
        # A fetch that failed or a commit refused is a failure too (its reasons are in status).
        broken = broken or (self.git is not None and not self.git.healthy())
        return not self.problems.any_error() and not broken

    def process(self, key: str) -> None:
        """One pass for ``key``; failures requeue it with the per-key backoff."""
        started = time.monotonic()
        succeeded = False
        try:
            requeue = self.passes.run(key)
            self.queue.forget(key)
            succeeded = True
            self.problems.stack_done(key)
            if requeue is not None:
                self.queue.add_after(key, requeue)
        except errors.PlanError as exc:
            # Terminal: the user must change something; a file event will trigger the next pass.
            self._stack_error(key, f"cannot plan: {exc}")
            self.problems.files_failed(key, exc.blame)
            self.queue.forget(key)
        except errors.Unavailable as exc:
            self._stack_error(key, str(exc))
            self.queue.add_rate_limited(key, at_least=exc.retry_after)
        except passes.RetryableFailure as exc:
            self._stack_error(key, str(exc))
            delay = self.queue.add_rate_limited(key)
            log.info("pass failed, retrying in %.3fs", delay, extra={"stack": key})
        except errors.ReconcilerError as exc:
            self._stack_error(key, str(exc))
            self.queue.add_rate_limited(key)
        except Exception as exc:
            log.exception("internal error in the pass for %s", key, extra={"stack": key})
            self._stack_error(key, f"internal error: {type(exc).__name__}: {exc}")
            self.queue.add_rate_limited(key)
        finally:
            if not succeeded:
                self.passes.mark_full(key)
            self.queue.done(key)
            self.pass_times.passed(key, time.monotonic() - started)
            self.alarm.ring()

    def _stack_error(self, key: str, message: str) -> None:
        self.problems.stack_failed(key, message)
        self.events.add("error", key, "", message)

    # -- health probes --------------------------------------------------------------------------

    def _run_probes(self, now: float) -> float:
        """Start every due probe; seconds until the next one is due."""
        due, following = self.health.due(now)
        for probe in due:
            if self._probe_pool is not None:
                self._probe_pool.submit(self._probe, probe)
            else:
                self._probe(probe)
        return following

    def _probe(self, probe: health.DueProbe) -> None:
        verdict = self.health.probe(probe)
        self.alarm.ring()  # the timer sleeps until the next due probe: this one's is new
        if verdict is None:
            return
        container = verdict.container
        self.events.add("health", container.stack, probe.name, f"{verdict.status} (probe exit {verdict.exit_code})")
        # Dependents gated on this container's health, and onUnhealthy restarts, need a pass.
        if verdict.status == "unhealthy" and container.spec.restart.on_unhealthy:
            self.restarts.schedule(container, verdict.container_id, None, reason="unhealthy")
        self.enqueue(container.stack)

    # -- threads --------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the core on threads: workers, the timer, the engine-event reader."""
        self.queue.add(SCAN_KEY)
        self.queue.add(RESYNC_KEY)
        if self.notifier is not None:
            self.notifier.start()
        self._threads = threads.Threads(
            self.queue, self.alarm, process=self.process, tick=self.tick, handle_event=self.handle_event,
            events=lambda stop: self.engine.events(stop=stop), reconnected=lambda: self.queue.add(RESYNC_KEY),
        )  # fmt: skip
        self._threads.start(self.settings.workers)
        if self.git is not None:
            self.git.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Graceful shutdown: finish the passes in flight, leave every container running."""
        if self.git is not None:
            self.git.stop(timeout=timeout)
        if self._threads is not None:
            self._threads.stop(timeout=timeout)
        else:
            self.queue.shutdown()
        if self._probe_pool is not None:
            self._probe_pool.shutdown(wait=False, cancel_futures=True)
        if self.notifier is not None:
            self.notifier.stop()

    # -- what the API serves --------------------------------------------------------------------

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def log_lines(self, name: str, *, follow: bool, tail: int | None) -> Iterator[dict[str, Any]]:
        for line in self.engine.logs(name, follow=follow, tail=tail):
            yield {"stream": line.stream, "time": line.time, "text": line.text}

    def status(self) -> dict[str, Any]:
        """Every object (state, health, exit code, restarts, backoff, last error, drift, hash)."""
        actual = self.passes.last_observed()
        shown = status.render(
            engine_name=self.engine.name, desired=self.desired, actual=actual, checks=self.health,
            driver=self.restarts, problems=self.problems, work=self.queue, now=self.clock.monotonic(),
            held_back=self.passes.rollbacks.shown(actual.containers),
        )  # fmt: skip
        if self.notifier is not None:
            shown["notifications"] = self.notifier.stats()
        if self.git is not None:
            shown["git"] = self.git.status()
            shown["files"] = [*shown["files"], *self.git.file_reports()]
        return shown

    def fetch_now(self) -> None:
        """``POST /hooks/git``: the git source fetches at once."""
        if self.git is not None:
            self.git.trigger()

    def events_since(self, sequence: int = 0) -> list[dict[str, Any]]:
        return self.events.since(sequence)

    def follow_events(self, stop: threading.Event, *, since: int = 0) -> Iterator[dict[str, Any]]:
        """Every event after ``since``, then new ones as they happen, until ``stop`` is set."""
        return self.events.follow(stop, since=since)

    def metric_samples(self) -> list[report.Sample]:
        depth = report.Sample("reconciler_queue_depth", "gauge", "Keys ready to be processed.", (),
                              float(self.queue.depth()))  # fmt: skip
        snapshot = self.desired.last()
        files = [report.Sample("reconciler_manifest_errors", "gauge", "Diagnostics per manifest file.",
                               (("file", path),), float(len(file.errors)))
                 for path, file in sorted((snapshot.files if snapshot else {}).items())]  # fmt: skip
        counters = report.counter_samples(self.restarts.totals(), self.problems.totals())
        return [depth, *self.pass_times.samples(), *counters, *files]

    def plan_sources(
        self, sources: Sequence[tuple[str, str]], *, prune: bool = True, prune_volumes: bool = False
    ) -> tuple[plans.Plan, list[str]]:
        """``reconcile plan`` through the daemon: the plan, and warnings (images not refreshed)."""
        return operations.plan_sources(
            self.engine, sources, prune=prune, prune_volumes=prune_volumes, holds=self.restarts.holds
        )

    def apply_sources(
        self,
        sources: Sequence[tuple[str, str]],
        *,
        prune: bool = True,
        prune_volumes: bool = False,
        parallelism: int = 4,
        force_recreate: Sequence[str] = (),
        cancel: threading.Event | None = None,
    ) -> operations.Applied:
        """``reconcile apply`` through the daemon, holding the stacks' locks meanwhile; the stacks
        this folder manages get a pass afterwards (their restarts and health are the controller's).
        ``cancel``: the client's Ctrl-C (no new step starts; see :func:`operations.apply_desired`)."""
        applied = operations.apply_sources(
            self.engine, sources, prune=prune, prune_volumes=prune_volumes, parallelism=parallelism,
            stack_lock=self.stack_lock, holds=self.restarts.holds, force_recreate=force_recreate, cancel=cancel,
        )  # fmt: skip
        for rollback in applied.rollbacks:
            self.events.add("rollback", rollback.stack, rollback.name, rollback.text())
        known = self.desired.known_stacks()
        for stack in applied.stacks:
            if stack in known:
                self.enqueue(stack)
        return applied
