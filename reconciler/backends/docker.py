"""The Docker backend: the ``Engine`` contract on a real dockerd, through the docker SDK for Python.

Where it sits: the executor and the CLI call these methods; each one is one idempotent primitive
of ``reconciler.engine`` and makes as few Engine API calls as it can, because a no-op apply is
measured (``observe`` is one container list, one inspect per owned container run concurrently,
one network list, one volume list and one image inspect per reference asked about; with the
optional ``stacks=`` only the containers of those stacks are inspected).

While someone consumes :meth:`DockerEngine.events` (the controller always does), the container
list and the inspects are kept between observes, informer-style: an inspect stays valid until
dockerd reports an event for that container, its listed state changes, or this engine changes a
container itself; the list until any container event, or for 30 s at most. A long-running
daemon's no-op apply then costs a network list, a volume list and the image inspects. Without
a live event stream (the embedded CLI) nothing is cached: there would be no one to say when an
inspect went stale (a hand-made ``docker update`` changes nothing the list shows).

How the manifest maps onto Docker:

* The container's config is built here as the Engine API's own JSON (``Config`` + ``HostConfig``
  + ``NetworkingConfig``) and sent with ``create_container_from_config``: the SDK's keyword
  helpers cannot express every field (tmpfs mode, a pids limit in an update ...) and building
  the JSON once keeps the mapping in one readable function, :func:`container_config`.
* Restart policies map to Docker's own, so containers keep restarting when no controller runs;
  a manifest with a custom ``backoff`` or ``onUnhealthy`` leaves Docker's policy at ``no``
  because then the controller owns the restarts (two restarters would fight).
* Resources (memory, CPUs, pids) are changed in place with Docker's container update, lifting
  a limit included (see :func:`resources_config` for how, since Docker's update has no "unset").
* Ownership is decided by the ``reconciler.*`` labels, never by name: creating an object whose
  name is taken by an object with other owner labels raises ``errors.Conflict``; with the same
  owner labels it is a no-op.

Errors: every docker SDK, requests and socket error is translated at this boundary into the
project's classes (daemon unreachable → ``Unavailable``; 404 → ``NotFound``; name conflicts →
``Conflict``; anything else the daemon refuses → ``RuntimeFailed`` carrying its message), with the
original chained as ``__cause__``. Messages are one line and never contain registry credentials
(the SDK reads those from the Docker config file and sends them in a header only).

This is the only module that imports the docker SDK. It must not import the planner, executor,
controller, CLI or another backend.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import functools
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import docker
import docker.errors
import requests.exceptions

from reconciler import engine, errors, manifests, observed, plans

_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# What "no memory limit" is written as in an update (Docker refuses -1 and ignores 0 there); the
# kernel caps it at its own maximum. Read back as None. 2**62 bytes is far beyond any real host.
_UNLIMITED_MEMORY = 1 << 62
# CFS period for CPU limits (Docker's default, 100 ms): ``cpus`` maps to a quota over it.
_CPU_PERIOD = 100_000
# Docker's zero time, used for "never started" / "never finished".
_ZERO_TIME_PREFIX = "0001-01-01"
# Header of one frame of a multiplexed (non-TTY) log stream: stream id, 3 zero bytes, size.
_FRAME_HEADER = struct.Struct(">BxxxL")
# Events of labelled containers that the Engine contract names; others (exec_*, kill ...) are noise.
_EVENT_ACTIONS: frozenset[str] = frozenset({"create", "start", "die", "stop", "destroy", "oom", "health_status"})
# What the event subscription asks dockerd for: the contract's actions, plus the ones that make a
# cached inspect stale. Filtering on the daemon's side matters: each Docker health check is two
# exec_* events, which would otherwise be sent, decoded and dropped (dockerd matches
# ``health_status`` as a prefix of ``health_status: healthy``).
_SUBSCRIBED_ACTIONS: tuple[str, ...] = (
    *sorted(_EVENT_ACTIONS), "kill", "pause", "rename", "restart", "unpause", "update",
)  # fmt: skip
# How many container inspects ``observe`` runs at once. The client side (requests, under the GIL)
# is most of an inspect's cost, so a few threads overlap the waiting and more only contend.
_INSPECT_CONCURRENCY = 4
# The Engine API filter for the objects this project owns (they all carry the kind label).
_OWNED = {"label": [observed.LABEL_KIND]}
# Longest time a cached container list is trusted, events or not (see DockerEngine._list_owned).
_LIST_MAX_AGE = 30.0
# Connections kept to the daemon: enough for the executor's widest parallelism, so that threads
# do not open and discard connections (the SDK's default pool holds ten).
_MAX_CONNECTIONS = 64


# ---------------------------------------------------------------------------------------------
# Error translation
# ---------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _daemon_message(exc: docker.errors.APIError) -> str:
    """The daemon's own words (its JSON ``message``), without the SDK's URL and status prefix."""
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return _one_line(explanation or str(exc))


class _Translate:
    """Context manager turning library errors into the project's errors, with a subject prefix.

    ``conflict`` says whether a 409 means "name taken" here (create, rename) or "state does not
    allow it" (exec on a stopped container, removing a volume in use), which is ``RuntimeFailed``.
    """

    def __init__(self, owner: DockerEngine, subject: str, *, conflict: bool = False) -> None:
        self.owner = owner
        self.subject = subject
        self.conflict = conflict

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, errors.ReconcilerError):
            return
        translated = self.owner.translate(exc, self.subject, conflict=self.conflict)
        if translated is not None:
            raise translated from exc


# ---------------------------------------------------------------------------------------------
# Mapping the manifest onto the Engine API
# ---------------------------------------------------------------------------------------------


def _nanoseconds(seconds: float) -> int:
    return round(seconds * 1e9)


def restart_policy(restart: manifests.Restart) -> dict[str, Any]:
    """Docker's restart policy for a manifest's, or ``no`` when the controller owns restarts."""
    if restart.backoff is not None or restart.on_unhealthy:
        return {"Name": "no", "MaximumRetryCount": 0}
    if restart.policy == "on-failure":
        return {"Name": "on-failure", "MaximumRetryCount": restart.max_retries or 0}
    return {"Name": restart.policy, "MaximumRetryCount": 0}


def resources_config(resources: manifests.Resources, *, for_update: bool = False) -> dict[str, Any]:
    """HostConfig resource fields. Swap equals memory, so a limit is a limit (no swap on top).

    At creation an absent limit is simply left out. An update must also be able to *lift* a
    limit, and Docker's update treats ``0`` as "unchanged" and rejects ``-1`` for memory, so:

    * memory: lifted by setting :data:`_UNLIMITED_MEMORY` (which observe reads back as None);
    * CPUs: a CFS quota over :data:`_CPU_PERIOD` rather than ``NanoCpus``, because a quota of
      ``-1`` lifts the limit in place while ``NanoCpus`` cannot be unset once set;
    * pids: ``-1`` is Docker's "unlimited".
    """
    config: dict[str, Any] = {}
    if resources.memory is not None:
        config["Memory"] = config["MemorySwap"] = resources.memory
    elif for_update:
        config["Memory"] = config["MemorySwap"] = _UNLIMITED_MEMORY
    if resources.cpus is not None:
        config["CpuPeriod"] = _CPU_PERIOD
        config["CpuQuota"] = round(resources.cpus * _CPU_PERIOD)
    elif for_update:
        config["CpuQuota"] = -1
    if resources.pids is not None:
        config["PidsLimit"] = resources.pids
    elif for_update:
        config["PidsLimit"] = -1
    return config


def _mount(mount: manifests.VolumeMount | manifests.BindMount | manifests.TmpfsMount) -> dict[str, Any]:
    if isinstance(mount, manifests.TmpfsMount):
        options: dict[str, Any] = {}
        if mount.size is not None:
            options["SizeBytes"] = mount.size
        if mount.mode is not None:
            options["Mode"] = mount.mode
        result: dict[str, Any] = {"Type": "tmpfs", "Target": mount.target}
        if options:
            result["TmpfsOptions"] = options
        return result
    kind = "volume" if isinstance(mount, manifests.VolumeMount) else "bind"
    return {"Type": kind, "Source": mount.source, "Target": mount.target, "ReadOnly": mount.read_only}


def _endpoint(attachment: manifests.NetworkAttachment) -> dict[str, Any]:
    endpoint: dict[str, Any] = {}
    if attachment.aliases:
        endpoint["Aliases"] = list(attachment.aliases)
    if attachment.ipv4_address:
        endpoint["IPAMConfig"] = {"IPv4Address": attachment.ipv4_address}
    return endpoint


def container_config(request: plans.ContainerRequest) -> dict[str, Any]:
    """The Engine API body of ``POST /containers/create`` for a request (first network only).

    Engine API 1.41 (Debian's dockerd 20.10) accepts a single network at creation; the others are
    connected by :meth:`DockerEngine.create_container` before the container is started.
    """
    spec = request.spec
    host: dict[str, Any] = {
        "RestartPolicy": restart_policy(spec.restart),
        "Mounts": [_mount(mount) for mount in spec.mounts],
        "ReadonlyRootfs": spec.read_only_rootfs,
        "Privileged": spec.privileged,
        **resources_config(spec.resources),
    }
    if spec.cap_add:
        host["CapAdd"] = list(spec.cap_add)
    if spec.cap_drop:
        host["CapDrop"] = list(spec.cap_drop)
    if spec.volumes_from:
        host["VolumesFrom"] = list(spec.volumes_from)
    if spec.logging.max_size:
        # The json-file driver named explicitly: its options mean nothing to another default driver.
        host["LogConfig"] = {
            "Type": "json-file",
            "Config": {"max-size": str(spec.logging.max_size), "max-file": str(spec.logging.max_files)},
        }
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in sorted(request.env.items())],
        "Labels": dict(request.labels),
        "StopSignal": spec.stop_signal,
        # Docker counts whole seconds; rounding up never cuts a graceful stop short.
        "StopTimeout": math.ceil(spec.stop_timeout),
    }
    if spec.entrypoint is not None:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.command is not None:
        config["Cmd"] = list(spec.command)
    if spec.working_dir is not None:
        config["WorkingDir"] = spec.working_dir
    if spec.user is not None:
        config["User"] = spec.user
    if spec.hostname is not None:
        config["Hostname"] = spec.hostname
    if spec.healthcheck is not None:
        check = spec.healthcheck
        config["Healthcheck"] = {
            "Test": list(check.test),
            "Interval": _nanoseconds(check.interval),
            "Timeout": _nanoseconds(check.timeout),
            "Retries": check.retries,
            "StartPeriod": _nanoseconds(check.start_period),
        }
    if spec.ports:
        exposed: dict[str, dict[str, Any]] = {}
        bindings: dict[str, list[dict[str, str]]] = {}
        for port in spec.ports:
            key = f"{port.container_port}/{port.protocol}"
            exposed[key] = {}
            bindings.setdefault(key, []).append(
                {"HostIp": port.host_ip or "", "HostPort": str(port.host_port) if port.host_port else ""}
            )
        config["ExposedPorts"] = exposed
        host["PortBindings"] = bindings
    if spec.networks:
        first = spec.networks[0]
        host["NetworkMode"] = first.name
        config["NetworkingConfig"] = {"EndpointsConfig": {first.name: _endpoint(first)}}
    else:
        host["NetworkMode"] = spec.network_mode
    config["HostConfig"] = host
    return config


# ---------------------------------------------------------------------------------------------
# Reading Docker's answers back
# ---------------------------------------------------------------------------------------------


def _timestamp(text: str | None) -> float | None:
    """RFC 3339 with nanoseconds (``2026-11-28T05:31:31.159706382Z``) → epoch seconds."""
    if not text or text.startswith(_ZERO_TIME_PREFIX):
        return None
    head, _, rest = text.partition(".")
    fraction = ""
    zone = "+00:00"
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, zone_text = rest[:digits], rest[digits:]
        zone = "+00:00" if zone_text in ("Z", "") else zone_text
    elif head.endswith("Z"):
        head = head[:-1]
    else:
        # "2026-11-28T05:31:31+02:00": the zone follows the seconds directly.
        for sign in ("+", "-"):
            position = head.rfind(sign, 11)
            if position > 0:
                head, zone = head[:position], head[position:]
                break
    moment = datetime.datetime.fromisoformat(head + zone)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


_STATES: dict[str, observed.ContainerState] = {
    "created": "created",
    "running": "running",
    "paused": "paused",
    "restarting": "restarting",
    "exited": "exited",
    "dead": "dead",
    # A container being removed is on its way out; the planner treats it as not running.
    "removing": "exited",
}


def observed_container(inspected: Mapping[str, Any]) -> observed.ObservedContainer:
    """An ``ObservedContainer`` from ``GET /containers/{id}/json``."""
    state = inspected.get("State") or {}
    config = inspected.get("Config") or {}
    host = inspected.get("HostConfig") or {}
    settings = inspected.get("NetworkSettings") or {}
    status = _STATES.get(str(state.get("Status", "")), "dead")
    finished_at = _timestamp(state.get("FinishedAt"))
    exit_code: int | None = None
    if status in ("exited", "dead") and finished_at is not None:
        exit_code = int(state.get("ExitCode", 0))
    health = (state.get("Health") or {}).get("Status")
    memory = host.get("Memory") or 0
    nano_cpus = host.get("NanoCpus") or 0
    cpu_quota = host.get("CpuQuota") or 0
    cpu_period = host.get("CpuPeriod") or 0
    # Containers made by others (or older versions) may carry NanoCpus; ours carry a quota.
    cpus: float | None = nano_cpus / 1e9 if nano_cpus > 0 else None
    if cpus is None and cpu_quota > 0:
        cpus = cpu_quota / (cpu_period or _CPU_PERIOD)
    pids = host.get("PidsLimit") or 0
    volumes = sorted(
        str(mount["Source"])
        for mount in host.get("Mounts") or ()
        if mount.get("Type") == "volume" and mount.get("Source")
    )
    return observed.ObservedContainer(
        name=str(inspected.get("Name", "")).lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        container_id=str(inspected["Id"]),
        image=str(config.get("Image", "")),
        image_id=str(inspected.get("Image", "")),
        state=status,
        exit_code=exit_code,
        started_at=_timestamp(state.get("StartedAt")),
        finished_at=finished_at,
        restart_count=int(inspected.get("RestartCount") or 0),
        health=str(health) if health and health != "none" else None,
        oom_killed=bool(state.get("OOMKilled")),
        resources=observed.ObservedResources(
            memory=memory if 0 < memory < _UNLIMITED_MEMORY else None,
            cpus=cpus,
            pids=pids if pids > 0 else None,
        ),
        networks=tuple(sorted((settings.get("Networks") or {}).keys())),
        volumes=tuple(volumes),
    )


def _listed_container(listed: Mapping[str, Any]) -> observed.ObservedContainer:
    """An ``ObservedContainer`` from one entry of ``GET /containers/json`` (no inspect): enough to
    know who owns it and what it holds, not its limits, times or restart count."""
    names = [str(name).lstrip("/") for name in listed.get("Names") or ()]
    # Links add "other/alias" names; the container's own name has no slash.
    name = next((n for n in names if "/" not in n), names[0] if names else str(listed["Id"]))
    settings = listed.get("NetworkSettings") or {}
    return observed.ObservedContainer(
        name=name,
        labels=dict(listed.get("Labels") or {}),
        container_id=str(listed["Id"]),
        image=str(listed.get("Image", "")),
        image_id=str(listed.get("ImageID", "")),
        state=_STATES.get(str(listed.get("State", "")), "dead"),
        networks=tuple(sorted((settings.get("Networks") or {}).keys())),
        volumes=tuple(
            sorted(
                str(mount["Name"])
                for mount in listed.get("Mounts") or ()
                if mount.get("Type") == "volume" and mount.get("Name")
            )
        ),
    )


def _observed_network(listed: Mapping[str, Any]) -> observed.ObservedNetwork:
    ipam = (listed.get("IPAM") or {}).get("Config") or []
    first = ipam[0] if ipam else {}
    return observed.ObservedNetwork(
        name=str(listed["Name"]),
        labels=dict(listed.get("Labels") or {}),
        network_id=str(listed["Id"]),
        subnet=first.get("Subnet") or None,
        gateway=first.get("Gateway") or None,
    )


def _same_owner(existing: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    existing = existing or {}
    return all(existing.get(key) == wanted.get(key) for key in observed.OWNER_LABELS)


def _owner_text(labels: Mapping[str, str] | None) -> str:
    stack = (labels or {}).get(observed.LABEL_STACK)
    return f"stack {stack!r}" if stack else "no reconciler stack (created outside reconciler)"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _changes_containers(
    method: Callable[Concatenate[DockerEngine, _P], _R],
) -> Callable[Concatenate[DockerEngine, _P], _R]:
    """Forget cached inspects once ``method`` has changed a container (whether or not it failed)."""

    @functools.wraps(method)
    def changing(self: DockerEngine, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        finally:
            self._forget()

    return changing


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


class DockerEngine:
    """The ``Engine`` contract on dockerd. Thread-safe: the executor calls it from a pool."""

    name = "docker"

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api
        if str(self.api.base_url).startswith("http+docker://localhost"):
            # A unix socket never goes through an HTTP proxy; skipping requests' per-call look at
            # the proxy environment saves about a millisecond per call (observe makes dozens).
            self.api.trust_env = False
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # The inspect cache (see the module docstring): container id -> (listed state, inspect).
        # Trusted only while ``_streams`` (live event subscriptions) is above zero; ``_epoch``
        # counts invalidations, so that an inspect racing an event is not stored.
        self._cache_lock = threading.Lock()
        self._inspected: dict[str, tuple[str, dict[str, Any]]] = {}
        # The owned-container list, kept the same way (any container event drops it), and re-read
        # at least every _LIST_MAX_AGE seconds whatever the events say (the informer's re-list).
        self._listed: list[dict[str, Any]] | None = None
        self._listed_at = 0.0
        self._streams = 0
        self._epoch = 0

    @classmethod
    def from_env(cls, *, timeout: float = 60.0) -> DockerEngine:
        """A client as the ``docker`` CLI would make it: ``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
        ``DOCKER_CERT_PATH``, and registry credentials from the Docker config file.

        The API version is negotiated with the daemon (one ``/version`` call), so both Debian's
        dockerd 20.10 (API 1.41) and newer daemons are spoken to in their own version.
        """
        where = os.environ.get("DOCKER_HOST") or _DEFAULT_DOCKER_HOST
        hint = " (is dockerd running? is DOCKER_HOST right?)"
        # A socket file that is not there needs no connection attempt to know (and the SDK's
        # failed unix connect leaves its socket object to the garbage collector).
        if where.startswith("unix://") and not os.path.exists(where.removeprefix("unix://")):
            raise errors.Unavailable(f"Docker daemon unreachable at {where}: no such socket{hint}")
        try:
            client = docker.from_env(version="auto", timeout=math.ceil(timeout), max_pool_size=_MAX_CONNECTIONS)
        except docker.errors.DockerException as exc:
            raise errors.Unavailable(f"Docker daemon unreachable at {where}: {_unreachable_reason(exc)}{hint}") from exc
        return cls(client)

    # -- helpers ------------------------------------------------------------------------------

    def translate(self, exc: BaseException, subject: str, *, conflict: bool = False) -> errors.EngineError | None:
        """The project's error for a library error, or None when ``exc`` is not one of those."""
        if isinstance(exc, docker.errors.APIError):
            message = _daemon_message(exc)
            status = exc.status_code
            if status == 404:
                return errors.NotFound(f"{subject}: {message}")
            if status == 409 and conflict:
                return errors.Conflict(f"{subject}: {message}")
            if status in (502, 503, 504):
                return errors.Unavailable(f"{subject}: Docker daemon unavailable: {message}")
            return errors.RuntimeFailed(f"{subject}: Docker refused", stderr=message)
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError):
            return errors.Unavailable(
                f"{subject}: Docker daemon unreachable at {self.api.base_url}: {_unreachable_reason(exc)}"
            )
        if isinstance(exc, docker.errors.DockerException):
            return errors.RuntimeFailed(f"{subject}: {_one_line(str(exc))}")
        return None

    def _on(self, subject: str, *, conflict: bool = False) -> _Translate:
        return _Translate(self, subject, conflict=conflict)

    def _parallel(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=_INSPECT_CONCURRENCY, thread_name_prefix="docker-observe"
                )
            return self._pool

    def _inspect_container(self, name: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self.api.inspect_container(name))
        except docker.errors.NotFound:
            return None

    def _forget(self, container_id: str | None = None) -> None:
        """Drop cached inspects: one container's (an event named it) or all (we changed something)."""
        with self._cache_lock:
            self._epoch += 1
            self._listed = None
            if container_id is None:
                self._inspected.clear()
            else:
                self._inspected.pop(container_id, None)

    def _list_owned(self) -> list[dict[str, Any]]:
        """The owned containers (``GET /containers/json``), or the cached list while it is valid."""
        now = time.monotonic()
        with self._cache_lock:
            fresh = self._streams and self._listed is not None and now - self._listed_at < _LIST_MAX_AGE
            cached = self._listed if fresh else None
            epoch = self._epoch
        if cached is not None:
            return cached
        listed = cast(list[dict[str, Any]], self.api.containers(all=True, filters=_OWNED))
        with self._cache_lock:
            if self._streams and self._epoch == epoch:
                self._listed, self._listed_at = listed, now
        return listed

    def _inspect_listed(self, listed: Mapping[str, Any]) -> dict[str, Any] | None:
        """The inspect of a listed container: the cached one while it is still valid, else fresh."""
        container_id, state = str(listed["Id"]), str(listed.get("State", ""))
        with self._cache_lock:
            cached = self._inspected.get(container_id) if self._streams else None
            epoch = self._epoch
        if cached is not None and cached[0] == state:
            return cached[1]
        inspected = self._inspect_container(container_id)
        with self._cache_lock:
            if inspected is not None and self._streams and self._epoch == epoch:
                self._inspected[container_id] = (state, inspected)
        return inspected

    def _image_id(self, image: str) -> str | None:
        try:
            return str(self.api.inspect_image(image)["Id"])
        except docker.errors.NotFound:
            return None

    # -- observe ------------------------------------------------------------------------------

    def observe(self, *, images: Sequence[str] = (), stacks: Collection[str] | None = None) -> observed.Observed:
        """Every owned object, and the local image id of each reference in ``images``.

        ``stacks`` (beyond the Engine protocol, optional) names the stacks a caller will act on:
        containers of other stacks are then reported from the container list alone (owner labels,
        id, image, state, networks, volumes; no limits, times or restart count) instead of being
        inspected, so that a no-op apply costs in proportion to its stacks, not to the host.
        """
        with self._on("observe"):
            pool = self._parallel()
            # Networks, volumes and images are read while the containers are listed and inspected.
            network_list = pool.submit(self.api.networks, filters=_OWNED)
            volume_answer = pool.submit(self.api.volumes, filters=_OWNED)
            image_ids = {ref: pool.submit(self._image_id, ref) for ref in dict.fromkeys(images)}
            listed = self._list_owned()
            in_scope: list[Mapping[str, Any]] = []
            outside: list[observed.ObservedContainer] = []
            for item in listed:
                stack = (item.get("Labels") or {}).get(observed.LABEL_STACK)
                if stacks is None or stack in stacks:
                    in_scope.append(item)
                else:
                    outside.append(_listed_container(item))
            # The list lacks limits, times and restart counts; inspecting is the only source, so
            # the inspects run concurrently (or come from the cache, see the module docstring).
            inspects = [pool.submit(self._inspect_listed, item) for item in in_scope]
            networks = {str(item["Name"]): _observed_network(item) for item in network_list.result()}
            volume_list = volume_answer.result().get("Volumes") or []
            volumes = {
                str(item["Name"]): observed.ObservedVolume(
                    name=str(item["Name"]),
                    labels=dict(item.get("Labels") or {}),
                    mountpoint=item.get("Mountpoint") or None,
                )
                for item in volume_list
            }
            containers: dict[str, observed.ObservedContainer] = {c.name: c for c in outside}
            for future in inspects:
                inspected = future.result()
                if inspected is None:  # removed between the list and the inspect
                    continue
                container = observed_container(inspected)
                containers[container.name] = container
            with self._cache_lock:  # containers removed since: their inspects are of no more use
                for gone in set(self._inspected) - {str(item["Id"]) for item in listed}:
                    del self._inspected[gone]
            resolved = {ref: future.result() for ref, future in image_ids.items()}
        return observed.Observed(
            containers=dict(sorted(containers.items())),
            networks=dict(sorted(networks.items())),
            volumes=dict(sorted(volumes.items())),
            images=resolved,
        )

    # -- images -------------------------------------------------------------------------------

    def pull_image(self, image: str, *, policy: engine.PullPolicy = "IfNotPresent") -> str:
        subject = f"image {image}"
        with self._on(subject):
            local = self._image_id(image)
            if policy == "Never":
                if local is None:
                    raise errors.NotFound(f"{subject}: not present locally and pullPolicy is Never")
                return local
            if policy == "IfNotPresent" and local is not None:
                return local
            # Docker pulls only the layers that changed; the progress stream carries errors
            # that arrive after the response started (a 200 with {"error": ...} inside).
            try:
                for progress in self.api.pull(image, stream=True, decode=True):
                    if isinstance(progress, dict) and progress.get("error"):
                        raise _pull_error(subject, str(progress["error"]))
            except docker.errors.APIError as exc:
                # The daemon answers a failed pull with 404 or 500 whatever the cause; its words
                # tell a missing image from an unreachable registry.
                if exc.status_code in (404, 500):
                    raise _pull_error(subject, _daemon_message(exc)) from exc
                raise
            pulled = self._image_id(image)
        if pulled is None:
            raise errors.NotFound(f"{subject}: pull reported success but the image is not present")
        return pulled

    # -- networks -----------------------------------------------------------------------------

    def create_network(self, request: plans.NetworkRequest) -> None:
        subject = f"network {request.name}"
        spec = request.spec
        ipam = None
        if spec.subnet is not None:
            pool: dict[str, str] = {"Subnet": spec.subnet}
            if spec.gateway is not None:
                pool["Gateway"] = spec.gateway
            ipam = {"Driver": "default", "Config": [pool], "Options": {}}
        try:
            with self._on(subject, conflict=True):
                self.api.create_network(
                    request.name,
                    driver=spec.driver,
                    options=dict(spec.options) or None,
                    ipam=ipam,
                    # Docker allows two networks of one name unless asked not to.
                    check_duplicate=True,
                    internal=spec.internal,
                    labels=dict(request.labels),
                )
        except errors.Conflict:
            with self._on(subject):
                existing = self.api.inspect_network(request.name)
            if not _same_owner(existing.get("Labels"), request.labels):
                raise errors.Conflict(
                    f"{subject} already exists and belongs to {_owner_text(existing.get('Labels'))}"
                ) from None

    def remove_network(self, name: str) -> None:
        subject = f"network {name}"
        with contextlib.suppress(errors.NotFound), self._on(subject):
            self.api.remove_network(name)

    # -- volumes ------------------------------------------------------------------------------

    def create_volume(self, request: plans.VolumeRequest) -> None:
        subject = f"volume {request.name}"
        # Docker's volume create silently returns an existing volume whatever its labels, so
        # ownership is checked by inspecting first.
        with self._on(subject):
            try:
                existing = self.api.inspect_volume(request.name)
            except docker.errors.NotFound:
                existing = None
            if existing is not None:
                if not _same_owner(existing.get("Labels"), request.labels):
                    raise errors.Conflict(
                        f"{subject} already exists and belongs to {_owner_text(existing.get('Labels'))}"
                    )
                return
            self.api.create_volume(
                request.name,
                driver=request.spec.driver,
                driver_opts=dict(request.spec.options) or None,
                labels=dict(request.labels),
            )

    def remove_volume(self, name: str) -> None:
        subject = f"volume {name}"
        with contextlib.suppress(errors.NotFound), self._on(subject):
            self.api.remove_volume(name)

    # -- containers ---------------------------------------------------------------------------

    @_changes_containers
    def create_container(self, request: plans.ContainerRequest) -> str:
        subject = f"container {request.name}"
        spec = request.spec
        with self._on(subject):
            # Docker would create a missing named volume on the fly, and only notices a missing
            # network at start; the contract says NotFound at creation, so both are checked first.
            for mount in spec.mounts:
                if isinstance(mount, manifests.VolumeMount):
                    try:
                        self.api.inspect_volume(mount.source)
                    except docker.errors.NotFound:
                        raise errors.NotFound(f"{subject}: volume {mount.source} not found") from None
            for attachment in spec.networks:
                try:
                    self.api.inspect_network(attachment.name)
                except docker.errors.NotFound:
                    raise errors.NotFound(f"{subject}: network {attachment.name} not found") from None
        try:
            with self._on(subject, conflict=True):
                created = self.api.create_container_from_config(container_config(request), name=request.name)
        except errors.Conflict:
            with self._on(subject):
                existing = self._inspect_container(request.name)
            if existing is None:  # removed meanwhile: let the caller retry
                raise
            labels = (existing.get("Config") or {}).get("Labels")
            if not _same_owner(labels, request.labels):
                raise errors.Conflict(f"{subject} already exists and belongs to {_owner_text(labels)}") from None
            return str(existing["Id"])
        container_id = str(created["Id"])
        try:
            with self._on(subject):
                for attachment in spec.networks[1:]:
                    self.api.connect_container_to_network(
                        container_id,
                        attachment.name,
                        aliases=list(attachment.aliases) or None,
                        ipv4_address=attachment.ipv4_address,
                    )
        except errors.EngineError:
            # A half-connected container carries the right hash label and would look converged
            # to the next observe; remove it so the next apply creates it whole.
            with contextlib.suppress(Exception):
                self.api.remove_container(container_id, force=True, v=True)
            raise
        return container_id

    @_changes_containers
    def start_container(self, name: str) -> None:
        with self._on(f"container {name}"):
            # Starting a running container answers 304, which the SDK accepts: idempotent.
            self.api.start(name)

    @_changes_containers
    def stop_container(self, name: str, *, timeout: float | None = None) -> None:
        with self._on(f"container {name}"):
            # Docker sends the container's StopSignal, waits, then SIGKILLs; without a timeout it
            # uses the container's own StopTimeout. A stopped container answers 304: a no-op.
            if timeout is None:
                self.api.stop(name)
            else:
                self.api.stop(name, timeout=max(0, math.ceil(timeout)))

    @_changes_containers
    def remove_container(self, name: str) -> None:
        subject = f"container {name}"
        try:
            with self._on(subject):
                # v=True removes anonymous volumes only; named volumes always survive.
                self.api.remove_container(name, force=True, v=True)
        except errors.NotFound:
            return
        except errors.RuntimeFailed as exc:
            # A concurrent removal (someone's ``docker rm``) is as good as ours.
            if "already in progress" not in str(exc):
                raise

    @_changes_containers
    def rename_container(self, name: str, new_name: str) -> None:
        with self._on(f"container {name}", conflict=True):
            self.api.rename(name, new_name)

    @_changes_containers
    def update_container(self, name: str, resources: manifests.Resources) -> None:
        with self._on(f"container {name}"):
            # The SDK's update_container has no NanoCpus or PidsLimit parameter, so the documented
            # ``POST /containers/{id}/update`` body goes through the SDK's own request helper.
            url = self.api._url("/containers/{0}/update", name)
            response = self.api._post_json(url, data=resources_config(resources, for_update=True))
            self.api._result(response, True)

    # -- inspect while running ----------------------------------------------------------------

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[engine.LogLine]:
        subject = f"container {name}"
        params = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": 1 if follow else 0,
            "tail": str(tail) if tail is not None else "all",
        }
        with self._on(subject):
            # ``APIClient.logs`` drops which stream a frame came from; the frames themselves carry
            # it, so the multiplexed response is read here (containers are never created with a TTY).
            response = self.api._get(self.api._url("/containers/{0}/logs", name), params=params, stream=True)
            self.api._raise_for_status(response)
            if follow:
                self.api._disable_socket_timeout(self.api._get_raw_response_socket(response))
        try:
            pending = {1: b"", 2: b""}
            while True:
                with self._on(subject):
                    header = response.raw.read(_FRAME_HEADER.size)
                if len(header) < _FRAME_HEADER.size:
                    break
                stream_id, size = _FRAME_HEADER.unpack(header)
                with self._on(subject):
                    payload = _read_exactly(response.raw.read, size)
                key = 2 if stream_id == 2 else 1
                pending[key] += payload
                *complete, pending[key] = pending[key].split(b"\n")
                for raw_line in complete:
                    yield _log_line(key, raw_line)
            for key, rest in pending.items():
                if rest:
                    yield _log_line(key, rest)
        finally:
            response.close()

    def exec(self, name: str, argv: Sequence[str], *, timeout: float | None = None) -> engine.ExecResult:
        subject = f"container {name}"
        with self._on(subject):
            exec_id = self.api.exec_create(name, list(argv), stdout=True, stderr=True)["Id"]

        def run() -> tuple[bytes | None, bytes | None]:
            with self._on(subject):
                return cast(tuple[bytes | None, bytes | None], self.api.exec_start(exec_id, demux=True))

        if timeout is None:
            stdout, stderr = run()
        else:
            # Docker cannot cancel an exec; the waiting is abandoned to its own thread (not the
            # observe pool, which a hung command would otherwise block).
            future: concurrent.futures.Future[tuple[bytes | None, bytes | None]] = concurrent.futures.Future()

            def waiter() -> None:
                try:
                    future.set_result(run())
                except BaseException as exc:  # handed to the caller through the future
                    future.set_exception(exc)

            threading.Thread(target=waiter, name=f"docker-exec-{name}", daemon=True).start()
            try:
                stdout, stderr = future.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                raise errors.RuntimeFailed(
                    f"{subject}: exec {' '.join(argv)!r} did not finish within {timeout:g}s"
                ) from None
        with self._on(subject):
            exit_code = self.api.exec_inspect(exec_id).get("ExitCode")
        return engine.ExecResult(
            exit_code=int(exit_code) if exit_code is not None else -1,
            stdout=stdout or b"",
            stderr=stderr or b"",
        )

    def stats(self, name: str) -> engine.Stats:
        subject = f"container {name}"
        with self._on(subject):
            inspected = self._inspect_container(name)
            if inspected is None:
                raise errors.NotFound(f"{subject} not found")
            if not (inspected.get("State") or {}).get("Running"):
                raise errors.RuntimeFailed(f"{subject} is not running")
            # one_shot: one reading without the second sample Docker otherwise waits ~1 s for.
            raw = cast(dict[str, Any], self.api.stats(name, stream=False, one_shot=True))
        memory = raw.get("memory_stats") or {}
        details = memory.get("stats") or {}
        # Page cache is not "in use" (docker stats: cache on cgroup v1, inactive_file on v2).
        cache = details.get("total_inactive_file", details.get("inactive_file", details.get("cache", 0)))
        limit = (inspected.get("HostConfig") or {}).get("Memory") or 0
        return engine.Stats(
            cpu_seconds=int(((raw.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0) / 1e9,
            memory_bytes=max(0, int(memory.get("usage") or 0) - int(cache or 0)),
            memory_limit=limit if 0 < limit < _UNLIMITED_MEMORY else None,
            pids=int((raw.get("pids_stats") or {}).get("current") or 0),
        )

    def events(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        filters = {"type": ["container"], "label": [observed.LABEL_KIND], "event": list(_SUBSCRIBED_ACTIONS)}
        with self._on("events"):
            stream = self.api.events(filters=filters, decode=True)
        with self._cache_lock:
            self._streams += 1
        self._forget()  # what was cached before this subscription began may have missed events
        # The stream blocks until the daemon sends something; closing it from a watcher thread is
        # how ``stop`` interrupts a quiet stream (the SDK's CancellableStream then ends cleanly).
        finished = threading.Event()
        closer = threading.Thread(target=_close_when_set, args=(stop, finished, stream), daemon=True)
        closer.start()
        try:
            while not stop.is_set():
                with self._on("events"):
                    try:
                        item = next(stream)
                    except StopIteration:
                        break
                actor_id = (item.get("Actor") or {}).get("ID") or item.get("id")
                self._forget(str(actor_id) if actor_id else None)
                event = _event(item)
                if event is not None and not stop.is_set():
                    yield event
        finally:
            with self._cache_lock:
                self._streams -= 1
            self._forget()  # events may be missed until someone subscribes again
            finished.set()
            stream.close()

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        self.client.close()


# ---------------------------------------------------------------------------------------------
# Small helpers of the methods above
# ---------------------------------------------------------------------------------------------


def _unreachable_reason(exc: BaseException) -> str:
    """The innermost useful words of a connection failure, e.g. 'No such file or directory'."""
    seen: set[int] = set()
    current: BaseException | None = exc
    deepest = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        deepest = current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    if isinstance(deepest, OSError) and deepest.strerror:
        return deepest.strerror
    text = _one_line(str(deepest))
    return text[:200] if text else type(deepest).__name__


# How the daemon words a pull failure: the image is missing, or the registry cannot be reached.
_MISSING_MARKERS = ("manifest unknown", "not found", "pull access denied", "repository does not exist")
_UNREACHABLE_MARKERS = ("connection refused", "no such host", "timeout", "network is unreachable")


def _pull_error(subject: str, message: str) -> errors.EngineError:
    text = _one_line(message)
    lowered = text.lower()
    if any(marker in lowered for marker in _MISSING_MARKERS):
        return errors.NotFound(f"{subject}: {text}")
    if any(marker in lowered for marker in _UNREACHABLE_MARKERS):
        return errors.Unavailable(f"{subject}: registry unreachable: {text}")
    return errors.RuntimeFailed(f"{subject}: pull failed", stderr=text)


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _log_line(stream_id: int, raw_line: bytes) -> engine.LogLine:
    text = raw_line.decode("utf-8", "replace").rstrip("\r")
    stamp, _, message = text.partition(" ")
    moment = _timestamp(stamp)
    if moment is None:
        moment, message = 0.0, text
    return engine.LogLine(stream="stderr" if stream_id == 2 else "stdout", time=moment, text=message)


def _close_when_set(stop: threading.Event, finished: threading.Event, stream: Any) -> None:
    """Close ``stream`` once ``stop`` is set; give up when the consumer has finished anyway."""
    while not stop.wait(0.2):
        if finished.is_set():
            return
    with contextlib.suppress(Exception):
        stream.close()


_EVENT_HEALTH_PREFIX = "health_status: "


def _event(item: Mapping[str, Any]) -> engine.Event | None:
    """An ``engine.Event`` from one decoded Docker event, or None for actions we do not report."""
    action = str(item.get("Action") or item.get("status") or "")
    detail = ""
    if action.startswith(_EVENT_HEALTH_PREFIX):
        action, detail = "health_status", action.removeprefix(_EVENT_HEALTH_PREFIX)
    if action not in _EVENT_ACTIONS:
        return None
    actor = item.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    exit_code = attributes.get("exitCode")
    nanoseconds = item.get("timeNano")
    moment = nanoseconds / 1e9 if isinstance(nanoseconds, int) else float(item.get("time") or 0)
    return engine.Event(
        time=moment,
        action=cast(engine.EventAction, action),
        name=str(attributes.get("name", "")),
        container_id=str(actor.get("ID") or item.get("id") or ""),
        exit_code=int(exit_code) if exit_code is not None else None,
        detail=detail,
    )
