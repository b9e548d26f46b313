"""An in-memory engine: a test fake that keeps the Engine contract, for fast unit tests.

Not a user-facing engine: nothing runs. It exists so that the planner, executor and controller
can be tested in milliseconds, and it passes the same contract suite (``tests/contract``) as the
real engines, so that it cannot drift into a fake that lies (a fake client that accepts what
the real one refuses makes tests pass that production fails).

Test hooks:

* ``images``: the "registry": references that ``pull_image`` can resolve, to image ids.
* ``programs``: what a container's command does when started, as a :class:`Program` (the lines
  it prints, its exit code) keyed by the command's argv (entrypoint + command). A command not
  listed keeps running and prints nothing, like ``sleep``.
* ``fail(method, name, error)``: the next call of ``method`` on object ``name`` raises ``error``
  (failure injection for executor and controller tests); ``name="*"`` matches any object.
* ``calls``: every call made, as ``(method, name)``; ``mutating_calls()`` filters the ones that
  change state, so "applying twice makes zero mutating calls" is a one-line assertion.
* ``exit(name, code)``: the container's process "exits" with ``code`` (emits a ``die`` event).
* ``print(name, text, stream=...)``: the running container's process prints a line.
* ``clock``: a callable returning the time; tests may pass a fake clock.

It keeps every event it emitted, for ``history`` (the optional ``engine.RecordsHistory``).

It must stay free of third-party imports and of any knowledge of the planner or controller.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Literal

from reconciler import engine, errors, manifests, observed, plans

_MUTATING = frozenset(
    {
        "create_network", "remove_network", "create_volume", "remove_volume", "create_container",
        "start_container", "stop_container", "remove_container", "rename_container", "update_container",
    }
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Program:
    """What a fake container's main process does when started: prints ``output`` (stream, text)
    in order, then exits with ``exit_code``, or keeps running when ``exit_code`` is None."""

    output: tuple[tuple[Literal["stdout", "stderr"], str], ...] = ()
    exit_code: int | None = None


_RUNS_UNTIL_STOPPED = Program()


@dataclasses.dataclass(slots=True)
class _Container:
    container_id: str
    request: plans.ContainerRequest
    image_id: str
    state: observed.ContainerState = "created"
    exit_code: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    restart_count: int = 0
    resources: manifests.Resources = dataclasses.field(default_factory=manifests.Resources)
    logs: list[engine.LogLine] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class _Labelled:
    name: str
    labels: Mapping[str, str]
    object_id: str
    subnet: str | None = None
    gateway: str | None = None


class MemoryEngine:
    """See the module docstring. Thread-safe: the executor calls it from several threads."""

    name = "memory"

    def __init__(
        self,
        *,
        images: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        programs: Mapping[tuple[str, ...], Program] | None = None,
    ) -> None:
        self.registry: dict[str, str] = dict(images or {})
        self.programs: dict[tuple[str, ...], Program] = dict(programs or {})
        self.local_images: dict[str, str] = {}
        self.containers: dict[str, _Container] = {}
        self.networks: dict[str, _Labelled] = {}
        self.volumes: dict[str, _Labelled] = {}
        self.calls: list[tuple[str, str]] = []
        self.clock = clock
        self._failures: dict[tuple[str, str], list[BaseException]] = {}
        self._lock = threading.RLock()
        # Notified on every new log line and state change, for ``logs(follow=True)``.
        self._changed = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._subscribers: list[queue.Queue[engine.Event]] = []
        self._history: list[engine.Event] = []

    # -- test hooks ---------------------------------------------------------------------------

    def fail(self, method: str, name: str, error: BaseException) -> None:
        """Make the next ``method`` call on ``name`` (or ``"*"``) raise ``error``."""
        with self._lock:
            self._failures.setdefault((method, name), []).append(error)

    def mutating_calls(self) -> list[tuple[str, str]]:
        with self._lock:
            return [call for call in self.calls if call[0] in _MUTATING]

    def exit(self, name: str, code: int) -> None:
        """Simulate the container's main process exiting with ``code``."""
        with self._lock:
            self._exited(name, self._container(name), code)

    def print(self, name: str, text: str, *, stream: Literal["stdout", "stderr"] = "stdout") -> None:
        """Simulate the container's main process printing one line."""
        with self._lock:
            container = self._container(name)
            container.logs.append(engine.LogLine(stream=stream, time=self.clock(), text=text))
            self._changed.notify_all()

    # -- internals ----------------------------------------------------------------------------

    def _record(self, method: str, name: str) -> None:
        with self._lock:
            self.calls.append((method, name))
            for key in ((method, name), (method, "*")):
                pending = self._failures.get(key)
                if pending:
                    raise pending.pop(0)

    def _exited(self, name: str, container: _Container, code: int) -> None:
        container.state = "exited"
        container.exit_code = code
        container.finished_at = self.clock()
        self._emit("die", name, container, exit_code=code)
        self._changed.notify_all()

    def _program(self, spec: manifests.ContainerSpec) -> Program:
        argv = (*(spec.entrypoint or ()), *(spec.command or ()))
        return self.programs.get(argv, _RUNS_UNTIL_STOPPED)

    def _new_id(self, seed: str) -> str:
        return hashlib.sha256(f"{seed}-{next(self._ids)}".encode()).hexdigest()

    def _container(self, name: str) -> _Container:
        container = self.containers.get(name)
        if container is None:
            raise errors.NotFound(f"container {name} not found")
        return container

    def _emit(
        self, action: engine.EventAction, name: str, container: _Container, *, exit_code: int | None = None
    ) -> None:
        stack = container.request.labels.get(observed.LABEL_STACK, "")
        event = engine.Event(time=self.clock(), action=action, name=name, container_id=container.container_id,
                             exit_code=exit_code, stack=stack)  # fmt: skip
        self._history.append(event)
        for subscriber in list(self._subscribers):
            subscriber.put(event)

    @staticmethod
    def _same_owner(existing: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
        return all(existing.get(key) == wanted.get(key) for key in observed.OWNER_LABELS)

    # -- the Engine contract ------------------------------------------------------------------

    def observe(self, *, images: Sequence[str] = (), stacks: Collection[str] | None = None) -> observed.Observed:
        with self._lock:
            self.calls.append(("observe", "*"))
            containers = {
                name: observed.ObservedContainer(
                    name=name,
                    labels=dict(c.request.labels),
                    container_id=c.container_id,
                    image=c.request.spec.image,
                    image_id=c.image_id,
                    state=c.state,
                    exit_code=c.exit_code,
                    created_at=c.created_at,
                    started_at=c.started_at,
                    finished_at=c.finished_at,
                    restart_count=c.restart_count,
                    resources=observed.ObservedResources(
                        memory=c.resources.memory, cpus=c.resources.cpus, pids=c.resources.pids
                    ),
                    networks=tuple(sorted(n.name for n in c.request.spec.networks)),
                    volumes=tuple(
                        sorted(m.source for m in c.request.spec.mounts if isinstance(m, manifests.VolumeMount))
                    ),
                )
                for name, c in self.containers.items()
                if observed.LABEL_KIND in c.request.labels
            }
            networks = {
                name: observed.ObservedNetwork(
                    name=name,
                    labels=dict(n.labels),
                    network_id=n.object_id,
                    subnet=n.subnet,
                    gateway=n.gateway,
                )
                for name, n in self.networks.items()
                if observed.LABEL_KIND in n.labels
            }
            volumes = {
                name: observed.ObservedVolume(name=name, labels=dict(v.labels), mountpoint=f"/memory/{name}")
                for name, v in self.volumes.items()
                if observed.LABEL_KIND in v.labels
            }
            return observed.Observed(
                containers=containers,
                networks=networks,
                volumes=volumes,
                images={ref: self.local_images.get(ref) for ref in images},
            )

    def pull_image(self, image: str, *, policy: engine.PullPolicy = "IfNotPresent") -> str:
        self._record("pull_image", image)
        with self._lock:
            local = self.local_images.get(image)
            if policy == "Never" or (policy == "IfNotPresent" and local is not None):
                if local is None:
                    raise errors.NotFound(f"image {image} is not present and pullPolicy is Never")
                return local
            remote = self.registry.get(image)
            if remote is None:
                raise errors.NotFound(f"image {image}: manifest unknown")
            self.local_images[image] = remote
            return remote

    def create_network(self, request: plans.NetworkRequest) -> None:
        self._record("create_network", request.name)
        with self._lock:
            existing = self.networks.get(request.name)
            if existing is not None:
                if self._same_owner(existing.labels, request.labels):
                    return
                raise errors.Conflict(f"network {request.name} exists and is owned by someone else")
            self.networks[request.name] = _Labelled(
                request.name, dict(request.labels), self._new_id(request.name),
                subnet=request.spec.subnet, gateway=request.spec.gateway,
            )  # fmt: skip

    def remove_network(self, name: str) -> None:
        self._record("remove_network", name)
        with self._lock:
            users = sorted(
                c for c, v in self.containers.items() if any(n.name == name for n in v.request.spec.networks)
            )
            if users and name in self.networks:
                raise errors.RuntimeFailed(f"network {name} is in use by {', '.join(users)}")
            self.networks.pop(name, None)

    def create_volume(self, request: plans.VolumeRequest) -> None:
        self._record("create_volume", request.name)
        with self._lock:
            existing = self.volumes.get(request.name)
            if existing is not None:
                if self._same_owner(existing.labels, request.labels):
                    return
                raise errors.Conflict(f"volume {request.name} exists and is owned by someone else")
            self.volumes[request.name] = _Labelled(request.name, dict(request.labels), request.name)

    def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)
        with self._lock:
            users = sorted(
                c for c, v in self.containers.items()
                if any(isinstance(m, manifests.VolumeMount) and m.source == name for m in v.request.spec.mounts)
            )  # fmt: skip
            if users and name in self.volumes:
                raise errors.RuntimeFailed(f"volume {name} is in use by {', '.join(users)}")
            self.volumes.pop(name, None)

    def create_container(self, request: plans.ContainerRequest) -> str:
        self._record("create_container", request.name)
        with self._lock:
            existing = self.containers.get(request.name)
            if existing is not None:
                if self._same_owner(existing.request.labels, request.labels):
                    return existing.container_id
                raise errors.Conflict(f"container {request.name} exists and is owned by someone else")
            image_id = self.local_images.get(request.spec.image)
            if image_id is None:
                raise errors.NotFound(f"image {request.spec.image} is not present")
            for network in request.spec.networks:
                if network.name not in self.networks:
                    what = "external network" if network.external else "network"
                    raise errors.NotFound(f"{what} {network.name} not found")
            for mount in request.spec.mounts:
                if isinstance(mount, manifests.VolumeMount) and mount.source not in self.volumes:
                    what = "external volume" if mount.external else "volume"
                    raise errors.NotFound(f"{what} {mount.source} not found")
            container = _Container(self._new_id(request.name), request, image_id,
                                   resources=request.spec.resources, created_at=self.clock())  # fmt: skip
            self.containers[request.name] = container
            self._emit("create", request.name, container)
            return container.container_id

    def start_container(self, name: str) -> None:
        self._record("start_container", name)
        with self._lock:
            container = self._container(name)
            if container.state == "running":
                return
            if container.started_at is not None:
                container.restart_count += 1
            container.state = "running"
            container.exit_code = None
            container.started_at = self.clock()
            self._emit("start", name, container)
            program = self._program(container.request.spec)
            for stream, text in program.output:
                self.print(name, text, stream=stream)
            if program.exit_code is not None:
                self._exited(name, container, program.exit_code)

    def stop_container(self, name: str, *, timeout: float | None = None) -> None:
        self._record("stop_container", name)
        with self._lock:
            container = self._container(name)
            if container.state != "running":
                return
            # A process killed by SIGKILL after the timeout reports 137, as with Docker.
            self._exited(name, container, 137)
            self._emit("stop", name, container)

    def remove_container(self, name: str) -> None:
        self._record("remove_container", name)
        with self._lock:
            container = self.containers.pop(name, None)
            if container is not None:
                self._emit("destroy", name, container)
                self._changed.notify_all()

    def rename_container(self, name: str, new_name: str) -> None:
        self._record("rename_container", name)
        with self._lock:
            container = self._container(name)
            if new_name in self.containers:
                raise errors.Conflict(f"container {new_name} already exists")
            del self.containers[name]
            container.request = dataclasses.replace(container.request, name=new_name)
            self.containers[new_name] = container

    def update_container(self, name: str, resources: manifests.Resources) -> None:
        self._record("update_container", name)
        with self._lock:
            self._container(name).resources = resources

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[engine.LogLine]:
        with self._lock:
            container = self._container(name)
            lines = list(container.logs)
        yield from (lines[len(lines) - tail :] if tail is not None and tail < len(lines) else lines)
        position = len(lines)

        def running() -> bool:
            return container.state == "running" and self.containers.get(name) is container

        # Following: new lines as they are printed, until the container stops or is removed.
        while follow:
            with self._changed:
                self._changed.wait_for(lambda seen=position: len(container.logs) > seen or not running())  # type: ignore[misc]
                fresh, still = container.logs[position:], running()
            position += len(fresh)
            yield from fresh
            if not still:
                return

    def exec(
        self, name: str, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None
    ) -> engine.ExecResult:
        self._record("exec", name)
        with self._lock:
            if self._container(name).state != "running":
                raise errors.RuntimeFailed(f"container {name} is not running")
        # The fake runs nothing: ``true`` and ``false`` are enough for health-check tests, and
        # ``cat`` echoes its input (what the CLI's ``exec -i`` passes through).
        code = 1 if argv and argv[-1] == "false" else 0
        echoed = (stdin or b"") if argv and argv[-1] == "cat" else b""
        return engine.ExecResult(exit_code=code, stdout=echoed, stderr=b"")

    def stats(self, name: str) -> engine.Stats:
        self._record("stats", name)
        with self._lock:
            container = self._container(name)
            if container.state != "running":
                raise errors.RuntimeFailed(f"container {name} is not running")
            # The fake runs nothing: one process using a little memory, under its limit.
            limit = container.resources.memory
            return engine.Stats(
                cpu_seconds=0.0, memory_bytes=min(1 << 20, limit or 1 << 20), memory_limit=limit, pids=1
            )

    def events(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        subscriber: queue.Queue[engine.Event] = queue.Queue()
        with self._lock:
            self._subscribers.append(subscriber)
        try:
            while not stop.is_set():
                try:
                    yield subscriber.get(timeout=0.05)
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self._subscribers.remove(subscriber)

    def history(self, *, since: float = 0.0) -> list[engine.Event]:
        """Every event emitted at or after ``since``, oldest first (the fake forgets nothing)."""
        with self._lock:
            kept = [event for event in self._history if event.time >= since]
        # Stable: events of one moment (a fake clock's) keep the order they were emitted in.
        return sorted(kept, key=lambda event: event.time)

    def close(self) -> None:
        return None
