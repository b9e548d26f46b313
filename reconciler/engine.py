"""The ``Engine`` contract: the idempotent primitives every backend (native, docker, memory) offers.

The life of a container, as the rest of the project drives it
------------------------------------------------------------

1. **Observe.** ``observe(images=[...])`` returns one consistent :class:`observed.Observed`: every
   container, network and volume that carries the project's owner labels (``reconciler.stack``,
   ``reconciler.kind``, ``reconciler.hash``), and for each image reference asked about, the id of
   the local image (``None`` when absent). Objects without owner labels are invisible here; they
   surface as :class:`errors.Conflict` when the project tries to create an object of that name.
   ``stacks`` names the stacks the caller will act on: the containers of those stacks come with
   every detail, and the containers of *other* stacks are still all listed, possibly with less
   detail (name and owner labels are always there, so ownership conflicts are still seen), which
   keeps a no-op apply proportional to its own stacks.
2. **Pull.** ``pull_image(ref, policy=...)`` makes the image local and returns its id. ``Never``
   never touches the network: the local id when the image is present, ``NotFound`` when it is
   not (even when its registry is unreachable, and the image stays absent); ``IfNotPresent``
   returns at once when the image is local; ``Always`` asks the registry and re-pulls only when
   the tag moved. An unknown image is ``NotFound``; an unreachable registry is ``Unavailable``.
3. **Networks and volumes.** ``create_network`` / ``create_volume`` create the object with the
   request's labels. Creating an object that exists with the *same* owner labels is a no-op; one
   that exists with other labels (or none) raises ``Conflict``. ``remove_*`` of an absent object
   is a no-op. Removing a network that a running container is attached to raises
   ``RuntimeFailed`` and leaves the network as it was. Whether a created or exited container
   still holds its networks differs (Docker releases them when the container stops; the native
   engine and the memory fake keep them until it is removed), so callers remove containers before
   their networks.
4. **Create.** ``create_container(request)`` creates a container (not started) from the request's
   spec, env and labels, and returns its id. Same idempotency and ``Conflict`` rules as above.
   It fails with ``NotFound`` when the image, a network or a volume it names is missing.
5. **Start / stop.** ``start_container`` runs it (no-op when running). ``stop_container`` sends the
   spec's stop signal, waits ``timeout`` seconds, then kills (no-op when not running). A stopped
   container keeps its exit code, finish time and logs until it is removed.
6. **Update in place.** ``update_container(name, resources)`` changes memory, CPU and pids limits
   of a container without recreating it; the id stays the same.
7. **Rename.** ``rename_container(name, new_name)`` (used at the end of a create-first recreate).
8. **Inspect while running.** ``logs`` yields the lines the container printed, oldest first,
   each with its stream (``stdout``/``stderr``; lines of one stream keep their order, lines of
   different streams are ordered as the engine received them); ``tail=n`` yields only the last
   ``n`` (none for 0); ``follow`` goes on with new lines until the container stops, and ends at
   once after the last line of a container that is not running. ``exec`` runs a command inside
   the running container and returns its exit code and output; ``stdin`` (when not ``None``) is
   the command's standard input, read to its end (else it reads an empty input). ``events`` yields state changes
   of owned containers from the moment the engine has subscribed (which may be a little after the
   first ``next``; earlier changes are not promised, though an engine may report the containers
   it finds running as started) until ``stop`` is set, and then ends soon after: at
   least ``start`` when a container starts and ``die`` with its exit code when its process ends
   (whether it exited by itself or was stopped); engines may add others (``create``,
   ``destroy``, ``oom``, ``health_status`` ...);
   ``stats`` reads a running container's resource use once (CPU time, memory, processes) from
   its cgroup: ``NotFound`` for an unknown container, ``RuntimeFailed`` when it is not running.
9. **Remove.** ``remove_container`` stops (kill) and removes it, with its anonymous state;
   named volumes are never removed with a container.

Every method is safe to call again after a crash half-way: the planner re-observes and asks again.
All failures are the project's own errors (``errors.EngineError`` subclasses); a backend
translates its library's exceptions at its boundary and chains the original as ``__cause__``.

This module defines the contract only; it must not import any backend or third-party client.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

from reconciler import manifests, observed, vocabulary

if TYPE_CHECKING:  # the requests are annotations here; an observer needs not load the plans
    from reconciler import plans

# Re-exported: backends spell the pull-policy parameter as ``engine.PullPolicy``.
PullPolicy: TypeAlias = vocabulary.PullPolicy


@dataclasses.dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine:
    stream: Literal["stdout", "stderr"]
    time: float
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """One reading of a running container's resource use, as its cgroup counts it."""

    # CPU time (user + system) used since the container started.
    cpu_seconds: float
    # Memory in use, as ``docker stats`` shows it: the cgroup's usage minus its page cache.
    memory_bytes: int
    # The memory limit in force, or None when there is none.
    memory_limit: int | None
    # Processes (threads included) in the container.
    pids: int


EventAction: TypeAlias = Literal["create", "start", "die", "stop", "destroy", "oom", "health_status"]


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A container state change, as the engine saw it."""

    time: float
    action: EventAction
    name: str
    container_id: str
    exit_code: int | None = None
    detail: str = ""
    # The container's stack (its ``reconciler.stack`` owner label); empty for an unowned container.
    stack: str = ""


@runtime_checkable
class Engine(Protocol):
    """See the module docstring for the lifecycle every method fits into."""

    name: str

    def observe(self, *, images: Sequence[str] = (), stacks: Collection[str] | None = None) -> observed.Observed: ...

    def pull_image(self, image: str, *, policy: PullPolicy = "IfNotPresent") -> str: ...

    def create_network(self, request: plans.NetworkRequest) -> None: ...

    def remove_network(self, name: str) -> None: ...

    def create_volume(self, request: plans.VolumeRequest) -> None: ...

    def remove_volume(self, name: str) -> None: ...

    def create_container(self, request: plans.ContainerRequest) -> str: ...

    def start_container(self, name: str) -> None: ...

    def stop_container(self, name: str, *, timeout: float | None = None) -> None: ...

    def remove_container(self, name: str) -> None: ...

    def rename_container(self, name: str, new_name: str) -> None: ...

    def update_container(self, name: str, resources: manifests.Resources) -> None: ...

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[LogLine]: ...

    def exec(
        self, name: str, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None
    ) -> ExecResult: ...

    def stats(self, name: str) -> Stats: ...

    def events(self, *, stop: threading.Event) -> Iterator[Event]: ...

    def close(self) -> None: ...


@runtime_checkable
class AttachesTerminals(Protocol):
    """An optional capability: ``exec`` on a terminal, as ``docker exec -it``: ``argv`` runs in the
    container on a new terminal attached to the calling process's own (the user's keys go to the
    process as they are typed, its output comes back as it is written, window-size changes
    follow); returns the process's exit code once it ends. The caller's stdin must be a terminal."""

    def exec_attached(self, name: str, argv: Sequence[str]) -> int: ...


@runtime_checkable
class PreparesRuns(Protocol):
    """An optional capability: doing the slow part of a restart while the backoff runs.

    The controller, which alone decides whether an exited container will be started again (the
    restart policy), calls ``prepare_next_run(name)`` right after it schedules a restart. An engine
    that offers this does the work a start needs ahead of time (the native engine: a new keeper and
    ``runtime create``, so that the later ``start_container`` is only ``runtime start``). It returns
    at once; the work runs in the background and is best effort: on any failure the container is
    left as it was and ``start_container`` takes the ordinary path. A prepared run that nobody
    starts goes away by itself after a few seconds; ``stop_container``, ``update_container`` and
    ``remove_container`` discard it. Nothing else (``events`` in particular) starts runtime work.
    """

    def prepare_next_run(self, name: str) -> None: ...


@runtime_checkable
class RecordsHistory(Protocol):
    """An optional capability: the state changes the engine has kept, for ``reconcile events``
    without a daemon (the live ``events`` stream only promises what happens after it subscribed).

    ``history(since=t)`` returns the events of owned containers that happened at or after ``t``
    (epoch seconds), oldest first, each stamped with the moment it happened (never the moment it
    was read) and carrying its stack. It returns at once. What is kept differs by engine, and
    ``history`` promises only this much: for every owned container that exists, its ``create``;
    once it has run, the ``start`` of its last run; once that run has ended, its ``die`` with
    the exit code. The native engine knows no more than that (its container records); Docker
    keeps a buffer of recent events (removed containers' included); the memory fake keeps all.
    """

    def history(self, *, since: float = 0.0) -> list[Event]: ...
