"""The controller: keeps an engine converged on a folder of manifests, for as long as it runs.

Where it sits: ``reconcile watch DIR`` (``cli_daemon``) builds one :class:`Controller` around an
``Engine`` and feeds it triggers: file events from ``watching``, the engine's own events, timers.
A trigger only *enqueues a key*; every pass re-reads the files and the engine and runs the same
pure planner and mechanical executor as ``reconcile apply`` (level-triggered, as kubelet and
controller-runtime do). Keys are stack names plus two internal keys: ``:scan`` (re-read the
folder and enqueue the stacks whose declared content changed) and ``:resync`` (observe the engine
once and enqueue the stacks that drifted, reporting each drift as an event).

The pieces, each testable with a fake clock and no threads:

* :class:`WorkQueue`: client-go's semantics. A key is never processed by two workers at once,
  re-adds while processing are coalesced into one more pass, ``add_after`` delays, and a per-key
  exponential requeue backoff (5 ms → 1000 s) for passes that failed.
* :class:`ManifestFolder`: per-file error isolation. A file that stops parsing keeps its last good
  version in force (persisted under the state directory, so a restarted controller keeps it too)
  and its diagnostics (``file:line:col``) are shown in status; a file that never parsed freezes
  the stacks it may declare, so an error can never turn into a mass deletion. A deleted file
  prunes its stack.
* Restart policies (:func:`restarts.wants_restart`, :func:`restarts.restart_delay`): one semantics on every engine,
  driven by the engine's ``die`` events, with Docker's backoff defaults. On engines that restart
  containers themselves (Docker), the controller only owns the containers whose manifest sets
  ``backoff`` or ``onUnhealthy`` (the backend then leaves Docker's own policy at ``no``).
* Health checks: ``CMD``/``CMD-SHELL`` probes through ``engine.exec`` with Docker's state machine
  (starting → healthy/unhealthy after ``retries`` failures, failures ignored during
  ``startPeriod``); ``dependsOn`` with ``healthy``/``completed`` gates the start of dependents.

What it must not do: import a backend (it takes any ``Engine``), watchdog, or the CLI; print
(it logs through ``logging`` and reports through :meth:`Controller.status` and events); stop
containers when it shuts down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import heapq
import itertools
import json
import logging
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, Literal, Protocol

from reconciler import engine, errors, executing, hashing, manifests, observed, planning, plans, restarts

log = logging.getLogger("reconciler.controller")

SCAN_KEY = ":scan"
RESYNC_KEY = ":resync"
# Stack names are DNS labels, so the internal keys (with a colon) can never collide with one.
_INTERNAL_KEYS = frozenset({SCAN_KEY, RESYNC_KEY})

REQUEUE_BASE = 0.005
REQUEUE_MAX = 1000.0
DEFAULT_RELIST = 20.0
# The periodic resync is a safety net: exits, stops and removals arrive as engine events and
# bring a resync forward. Each one observes every owned container (on Docker ~2 ms of CPU per
# container), so 60 s keeps a 100-container host's idle cost under half a percent of a core.
DEFAULT_RESYNC = 60.0
# A resync this long after a stop/destroy event (lets a burst of events and our own passes end).
EVENT_RESYNC_DELAY = 0.5
# A die event's own time is trusted for the backoff only when it is at most this old.
MAX_EVENT_LATENESS = 5.0
# When no backoff is written, Docker's restart manager's numbers apply (design §5).
_EVENT_BUFFER = 1000


# ---------------------------------------------------------------------------------------------
# Time: injected so that unit tests run on a fake clock, without threads or sleeps
# ---------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Monotonic seconds for every delay the controller computes; wall time for reports."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


# ---------------------------------------------------------------------------------------------
# The work queue
# ---------------------------------------------------------------------------------------------


class WorkQueue:
    """A key-deduplicating queue with client-go's guarantees (see the module docstring).

    ``get`` marks a key as processing until ``done``; an ``add`` of a processing key only marks
    it dirty, and ``done`` puts it back once, so a burst of triggers costs one more pass, never
    two workers on one stack. Delayed adds live in a heap on the injected clock and become ready
    in :meth:`promote` (called by ``get`` and by the controller's timer).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._failures: dict[str, int] = {}
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            if self._closed or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._clock.monotonic() + delay, next(self._sequence), key))
            self._cond.notify_all()

    def add_rate_limited(self, key: str, *, at_least: float = 0.0) -> float:
        """Requeue after a failure: 5 ms, 10 ms, 20 ms … capped at 1000 s (or ``at_least``, the
        engine's own ``retry_after``, when that is longer). Returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = max(at_least, requeue_delay(failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def promote(self) -> float | None:
        """Move due delayed keys to the ready queue; seconds until the next one (None: none)."""
        now = self._clock.monotonic()
        due: list[str] = []
        with self._cond:
            while self._delayed and self._delayed[0][0] <= now:
                due.append(heapq.heappop(self._delayed)[2])
            following = self._delayed[0][0] - now if self._delayed else None
        for key in due:
            self.add(key)
        return following

    def try_get(self) -> str | None:
        """The next ready key (marked processing), or None; never blocks (fake-clock tests)."""
        self.promote()
        with self._cond:
            if not self._ready:
                return None
            return self._take()

    def get(self, timeout: float | None = None) -> str | None:
        """Block until a key is ready (or ``timeout``, or shutdown: then None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # The condition's lock is re-entrant: promoting under it means an ``add_after`` can never
        # slip in between computing the wait and waiting (a lost wake-up would delay a restart).
        with self._cond:
            while True:
                following = self.promote()
                if self._ready:
                    return self._take()
                if self._closed:
                    return None
                wait = following
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def _take(self) -> str:
        key = self._ready.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready.append(key)
                self._cond.notify()

    def busy(self, key: str) -> bool:
        """Whether ``key`` is being processed or waits to be (the resync leaves those alone)."""
        with self._cond:
            return key in self._processing or key in self._dirty

    def processing(self) -> int:
        with self._cond:
            return len(self._processing)

    def depth(self) -> int:
        with self._cond:
            return len(self._ready)

    def delayed(self) -> int:
        with self._cond:
            return len(self._delayed)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def requeue_delay(failures: int) -> float:
    """client-go's per-item exponential failure limiter: 5 ms × 2^failures, at most 1000 s."""
    return float(min(REQUEUE_MAX, REQUEUE_BASE * 2.0 ** min(failures, 40)))


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


@dataclasses.dataclass(slots=True)
class HealthState:
    """Docker's health state machine for one running container (keyed by container id)."""

    container_id: str
    started_at: float
    status: Literal["starting", "healthy", "unhealthy"] = "starting"
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


# ---------------------------------------------------------------------------------------------
# The manifest folder, with per-file error isolation
# ---------------------------------------------------------------------------------------------

_EDITOR_ARTEFACT = re.compile(r"(^\.|~$|\.swp$|\.swx$|^4913$|\.bak$|\.tmp$|^#.*#$)")
_STACK_FIELD = re.compile(r"^\s*stack:\s*['\"]?([a-z0-9][a-z0-9-]*)", re.MULTILINE)


def is_manifest_name(name: str) -> bool:
    """``*.yaml``/``*.yml`` that is no dotfile and no editor artefact (vim, emacs, backups)."""
    return name.endswith((".yaml", ".yml")) and not _EDITOR_ARTEFACT.search(name)


@dataclasses.dataclass(frozen=True, slots=True)
class FileReport:
    """One manifest file's state in status: ``ok``, or ``error`` with every diagnostic."""

    path: str
    ok: bool
    errors: tuple[str, ...] = ()
    using_last_good: bool = False
    stacks: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "state": "ok" if self.ok else "error", "errors": list(self.errors),
                "usingLastGood": self.using_last_good, "stacks": list(self.stacks)}  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """One load of the folder: the desired state in force, and what is frozen or broken."""

    desired: manifests.Desired
    files: Mapping[str, FileReport]
    # Stacks a never-valid file may declare: never planned (no pruning) until it parses.
    frozen: frozenset[str]
    # Per stack, a digest of its declared objects: a changed digest means "reconcile it".
    digests: Mapping[str, str]


class ManifestFolder:
    """Loads a folder's manifests so that one broken file never breaks (or empties) the others."""

    def __init__(self, folder: Path, *, state_dir: Path | None = None) -> None:
        self.folder = folder
        self._state = state_dir / "last-good" if state_dir is not None else None
        self._last_good: dict[str, str] = {}
        self._lock = threading.Lock()
        if self._state is not None and self._state.is_dir():
            for entry in self._state.glob("*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    record = json.loads(entry.read_text(encoding="utf-8"))
                    self._last_good[str(record["path"])] = str(record["text"])

    def paths(self) -> list[Path]:
        try:
            entries = list(self.folder.iterdir())
        except OSError:
            return []
        return sorted(p for p in entries if is_manifest_name(p.name) and p.is_file())

    def fingerprint(self) -> dict[str, tuple[int, int]]:
        """``path → (mtime_ns, size)``: what the periodic re-list compares to notice missed events."""
        result: dict[str, tuple[int, int]] = {}
        for path in self.paths():
            with contextlib.suppress(OSError):
                info = path.stat()
                result[str(path)] = (info.st_mtime_ns, info.st_size)
        return result

    def load(self) -> Snapshot:
        with self._lock:
            return self._load()

    def _load(self) -> Snapshot:
        current: dict[str, str] = {}
        problems: dict[str, list[str]] = {}
        for path in self.paths():
            try:
                current[str(path)] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems[str(path)] = [f"{path}:1:1: cannot read: {exc}"]
                if str(path) in self._last_good:
                    current[str(path)] = self._last_good[str(path)]
        sources = dict(current)
        stale: set[str] = {p for p in problems if p in current}
        excluded: set[str] = set(problems) - set(current)
        desired = manifests.Desired.empty()
        # Each round replaces (or drops) the files that failed; it ends because each round
        # changes at least one file, and a file is replaced at most once and dropped at most once.
        for _ in range(2 * len(sources) + 2):
            try:
                desired = manifests.load_sources(sorted(sources.items()))
                break
            except errors.ManifestError as exc:
                bad = sorted({d.file for d in exc.diagnostics})
                for diagnostic in exc.diagnostics:
                    if diagnostic.file in current and diagnostic.file not in stale:
                        problems.setdefault(diagnostic.file, []).append(diagnostic.render())
                progress = False
                for file in bad:
                    if file not in sources:
                        continue
                    good = self._last_good.get(file)
                    if file not in stale and good is not None and good != sources[file]:
                        sources[file] = good
                        stale.add(file)
                    else:
                        del sources[file]
                        excluded.add(file)
                        stale.discard(file)
                    progress = True
                if not progress:
                    break
        # Remember the texts that are now in force as they are on disk: the new last good ones.
        for file, text in current.items():
            if file not in stale and file not in excluded and self._last_good.get(file) != text:
                self._last_good[file] = text
                self._persist(file, text)
        for file in sorted(set(self._last_good) - set(current)):
            del self._last_good[file]  # deleted: its stacks are pruned
            self._forget(file)
        stacks_of: dict[str, set[str]] = {}
        declared: list[manifests.DesiredContainer | manifests.DesiredNetwork | manifests.DesiredVolume] = [
            *desired.containers.values(),
            *desired.networks.values(),
            *desired.volumes.values(),
        ]
        for item in declared:
            stacks_of.setdefault(item.source.file, set()).add(item.stack)
        frozen: set[str] = set()
        for file in excluded:
            frozen |= _guess_stacks(file, current.get(file, ""))
        files = {
            file: FileReport(
                path=file,
                ok=file not in problems,
                errors=tuple(problems.get(file, ())),
                using_last_good=file in stale,
                stacks=tuple(sorted(stacks_of.get(file, set()) or (_guess_stacks(file, current.get(file, ""))))),
            )
            for file in sorted(set(current) | set(problems))
        }
        return Snapshot(desired=desired, files=files, frozen=frozenset(frozen), digests=stack_digests(desired))

    def _record_path(self, file: str) -> Path | None:
        if self._state is None:
            return None
        return self._state / (hashlib.sha256(file.encode()).hexdigest()[:32] + ".json")

    def _persist(self, file: str, text: str) -> None:
        target = self._record_path(file)
        if target is None:
            return
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = target.with_suffix(".tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump({"path": file, "text": text}, handle)
            os.replace(temporary, target)
        except OSError as exc:
            log.warning("cannot persist the last good version of %s: %s", file, exc)

    def _forget(self, file: str) -> None:
        target = self._record_path(file)
        if target is not None:
            with contextlib.suppress(OSError):
                target.unlink()


def _guess_stacks(file: str, text: str) -> set[str]:
    """The stacks a file that never parsed may declare: its stem and any ``stack:`` it names."""
    guessed = {match.group(1) for match in _STACK_FIELD.finditer(text)}
    stem = re.sub(r"[^a-z0-9-]+", "-", Path(file).stem.lower()).strip("-")[:63].strip("-")
    guessed.add(stem or "default")
    return guessed


def stack_digests(desired: manifests.Desired) -> dict[str, str]:
    """A digest per stack of everything it declares (names and spec hashes)."""
    parts: dict[str, list[str]] = {}
    for name, container in desired.containers.items():
        # The spec itself too: a restart-policy or healthcheck edit changes no hash but matters here.
        spec = hashing.canonical_json(container.spec.model_dump(mode="json"))
        parts.setdefault(container.stack, []).append(f"c/{name}/{hashing.container_hash(container)}/{spec}")
    for name, network in desired.networks.items():
        parts.setdefault(network.stack, []).append(f"n/{name}/{hashing.network_hash(network)}")
    for name, volume in desired.volumes.items():
        parts.setdefault(volume.stack, []).append(f"v/{name}/{hashing.volume_hash(volume)}")
    return {stack: hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest() for stack, items in parts.items()}


def only_stack(desired: manifests.Desired, stack: str) -> manifests.Desired:
    """The part of ``desired`` that belongs to ``stack`` (the planner plans one stack per pass)."""
    return manifests.Desired(
        containers={n: c for n, c in desired.containers.items() if c.stack == stack},
        networks={n: v for n, v in desired.networks.items() if v.stack == stack},
        volumes={n: v for n, v in desired.volumes.items() if v.stack == stack},
        stacks=frozenset({stack}),
    )


# ---------------------------------------------------------------------------------------------
# Plan surgery: the controller's own decisions on top of the pure planner
# ---------------------------------------------------------------------------------------------


def action_object(action: plans.Action) -> str:
    """``kind/name`` of the object an action touches, for per-object errors and metrics."""
    container = planning.container_of(action)
    if container is not None:
        return f"container/{container}"
    verb, target = plans.describe(action)
    del verb
    kind, _, name = target.partition(" ")
    return f"{kind}/{name}"


# ---------------------------------------------------------------------------------------------
# Events the controller reports (the API's event stream)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ControllerEvent:
    sequence: int
    time: float
    kind: str  # reconcile | drift | step-failed | exit | restart | gave-up | health | manifest-error | error
    stack: str
    name: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.sequence, "time": round(self.time, 6), "kind": self.kind, "stack": self.stack,
                "name": self.name, "message": self.message}  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One Prometheus sample: the API renders these as the text exposition format."""

    name: str
    kind: Literal["counter", "gauge", "summary"]
    help: str
    labels: tuple[tuple[str, str], ...]
    value: float


LockFactory = Callable[[str], contextlib.AbstractContextManager[object]]


def _no_lock(stack: str) -> contextlib.AbstractContextManager[object]:
    del stack
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------


class Controller:
    """See the module docstring. Synchronous core (``tick``, ``run_ready``) plus threads (``start``).

    Unit tests drive the core with a fake clock: ``handle_event`` for engine events, ``tick``
    for timers and probes, ``run_ready`` to process every ready key. ``start``/``stop`` run the
    same core on threads: workers, a timer, an engine-event reader and a small probe pool.
    """

    def __init__(
        self,
        target: engine.Engine,
        folder: Path,
        *,
        clock: Clock | None = None,
        state_dir: Path | None = None,
        engine_restarts: bool = False,
        relist_interval: float = DEFAULT_RELIST,
        resync_interval: float = DEFAULT_RESYNC,
        parallelism: int = 4,
        workers: int = 2,
        stack_lock: LockFactory = _no_lock,
        rng: random.Random | None = None,
        threaded_probes: bool = False,
    ) -> None:
        self.engine = target
        self.clock: Clock = clock or SystemClock()
        self.folder = ManifestFolder(folder, state_dir=state_dir)
        self.engine_restarts = engine_restarts
        self.relist_interval = relist_interval
        self.resync_interval = resync_interval
        self.parallelism = parallelism
        self.workers = workers
        self.stack_lock = stack_lock
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self.queue = WorkQueue(self.clock)
        self._state_dir = state_dir
        self._lock = threading.RLock()
        self._wake = threading.Condition()
        self._wake_generation = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._probe_pool = futures.ThreadPoolExecutor(4, "probe") if threaded_probes else None
        # What the last load, observe and passes found (status reads these).
        self._snapshot: Snapshot | None = None
        self._observed: observed.Observed = observed.Observed()
        self._managed: set[str] = self._read_managed()
        self._digests: dict[str, str] = {}
        self._scanned = False
        self._reported_errors: dict[str, tuple[str, ...]] = {}
        self._fingerprint: dict[str, tuple[int, int]] = {}
        self._next_relist = self.clock.monotonic() + relist_interval
        self._next_resync = self.clock.monotonic() + resync_interval
        self._restarts: dict[str, RestartState] = self._load_restarts()
        # Stacks with a trigger other than a due restart: their next pass re-reads everything.
        # A pass triggered only by a restart timer starts the container at once (the restart
        # reaction time target is 0.2 s; a full observe can take longer than that on its own).
        self._full_pass: set[str] = set()
        self._health: dict[str, HealthState] = {}
        self._object_errors: dict[str, str] = {}
        self._stack_errors: dict[str, str] = {}
        self._drift: dict[str, dict[str, str]] = {}  # stack → object → why it differs
        self._events: deque[ControllerEvent] = deque(maxlen=_EVENT_BUFFER)
        self._event_cond = threading.Condition()
        self._sequence = itertools.count(1)
        # Metrics.
        self._durations: dict[str, tuple[float, int]] = {}
        self._restart_total: dict[str, int] = {}
        self._error_total: dict[str, int] = {}
        self._engine_events = 0

    # -- triggers ---------------------------------------------------------------------------

    def file_changed(self, path: str) -> None:
        """The watcher's callback: a manifest file was written, created, moved or deleted."""
        log.debug("file changed: %s", path)
        self.queue.add(SCAN_KEY)

    def enqueue(self, key: str) -> None:
        """A full pass for ``key`` (a stack, or an internal key)."""
        with self._lock:
            self._full_pass.add(key)
        self.queue.add(key)

    def handle_event(self, event: engine.Event) -> None:
        """An engine event: a ``die`` of a container the controller restarts schedules a restart.

        A ``stop`` or ``destroy`` of a declared container brings the next resync forward: it finds
        what was stopped or removed by hand, reports it as drift and heals it.
        """
        with self._lock:
            self._engine_events += 1
        if event.action == "start":
            desired = self._desired_container(event.name)
            if desired is None:
                return
            now = self.clock.monotonic()
            with self._lock:
                check = desired.spec.healthcheck
                health = self._health.get(event.name)
                if (
                    check is not None
                    and probe_argv(check) is not None
                    and (health is None or health.container_id != event.container_id)
                ):
                    # Probing starts with the process, not with the next observe.
                    self._health[event.name] = HealthState(event.container_id, now, next_probe_at=now + check.interval)
                if restarts.controller_owns_restarts(desired.spec, engine_restarts=self.engine_restarts):
                    state = self._restarts.get(event.name)
                    if state is None or state.container_id != event.container_id:
                        state = self._restarts[event.name] = RestartState(container_id=event.container_id)
                    state.started_at = now
            self._notify()
            return
        if event.action in ("stop", "destroy"):
            # Possibly someone's ``docker stop``/``docker rm``: resync shortly instead of waiting
            # for the periodic one. Our own recreates cause these too; the resync skips stacks
            # with a pass under way and reports nothing for converged ones.
            if self._desired_container(event.name) is not None:
                self.queue.add_after(RESYNC_KEY, EVENT_RESYNC_DELAY)
            return
        if event.action != "die":
            return
        desired = self._desired_container(event.name)
        if desired is None:
            return
        self._report("exit", desired.stack, event.name, f"exited with code {event.exit_code}")
        if event.exit_code == 0 and self._has_dependents(event.name, "completed"):
            self.enqueue(desired.stack)  # dependents gated on this job's completion may start now
        if not restarts.controller_owns_restarts(desired.spec, engine_restarts=self.engine_restarts):
            return
        # The backoff counts from the exit the engine reports, not from when its event arrived;
        # a time that is missing, in the future or implausibly old (a replay) counts from now.
        late = self.clock.wall() - event.time
        late = late if 0.0 < late < MAX_EVENT_LATENESS else 0.0
        self._schedule_restart(desired, event.container_id, event.exit_code, reason="exit", late=late)

    # -- the synchronous core -----------------------------------------------------------------

    def tick(self) -> float:
        """Run every timer that is due (delayed keys, re-list, resync, probes); seconds to the next."""
        now = self.clock.monotonic()
        following = [self.queue.promote() or self.relist_interval]
        if now >= self._next_relist:
            self._next_relist = now + self.relist_interval
            if self._watched_fingerprint() != self._fingerprint:
                self.queue.add(SCAN_KEY)
        following.append(self._next_relist - now)
        if now >= self._next_resync:
            self._next_resync = now + self.resync_interval
            self.queue.add(RESYNC_KEY)
        following.append(self._next_resync - now)
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
        self.queue.add(SCAN_KEY)
        self.run_ready()  # the first scan enqueues every declared and every managed stack
        with self._lock:
            return (
                not self._stack_errors
                and not self._object_errors
                and not any(not report.ok for report in (self._snapshot.files.values() if self._snapshot else ()))
            )

    def process(self, key: str) -> None:
        """One pass for ``key``; failures requeue it with the per-key backoff."""
        started = time.monotonic()
        succeeded = False
        try:
            if key == SCAN_KEY:
                self._scan()
                requeue = None
            elif key == RESYNC_KEY:
                self._resync()
                requeue = None
            else:
                requeue = self._reconcile(key)
            self.queue.forget(key)
            succeeded = True
            with self._lock:
                self._stack_errors.pop(key, None)
            if requeue is not None:
                self.queue.add_after(key, requeue)
        except errors.PlanError as exc:
            # Terminal: the user must change something; a file event will trigger the next pass.
            self._stack_error(key, f"cannot plan: {exc}")
            self.queue.forget(key)
        except errors.Unavailable as exc:
            self._stack_error(key, str(exc))
            self.queue.add_rate_limited(key, at_least=exc.retry_after)
        except _RetryableFailure as exc:
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
                with self._lock:
                    self._full_pass.add(key)
            self.queue.done(key)
            elapsed = time.monotonic() - started
            with self._lock:
                total, count = self._durations.get(key, (0.0, 0))
                self._durations[key] = (total + elapsed, count + 1)
            self._notify()

    # -- passes -------------------------------------------------------------------------------

    def _scan(self) -> None:
        """Re-read the folder; enqueue the stacks whose declared content changed (all of them the
        first time, and every managed stack, so that a file deleted while we were down prunes)."""
        snapshot = self.folder.load()
        with self._lock:
            self._snapshot = snapshot
            first = not self._scanned
            self._scanned = True
            old_digests, self._digests = self._digests, dict(snapshot.digests)
            # Containers no longer declared take their restart and health bookkeeping with them.
            for table in (self._restarts, self._health):
                for name in [n for n in table if n not in snapshot.desired.containers]:
                    del table[name]
            reported, self._reported_errors = (
                self._reported_errors,
                {path: report.errors for path, report in snapshot.files.items() if not report.ok},
            )
        self._fingerprint = self._watched_fingerprint()
        for path, report in snapshot.files.items():
            if not report.ok and reported.get(path) != report.errors:
                kept = " (last good version kept)" if report.using_last_good else ""
                self._report("manifest-error", ",".join(report.stacks), path, "; ".join(report.errors) + kept)
        changed = {s for s in set(old_digests) | set(snapshot.digests) if old_digests.get(s) != snapshot.digests.get(s)}
        if first:
            changed |= self._managed
        for stack in sorted(changed - snapshot.frozen):
            self.enqueue(stack)

    def _resync(self) -> None:
        """Observe once and bring the bookkeeping up to date: status, health checks, exits that
        were missed; every stack whose plan is not empty drifted: report it, enqueue it.

        It also runs right after every pass that changed something (instead of that pass
        observing a second time while it holds its key, which would delay a restart of the same
        stack by a full observe).
        """
        snapshot = self._current_snapshot()
        # Only our stacks in detail: other tenants' containers cost a list entry, not an inspect.
        actual = self.engine.observe(images=planning.images_of(snapshot.desired), stacks=self._known_stacks())
        now = self.clock.monotonic()
        with self._lock:
            self._observed = actual
        for stack in sorted(self._known_stacks() - snapshot.frozen):
            desired = only_stack(snapshot.desired, stack)
            self._sync_health(desired, actual, now)
            if self.queue.busy(stack) or self.queue.failures(stack):
                continue  # a pass is under way or queued (its steps would look like drift), or retrying
            if not (desired.containers or desired.networks or desired.volumes) and not _has_objects(actual, stack):
                with self._lock:
                    self._forget_stack(stack)  # a deleted file's stack, pruned: nothing to manage
                continue
            try:
                plan = planning.plan(desired, actual, self._plan_options(stack, desired, actual))
            except errors.PlanError:
                self.enqueue(stack)
                continue
            missed = self._due_restarts(desired, actual, now, dry_run=True)
            if plan.converged and not missed:
                continue
            reasons = [f"{c.kind.lower()} {c.name}: {c.change} ({c.reason})" for c in plan.changes]
            for name in missed:
                present = actual.containers[name]
                reasons.append(f"container {name}: {present.state} ({present.exit_code}), restart pending")
            self._report("drift", stack, "", "; ".join(reasons))
            self.enqueue(stack)

    def _reconcile(self, stack: str) -> float | None:
        with self._lock:
            full = stack in self._full_pass or self._snapshot is None
            self._full_pass.discard(stack)
        # Due restarts first, on the last known state: a full pass observes the engine first,
        # which alone can take longer than the restart reaction target (0.2 s). Before a full
        # pass a failed restart is only logged: the full pass sees the real state and decides.
        try:
            requeue = self._restart_pass(stack)
        except _RetryableFailure:
            if not full:
                raise
            requeue = None
        if not full:
            return requeue
        with self.stack_lock(stack):
            snapshot = self.folder.load()
            with self._lock:
                self._snapshot = snapshot
            if stack in snapshot.frozen:
                log.warning("stack %s is frozen: a manifest that may declare it does not parse", stack,
                            extra={"stack": stack})  # fmt: skip
                return None
            desired = only_stack(snapshot.desired, stack)
            observed_at = self.clock.monotonic()
            actual = self.engine.observe(images=planning.images_of(desired), stacks={stack})
            with self._lock:
                self._observed = _merged(self._observed, actual, stack)
            plan = planning.plan(desired, actual, self._plan_options(stack, desired, actual))
            with self._lock:
                self._stack_errors.pop(stack, None)
                self._drift[stack] = {
                    f"{change.kind.lower()}/{change.name}": f"{change.change}: {change.reason}"
                    for change in plan.changes
                }
            failed: list[str] = []
            if not plan.converged:
                log.info("reconciling: %s", plan.summary(), extra={"stack": stack})
                outcome = executing.execute(plan, self.engine, parallelism=self.parallelism)
                failed = self._record_outcome(stack, outcome)
                self._report("reconcile", stack, "", plan.summary() + " " + outcome.summary())
                # What the engine looks like now is read by a resync, after this key is released:
                # observing again here would hold the key, and a restart of this stack with it.
                self.queue.add(RESYNC_KEY)
            else:
                now = self.clock.monotonic()
                failed += self._restart_due(stack, desired, actual, now, observed_at)
                self._sync_health(desired, actual, now)
            with self._lock:
                failed_objects = {key for key in self._object_errors if key in self._drift.get(stack, {})}
                self._drift[stack] = {k: v for k, v in self._drift[stack].items() if k in failed_objects}
                if (desired.containers or desired.networks or desired.volumes) and stack not in self._managed:
                    self._managed.add(stack)
                    self._write_managed()
            if failed:
                raise _RetryableFailure(f"{len(failed)} step(s) failed: " + "; ".join(failed[:3]))
            return self._next_restart_in(desired, self.clock.monotonic())

    def _plan_options(self, stack: str, desired: manifests.Desired, actual: observed.Observed) -> planning.Options:
        """The controller's inputs to the planner: the restarts it owns, and dependsOn gates."""
        owned = frozenset(
            name
            for name, container in desired.containers.items()
            if restarts.controller_owns_restarts(container.spec, engine_restarts=self.engine_restarts)
        )
        gates = {name: why for name, container in desired.containers.items() if (why := self._gate(container, actual))}
        return planning.Options(scope=frozenset({stack}), restarts_elsewhere=owned, gates=gates)

    def _gate(self, container: manifests.DesiredContainer, actual: observed.Observed) -> str:
        """Why a container must not start yet (a ``healthy``/``completed`` dependency), or ''."""
        for dependency in container.spec.depends_on:
            other = actual.containers.get(dependency.name)
            if dependency.condition == "healthy":
                if other is None or other.state != "running":
                    return f"waiting for {dependency.name} to be healthy"
                if self._health_of(other) not in ("healthy", None):
                    return f"waiting for {dependency.name} to be healthy"
            elif dependency.condition == "completed" and (
                other is None or other.state != "exited" or other.exit_code != 0
            ):
                return f"waiting for {dependency.name} to complete"
        return ""

    def _record_outcome(self, stack: str, outcome: executing.Outcome) -> list[str]:
        failed = []
        with self._lock:
            for result in outcome.results:
                key = action_object(result.step.action)
                if result.status == "done":
                    self._object_errors.pop(key, None)
                elif result.status == "failed":
                    verb, target = plans.describe(result.step.action)
                    self._object_errors[key] = result.error or "failed"
                    self._error_total[key] = self._error_total.get(key, 0) + 1
                    failed.append(f"{verb} {target}: {result.error}")
        for message in failed:
            self._report("step-failed", stack, "", message)
        return failed

    # -- restarts ---------------------------------------------------------------------------

    def _schedule_restart(
        self,
        desired: manifests.DesiredContainer,
        container_id: str,
        exit_code: int | None,
        *,
        reason: str,
        late: float = 0.0,
    ) -> None:
        restart = desired.spec.restart
        backoff = restart.backoff or restarts.DEFAULT_BACKOFF
        now = self.clock.monotonic()
        with self._lock:
            state = self._restarts.get(desired.name)
            if state is None or state.container_id != container_id:
                state = RestartState(container_id=container_id)
                self._restarts[desired.name] = state
            if state.due_at is not None:
                return  # one restart pending is enough
            # A container that ran long enough starts its backoff over (Docker: 10 s).
            if state.started_at is not None and now - state.started_at >= backoff.reset_after:
                state.attempt = 0
            state.last_exit_code = exit_code
            if reason == "exit" and not restarts.wants_restart(restart, exit_code, restarts=state.restarts):
                gave_up = restart.policy == "on-failure" and exit_code not in (0, None)
                if gave_up and not state.gave_up:
                    message = f"exit {exit_code} after {state.restarts} restarts: maxRetries reached"
                    self._report_locked("gave-up", desired.stack, desired.name, message)
                state.gave_up = gave_up
                self._save_restarts()
                return
            state.delay = restarts.restart_delay(backoff, state.attempt, rng=self.rng)
            state.exited_at = now
            # ``late``: how long ago the exit happened when it was seen (the event's delivery).
            wait = max(0.0, state.delay - late)
            state.due_at = now + wait
            state.reason = reason
        log.info("restart of %s in %.3fs (%s)", desired.name, state.delay, reason,
                 extra={"stack": desired.stack, "container": desired.name})  # fmt: skip
        self.queue.add_after(desired.stack, wait)
        self._notify()

    def _due_restarts(
        self,
        desired: manifests.Desired,
        actual: observed.Observed,
        now: float,
        *,
        dry_run: bool,
        observed_at: float | None = None,
    ) -> list[str]:
        """Controller-owned containers of a stack that should be (re)started now.

        ``observed_at`` is when ``actual`` was read: a container seen running *before* its exit
        was seen must not cancel the restart that exit scheduled.
        """
        due = []
        for name, container in sorted(desired.containers.items()):
            if not restarts.controller_owns_restarts(container.spec, engine_restarts=self.engine_restarts):
                continue
            present = actual.containers.get(name)
            if present is None or present.spec_hash != hashing.container_hash(container):
                continue
            with self._lock:
                state = self._restarts.get(name)
                if state is not None and state.container_id != present.container_id:
                    del self._restarts[name]
                    state = None
                if present.state == "running":
                    if state is not None and state.due_at is not None and state.reason == "unhealthy":
                        if state.due_at <= now:
                            due.append(name)
                    elif (
                        state is not None
                        and not dry_run
                        and state.due_at is not None
                        and observed_at is not None
                        and state.exited_at is not None
                        and observed_at > state.exited_at
                    ):
                        state.due_at = None  # started by someone else meanwhile
                    continue
                if present.state not in ("exited", "dead"):
                    continue
                if state is None or (state.due_at is None and not state.gave_up):
                    # An exit the controller did not see (it was not running, or the event was
                    # missed): the same decision as for a ``die`` event, with the same backoff.
                    if dry_run:
                        made = state.restarts if state is not None else 0
                        if restarts.wants_restart(container.spec.restart, present.exit_code, restarts=made):
                            due.append(name)
                    else:
                        self._schedule_restart(container, present.container_id, present.exit_code, reason="exit")
                    continue
                if state.due_at is not None and state.due_at <= now:
                    due.append(name)
        return due

    def _restart_pass(self, stack: str) -> float | None:
        """A pass triggered only by restart timers: start what is due, on the last known state.

        Starting an exited container is idempotent and the die event said it exited; if the
        container went away meanwhile the start fails, and the retry is a full pass.
        """
        snapshot = self._current_snapshot()
        desired = only_stack(snapshot.desired, stack)
        now = self.clock.monotonic()
        with self._lock:
            due = sorted(
                name
                for name, state in self._restarts.items()
                if name in desired.containers and state.due_at is not None and state.due_at <= now
            )
        if due:
            with self.stack_lock(stack):
                failed = self._perform_restarts(stack, desired, due)
            if failed:
                with self._lock:
                    self._full_pass.add(stack)  # the retry re-reads everything
                raise _RetryableFailure(f"{len(failed)} restart(s) failed: " + "; ".join(failed[:3]))
        return self._next_restart_in(desired, now)

    def _restart_due(
        self, stack: str, desired: manifests.Desired, actual: observed.Observed, now: float, observed_at: float
    ) -> list[str]:
        due = self._due_restarts(desired, actual, now, dry_run=False, observed_at=observed_at)
        return self._perform_restarts(stack, desired, due)

    def _perform_restarts(self, stack: str, desired: manifests.Desired, names: Sequence[str]) -> list[str]:
        failed = []
        for name in names:
            with self._lock:
                state = self._restarts[name]
                reason = state.reason
            # The event carries the moment of the start *request*: the backoff is the controller's
            # to keep; what the engine then takes to start a process is the engine's latency.
            requested_at, requested_wall = self.clock.monotonic(), self.clock.wall()
            try:
                if reason == "unhealthy":
                    self.engine.stop_container(name, timeout=desired.containers[name].spec.stop_timeout)
                self.engine.start_container(name)
            except errors.NotFound:
                # Removed meanwhile (``docker rm``): its restart bookkeeping goes with it, and the
                # full pass this triggers creates the container again.
                with self._lock:
                    self._restarts.pop(name, None)
                    self._full_pass.add(stack)
                self.queue.add(stack)
                continue
            except errors.EngineError as exc:
                failed.append(f"restart container {name}: {exc}")
                with self._lock:
                    self._object_errors[f"container/{name}"] = str(exc)
                    self._error_total[f"container/{name}"] = self._error_total.get(f"container/{name}", 0) + 1
                continue
            with self._lock:
                state.restarts += 1
                state.attempt += 1
                state.due_at = None
                state.started_at = self.clock.monotonic()
                self._restart_total[name] = self._restart_total.get(name, 0) + 1
                self._health.pop(name, None)
                self._save_restarts()
                count = state.restarts
                waited = requested_at - state.exited_at if state.exited_at is not None else None
            waited_text = f" after {waited:.3f}s" if waited is not None else ""
            detail = f"backoff {state.delay or 0:.3f}s; {reason}, exit code {state.last_exit_code}"
            message = f"restart {count}{waited_text} ({detail})"
            self._report("restart", stack, name, message, at=requested_wall)
        return failed

    def _next_restart_in(self, desired: manifests.Desired, now: float) -> float | None:
        with self._lock:
            pending = [
                state.due_at - now
                for name, state in self._restarts.items()
                if name in desired.containers and state.due_at is not None
            ]
        return max(0.0, min(pending)) if pending else None

    # -- health checks ------------------------------------------------------------------------

    def _sync_health(self, desired: manifests.Desired, actual: observed.Observed, now: float) -> None:
        with self._lock:
            for name, container in desired.containers.items():
                check = container.spec.healthcheck
                present = actual.containers.get(name)
                if check is None or probe_argv(check) is None or present is None or present.state != "running":
                    self._health.pop(name, None)
                    continue
                state = self._health.get(name)
                if state is None or state.container_id != present.container_id:
                    self._health[name] = HealthState(present.container_id, now, next_probe_at=now + check.interval)
        self._notify()

    def _run_probes(self, now: float) -> float:
        """Start every due probe; seconds until the next one is due."""
        due: list[tuple[str, manifests.DesiredContainer, HealthState]] = []
        following = 3600.0
        with self._lock:
            for name, state in self._health.items():
                container = self._desired_container(name)
                if container is None or container.spec.healthcheck is None:
                    continue
                if state.probing:
                    continue
                if state.next_probe_at <= now:
                    state.probing = True
                    due.append((name, container, state))
                else:
                    following = min(following, state.next_probe_at - now)
        for name, container, state in due:
            if self._probe_pool is not None:
                self._probe_pool.submit(self._probe, name, container, state)
            else:
                self._probe(name, container, state)
        return following

    def _probe(self, name: str, container: manifests.DesiredContainer, state: HealthState) -> None:
        check = container.spec.healthcheck
        assert check is not None
        argv = probe_argv(check) or []
        try:
            result = self.engine.exec(name, argv, timeout=check.timeout)
            code, output = result.exit_code, (result.stdout + result.stderr).decode("utf-8", "replace")
        except errors.EngineError as exc:
            code, output = -1, str(exc)
        now = self.clock.monotonic()
        changed: str | None = None
        with self._lock:
            state.probing = False
            state.last_exit_code = code
            state.last_output = output[-4096:]
            state.next_probe_at = now + check.interval
            if self._health.get(name) is not state:
                return
            if code == 0:
                state.failing_streak = 0
                if state.status != "healthy":
                    state.status, changed = "healthy", "healthy"
            elif state.status == "starting" and now - state.started_at < check.start_period:
                pass  # failures during the start period do not count (Docker's rule)
            else:
                state.failing_streak += 1
                if state.failing_streak >= check.retries and state.status != "unhealthy":
                    state.status, changed = "unhealthy", "unhealthy"
        self._notify()  # the timer sleeps until the next due probe: this one's is new
        if changed is None:
            return
        self._report("health", container.stack, name, f"{changed} (probe exit {code})")
        # Dependents gated on this container's health, and onUnhealthy restarts, need a pass.
        if changed == "unhealthy" and container.spec.restart.on_unhealthy:
            self._schedule_restart(container, state.container_id, None, reason="unhealthy")
        self.enqueue(container.stack)

    def _health_of(self, present: observed.ObservedContainer) -> str | None:
        with self._lock:
            state = self._health.get(present.name)
            if state is not None and state.container_id == present.container_id:
                return state.status
        if present.health is not None:
            return present.health
        container = self._desired_container(present.name)
        if container is not None and container.spec.healthcheck is not None:
            return "starting"
        return None

    # -- status, events, logs, metrics (what the API serves) -----------------------------------

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def log_lines(self, name: str, *, follow: bool, tail: int | None) -> Iterator[dict[str, Any]]:
        for line in self.engine.logs(name, follow=follow, tail=tail):
            yield {"stream": line.stream, "time": line.time, "text": line.text}

    def status(self) -> dict[str, Any]:
        """Every object (state, health, exit code, restarts, backoff, last error, drift, hash)."""
        now = self.clock.monotonic()
        with self._lock:
            snapshot = self._snapshot
            actual = self._observed
            desired = snapshot.desired if snapshot else manifests.Desired.empty()
            rows: list[dict[str, Any]] = []
            drift = {key: reason for per_stack in self._drift.values() for key, reason in per_stack.items()}
            names = sorted(
                set(desired.containers) | {n for n, c in actual.containers.items() if c.stack in self._known_stacks()}
            )
            for name in names:
                wanted = desired.containers.get(name)
                present = actual.containers.get(name)
                restart = self._restarts.get(name)
                backoff: dict[str, Any] | None = None
                if restart is not None:
                    backoff = {
                        "attempt": restart.attempt,
                        "delay": restart.delay,
                        "nextRestartIn": None if restart.due_at is None else round(max(0.0, restart.due_at - now), 3),
                        "gaveUp": restart.gave_up,
                        "reason": restart.reason,
                    }
                running = present is not None and present.state == "running"
                owned = wanted is not None and restarts.controller_owns_restarts(
                    wanted.spec, engine_restarts=self.engine_restarts
                )
                # Restarts the engine made itself count too (Docker's policy; never both at once).
                restart_count = restart.restarts if restart else 0
                if present is not None and not owned:
                    restart_count += present.restart_count
                rows.append({
                    "kind": "Container", "name": name,
                    "stack": wanted.stack if wanted else (present.stack if present else None),
                    "state": present.state if present else "absent",
                    "health": self._health_of_locked(present) if present else None,
                    "exitCode": present.exit_code if present else None,
                    "restarts": restart_count,
                    "backoff": backoff,
                    "lastError": self._object_errors.get(f"container/{name}"),
                    "drift": drift.get(f"container/{name}", ""),
                    "specHash": present.spec_hash if present else (hashing.container_hash(wanted) if wanted else None),
                    "id": present.container_id[:12] if present else None,
                    "waiting": self._gate(wanted, actual) if wanted and not running else "",
                })  # fmt: skip
            for kind, wanted_map, present_map in (
                ("Network", desired.networks, actual.networks),
                ("Volume", desired.volumes, actual.volumes),
            ):
                known = self._known_stacks()
                mine = {n for n, o in present_map.items() if o.stack in known}
                for name in sorted(set(wanted_map) | mine):
                    present_obj = present_map.get(name)
                    rows.append({
                        "kind": kind, "name": name,
                        "stack": present_obj.stack if present_obj else wanted_map[name].stack,
                        "state": "present" if present_obj else "absent",
                        "lastError": self._object_errors.get(f"{kind.lower()}/{name}"),
                        "drift": drift.get(f"{kind.lower()}/{name}", ""),
                        "specHash": present_obj.spec_hash if present_obj else None,
                    })  # fmt: skip
            return {
                "engine": self.engine.name,
                "folder": str(self.folder.folder),
                "objects": rows,
                "files": [report.to_json() for report in (snapshot.files.values() if snapshot else ())],
                "stacks": {
                    stack: {
                        "error": self._stack_errors.get(stack),
                        "frozen": bool(snapshot and stack in snapshot.frozen),
                    }
                    for stack in sorted(self._known_stacks())
                },
                "queueDepth": self.queue.depth(),
                "passesInProgress": self.queue.processing(),
            }

    def _health_of_locked(self, present: observed.ObservedContainer) -> str | None:
        state = self._health.get(present.name)
        if state is not None and state.container_id == present.container_id:
            return state.status
        return present.health

    def events_since(self, sequence: int = 0) -> list[dict[str, Any]]:
        with self._event_cond:
            return [event.to_json() for event in self._events if event.sequence > sequence]

    def follow_events(self, stop: threading.Event, *, since: int = 0) -> Iterator[dict[str, Any]]:
        """Every event after ``since``, then new ones as they happen, until ``stop`` is set."""
        last = since
        while not stop.is_set():
            with self._event_cond:
                fresh = [event for event in self._events if event.sequence > last]
                if not fresh:
                    self._event_cond.wait(0.5)
                    continue
            for event in fresh:
                last = event.sequence
                yield event.to_json()

    def metric_samples(self) -> list[Sample]:
        samples = [
            Sample("reconciler_queue_depth", "gauge", "Keys ready to be processed.", (), float(self.queue.depth()))
        ]
        with self._lock:
            samples.append(Sample("reconciler_engine_events_total", "counter",
                                  "Engine events read (every owned container on the host, not only ours).", (),
                                  float(self._engine_events)))  # fmt: skip
            for key, (total, count) in sorted(self._durations.items()):
                labels = (("key", key),)
                samples.append(Sample("reconciler_reconcile_duration_seconds", "summary",
                                      "Time spent in reconcile passes.", labels, total))  # fmt: skip
                samples.append(Sample("reconciler_reconcile_duration_seconds_count", "summary",
                                      "Time spent in reconcile passes.", labels, float(count)))  # fmt: skip
            for name, count in sorted(self._restart_total.items()):
                samples.append(Sample("reconciler_restarts_total", "counter", "Restarts made by the controller.",
                                      (("object", f"container/{name}"),), float(count)))  # fmt: skip
            for key, count in sorted(self._error_total.items()):
                samples.append(Sample("reconciler_errors_total", "counter", "Failed steps per object.",
                                      (("object", key),), float(count)))  # fmt: skip
            for path, report in sorted((self._snapshot.files if self._snapshot else {}).items()):
                samples.append(Sample("reconciler_manifest_errors", "gauge", "Diagnostics per manifest file.",
                                      (("file", path),), float(len(report.errors))))  # fmt: skip
        return samples

    def _report(self, kind: str, stack: str, name: str, message: str, *, at: float | None = None) -> None:
        with self._lock:
            self._report_locked(kind, stack, name, message, at=at)

    def _report_locked(self, kind: str, stack: str, name: str, message: str, *, at: float | None = None) -> None:
        moment = self.clock.wall() if at is None else at
        event = ControllerEvent(next(self._sequence), moment, kind, stack, name, message)
        level = logging.WARNING if kind in ("step-failed", "manifest-error", "error", "gave-up") else logging.INFO
        log.log(level, "%s: %s", kind, message, extra={"stack": stack, "container": name, "event": kind})
        with self._event_cond:
            self._events.append(event)
            self._event_cond.notify_all()

    def _stack_error(self, key: str, message: str) -> None:
        with self._lock:
            self._stack_errors[key] = message
        self._report("error", key, "", message)

    # -- helpers --------------------------------------------------------------------------------

    def _current_snapshot(self) -> Snapshot:
        with self._lock:
            snapshot = self._snapshot
        if snapshot is None:
            snapshot = self.folder.load()
            with self._lock:
                self._snapshot = snapshot
        return snapshot

    def _desired_container(self, name: str) -> manifests.DesiredContainer | None:
        with self._lock:
            snapshot = self._snapshot
        if snapshot is None:
            return None
        return snapshot.desired.containers.get(name)

    def _watched_fingerprint(self) -> dict[str, tuple[int, int]]:
        """The manifests' and their env files' ``(mtime, size)``: the re-list compares these, so an
        edit of an env file (which no manifest event announces) is picked up too."""
        fingerprint = self.folder.fingerprint()
        with self._lock:
            snapshot = self._snapshot
        for container in snapshot.desired.containers.values() if snapshot else ():
            for env_file in container.spec.env_files:
                path = Path(container.source.file).parent / env_file
                with contextlib.suppress(OSError):
                    info = path.stat()
                    fingerprint[str(path)] = (info.st_mtime_ns, info.st_size)
        return fingerprint

    def _has_dependents(self, name: str, condition: str) -> bool:
        snapshot = self._current_snapshot()
        return any(
            dependency.name == name and dependency.condition == condition
            for container in snapshot.desired.containers.values()
            for dependency in container.spec.depends_on
        )

    def _known_stacks(self) -> set[str]:
        with self._lock:
            declared = set(self._snapshot.desired.stacks) if self._snapshot else set()
            return declared | self._managed

    def _in_stack(self, key: str, stack: str, actual: observed.Observed) -> bool:
        kind, _, name = key.partition("/")
        table: Mapping[str, observed.Owned] = {
            "container": actual.containers,
            "network": actual.networks,
            "volume": actual.volumes,
        }.get(kind, {})
        item = table.get(name)
        return item is None or item.stack == stack

    def _forget_stack(self, stack: str) -> None:
        if stack in self._managed:
            self._managed.discard(stack)
            self._write_managed()

    def _save_restarts(self) -> None:
        """Persist restart counts (caller holds the lock): a restarted controller must not give an
        ``on-failure`` container that already used its ``maxRetries`` a fresh set of retries."""
        if self._state_dir is None:
            return
        records = {
            name: {"containerId": s.container_id, "restarts": s.restarts, "attempt": s.attempt,
                   "gaveUp": s.gave_up, "lastExitCode": s.last_exit_code}
            for name, s in self._restarts.items()
        }  # fmt: skip
        self._write_state("restarts.json", records)

    def _load_restarts(self) -> dict[str, RestartState]:
        if self._state_dir is None:
            return {}
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            records = json.loads((self._state_dir / "restarts.json").read_text(encoding="utf-8"))
            return {
                str(name): RestartState(
                    container_id=str(r["containerId"]),
                    restarts=int(r["restarts"]),
                    attempt=int(r["attempt"]),
                    gave_up=bool(r["gaveUp"]),
                    last_exit_code=r.get("lastExitCode"),
                )
                for name, r in records.items()
            }
        return {}

    def _write_state(self, name: str, value: object) -> None:
        assert self._state_dir is not None
        try:
            self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            target = self._state_dir / name
            temporary = target.with_suffix(".tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(value, handle)
            os.replace(temporary, target)
        except OSError as exc:
            log.warning("cannot persist %s: %s", name, exc)

    def _read_managed(self) -> set[str]:
        if self._state_dir is None:
            return set()
        with contextlib.suppress(OSError, ValueError):
            value = json.loads((self._state_dir / "stacks.json").read_text(encoding="utf-8"))
            return {str(stack) for stack in value.get("stacks", [])}
        return set()

    def _write_managed(self) -> None:
        """Persist the stacks this folder manages: a file deleted while we were down still prunes."""
        if self._state_dir is not None:
            self._write_state("stacks.json", {"folder": str(self.folder.folder), "stacks": sorted(self._managed)})

    def _notify(self) -> None:
        with self._wake:
            self._wake_generation += 1
            self._wake.notify_all()

    # -- threads --------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the core on threads: workers, the timer, the engine-event reader."""
        self.queue.add(SCAN_KEY)
        self.queue.add(RESYNC_KEY)
        for index in range(max(1, self.workers)):
            self._spawn(f"worker-{index}", self._worker)
        self._spawn("timer", self._timer)
        self._spawn("events", self._event_reader)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Graceful shutdown: finish the passes in flight, leave every container running."""
        self._stop.set()
        self.queue.shutdown()
        self._notify()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._probe_pool is not None:
            self._probe_pool.shutdown(wait=False, cancel_futures=True)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"controller-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get()  # blocks without polling; shutdown() wakes it
            if key is None:
                continue
            self.process(key)

    def _timer(self) -> None:
        # No polling: the timer sleeps until the next re-list, resync or probe is due (idle CPU is
        # a target), and ``_notify`` wakes it when something new is scheduled. The generation
        # counter closes the window between computing the sleep and starting it.
        while not self._stop.is_set():
            with self._wake:
                generation = self._wake_generation
            delay = self.tick()
            with self._wake:
                if not self._stop.is_set() and generation == self._wake_generation:
                    self._wake.wait(delay)

    def _event_reader(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                for event in self.engine.events(stop=self._stop):
                    failures = 0
                    self.handle_event(event)
            except errors.EngineError as exc:
                log.warning("engine event stream failed: %s", exc)
            if self._stop.is_set():
                break
            # The stream ended (dockerd restarted, a socket error): reconnect with backoff, and
            # resync, because exits may have been missed meanwhile.
            failures += 1
            self._stop.wait(min(30.0, 0.1 * 2**failures))
            self.queue.add(RESYNC_KEY)

    # -- one-shot apply and plan for the API (``reconcile apply`` through the daemon) ------------

    def refresh_images(self, desired: manifests.Desired) -> list[str]:
        """Ask the registry about ``pullPolicy: Always`` images (as the CLI's plan/apply do), so
        that a moved tag shows up as "image changed". One warning per image that failed."""
        problems = []
        for image in sorted({c.spec.image for c in desired.containers.values() if c.spec.pull_policy == "Always"}):
            try:
                self.engine.pull_image(image, policy="Always")
            except errors.EngineError as exc:
                problems.append(f"image {image}: {exc}")
        return problems

    def plan_sources(
        self, sources: Sequence[tuple[str, str]], *, prune: bool = True, prune_volumes: bool = False
    ) -> tuple[plans.Plan, list[str]]:
        """``reconcile plan`` through the daemon: the plan, and warnings (images not refreshed)."""
        desired = manifests.load_sources(sources)
        warnings = self.refresh_images(desired)
        actual = self.engine.observe(images=planning.images_of(desired), stacks=desired.stacks)
        return planning.plan(desired, actual, planning.Options(prune=prune, prune_volumes=prune_volumes)), warnings

    def apply_sources(
        self,
        sources: Sequence[tuple[str, str]],
        *,
        prune: bool = True,
        prune_volumes: bool = False,
        parallelism: int = 4,
    ) -> tuple[plans.Plan, executing.Outcome, list[str]]:
        """``reconcile apply`` through the daemon, holding the stacks' locks (sorted) meanwhile."""
        desired = manifests.load_sources(sources)
        with contextlib.ExitStack() as held:
            for stack in sorted(desired.stacks):
                held.enter_context(self.stack_lock(stack))
            warnings = self.refresh_images(desired)
            actual = self.engine.observe(images=planning.images_of(desired), stacks=desired.stacks)
            plan = planning.plan(desired, actual, planning.Options(prune=prune, prune_volumes=prune_volumes))
            outcome = executing.execute(plan, self.engine, parallelism=parallelism)
        for stack in desired.stacks:
            if stack in self._known_stacks():
                self.enqueue(stack)
        return plan, outcome, warnings


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


class _RetryableFailure(errors.ReconcilerError):
    """Some steps of a pass failed: the pass is retried with the per-key backoff."""
