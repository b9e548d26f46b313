"""Docker backend, the engine: each ``reconciler.engine`` primitive as a few Engine API calls.

Where it sits: the executor and the CLI call :class:`DockerEngine`; it speaks to dockerd through
the docker SDK's low-level ``APIClient``, builds request bodies with :mod:`configs`, reads the
answers with :mod:`reading`, keeps container inspects with :mod:`informer` and translates every
library error with :mod:`translating`. Each method makes as few calls as it can, because a
no-op apply is measured: ``observe`` is one container list, one inspect per owned container (run
concurrently, or from the informer), one network list, one volume list and one image inspect
per reference asked about; with ``stacks=`` only the containers of those stacks are inspected.

On a local daemon (a unix socket, the default), those reads go through :class:`SocketReader`,
plain GETs with the standard library's HTTP client, and the SDK is imported and connected only
when something is to be written or streamed: a no-op apply then never loads the SDK, requests and
urllib3 (about 0.1 s of a CLI start), and each inspect costs a fraction of a requests call.

Ownership is decided by the ``reconciler.*`` labels, never by name: creating an object whose name
is taken by an object with other owner labels raises ``errors.Conflict``; with the same owner
labels it is a no-op.

It must not import the planner, executor, controller, CLI or another backend.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import http.client
import importlib
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import types
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from reconciler import errors, manifests, observed
from reconciler.backends.docker import (
    configs,
    informer,
    reading,
    secret_files,
    streams,
    translating,
)

if TYPE_CHECKING:  # the contract and the plans' requests are annotations here (a no-op loads neither)
    import docker

    from reconciler import engine, plans
    from reconciler.backends.docker import stack_networks

_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# How many container inspects ``observe`` runs at once. The client side (requests, under the GIL)
# is most of an inspect's cost, so a few threads overlap the waiting and more only contend.
_INSPECT_CONCURRENCY = 4
# The Engine API filter for the objects this project owns (they all carry the kind label).
_OWNED = {"label": [observed.LABEL_KIND]}
_OWNED_QUERY = json.dumps(_OWNED)
# Connections kept to the daemon: enough for the executor's widest parallelism, so that threads
# do not open and discard connections (the SDK's default pool holds ten).
_MAX_CONNECTIONS = 64

_P = ParamSpec("_P")
_R = TypeVar("_R")


def sdk() -> types.ModuleType:
    """The docker SDK, imported on first use (see the module docstring); ``sdk().errors.NotFound``."""
    module = importlib.import_module("docker")
    importlib.import_module("docker.errors")
    return module


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class SocketReader:
    """GETs on a local dockerd's socket, the answer decoded from JSON (``None`` for a 404).

    :meth:`ping` learns the daemon's API version (its ``Api-Version`` header), and every path is
    then asked in that version, as the SDK's ``version="auto"`` does. One kept-alive connection
    per thread (observe inspects from a small pool); a connection the daemon closed while idle is
    opened again once. A connection that fails is a ``ConnectionError`` (``translating`` makes it
    ``Unavailable``); any other refusal is ``RuntimeFailed`` with the daemon's message. ``hooks``
    are called with each request's method and path, as the SDK session's response hooks are.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.version: str | None = None
        self.hooks: list[Callable[[str, str], None]] = []
        self._local = threading.local()
        self._opened: list[_UnixConnection] = []
        self._lock = threading.Lock()

    def ping(self) -> None:
        status, headers, _ = self._exchange("/_ping")
        if status != 200:
            raise errors.RuntimeFailed(f"Docker answered /_ping with {status}")
        version = headers.get("Api-Version", "")
        self.version = version if version.replace(".", "").isdigit() else None

    def get(self, path: str, **query: object) -> Any:
        """The decoded answer to ``GET path?query`` (None for a 404)."""
        target = f"{path}?{urllib.parse.urlencode(query)}" if query else path
        status, _, body = self._exchange(f"/v{self.version}{target}" if self.version else target)
        if status == 404:
            return None
        if status >= 400:
            message = body.decode("utf-8", "replace")
            with contextlib.suppress(ValueError, AttributeError):
                message = str(json.loads(message).get("message", message))
            raise errors.RuntimeFailed(f"Docker refused GET {path} ({status})", stderr=message)
        return json.loads(body)

    def _exchange(self, target: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request("GET", target)
                response = connection.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, OSError) as exc:
                self._drop(connection)
                idle_closed = isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError)
                if attempt == 1 and idle_closed:
                    continue
                raise ConnectionError(getattr(exc, "strerror", None) or str(exc)) from exc
        for hook in self.hooks:
            hook("GET", target)
        return response.status, response.headers, body

    def _connection(self) -> _UnixConnection:
        connection: _UnixConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = _UnixConnection(self.path, self.timeout)
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def _drop(self, connection: _UnixConnection) -> None:
        connection.close()
        self._local.connection = None
        with self._lock, contextlib.suppress(ValueError):
            self._opened.remove(connection)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()


def _changes_containers(
    method: Callable[Concatenate[DockerEngine, _P], _R],
) -> Callable[Concatenate[DockerEngine, _P], _R]:
    """Forget cached inspects once ``method`` has changed a container (whether or not it failed)."""

    @functools.wraps(method)
    def changing(self: DockerEngine, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        finally:
            self.informer.forget()

    return changing


# What has logic of its own lives in configs, reading, informer, streams, stack_networks and secret_files.
# size: one short method per primitive of the Engine contract (about 25, each one Engine API call)
class DockerEngine:
    """The ``Engine`` contract on dockerd. Thread-safe: the executor calls it from a pool."""

    name = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        reader: SocketReader | None = None,
        connect: Callable[[], docker.DockerClient] | None = None,
    ) -> None:
        """An engine on ``client``; or, with ``reader``, one that reads through it and makes its
        SDK client with ``connect`` the first time it writes (see the module docstring)."""
        if client is None and (reader is None or connect is None):
            raise ValueError("DockerEngine needs a client, or a reader and a way to connect")
        self._client = client
        if client is not None:
            _skip_proxies(client)
        self._connect = connect
        self._client_lock = threading.Lock()
        self.reader = reader
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._networks_of_stacks: stack_networks.StackNetworks | None = None
        self.informer = informer.Informer()
        self.where = f"unix://{reader.path}" if reader is not None else str(self.api.base_url)

    @property
    def client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                assert self._connect is not None
                self._client = self._connect()
                _skip_proxies(self._client)
            return self._client

    @property
    def api(self) -> Any:
        """The SDK's low-level ``APIClient`` (made on first use when the engine has a reader)."""
        return self.client.api

    @property
    def _stack_networks(self) -> stack_networks.StackNetworks:
        from reconciler.backends.docker import stack_networks

        with self._pool_lock:
            if self._networks_of_stacks is None:
                self._networks_of_stacks = stack_networks.StackNetworks(self.api)
            return self._networks_of_stacks

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

        def connect() -> docker.DockerClient:
            docker = sdk()
            try:
                return docker.from_env(version="auto", timeout=math.ceil(timeout), max_pool_size=_MAX_CONNECTIONS)
            except docker.errors.DockerException as exc:
                reason = translating.unreachable_reason(exc)
                raise errors.Unavailable(f"Docker daemon unreachable at {where}: {reason}{hint}") from exc

        if not where.startswith("unix://"):
            return cls(connect())
        reader = SocketReader(where.removeprefix("unix://"), timeout)
        try:
            reader.ping()
        except (ConnectionError, errors.RuntimeFailed) as exc:
            reader.close()
            reason = translating.unreachable_reason(exc)
            raise errors.Unavailable(f"Docker daemon unreachable at {where}: {reason}{hint}") from exc
        return cls(reader=reader, connect=connect)

    # -- helpers ------------------------------------------------------------------------------

    def _on(self, subject: str, *, conflict: bool = False) -> translating.Translating:
        return translating.on(subject, where=self.where, conflict=conflict)

    def _parallel(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=_INSPECT_CONCURRENCY, thread_name_prefix="docker-observe"
                )
            return self._pool

    def _inspect_container(self, name: str) -> dict[str, Any] | None:
        if self.reader is not None:
            return cast(dict[str, Any] | None, self.reader.get(f"/containers/{_quoted(name)}/json"))
        try:
            return cast(dict[str, Any], self.api.inspect_container(name))
        except sdk().errors.NotFound:
            return None

    def _list_containers(self) -> list[dict[str, Any]]:
        if self.reader is not None:
            return cast(list[dict[str, Any]], self.reader.get("/containers/json", all=1, filters=_OWNED_QUERY))
        return cast(list[dict[str, Any]], self.api.containers(all=True, filters=_OWNED))

    def _list_networks(self) -> list[dict[str, Any]]:
        if self.reader is not None:
            return cast(list[dict[str, Any]], self.reader.get("/networks", filters=_OWNED_QUERY))
        return cast(list[dict[str, Any]], self.api.networks(filters=_OWNED))

    def _list_volumes(self) -> dict[str, Any]:
        if self.reader is not None:
            return cast(dict[str, Any], self.reader.get("/volumes", filters=_OWNED_QUERY))
        return cast(dict[str, Any], self.api.volumes(filters=_OWNED))

    def _image_id(self, image: str) -> str | None:
        if self.reader is not None:
            found = self.reader.get(f"/images/{_quoted(image)}/json")
            return None if found is None else str(found["Id"])
        try:
            return str(self.api.inspect_image(image)["Id"])
        except sdk().errors.NotFound:
            return None

    def _ensure_owner(self, subject: str, labels: Mapping[str, str] | None, wanted: Mapping[str, str]) -> None:
        if not reading.same_owner(labels, wanted):
            raise errors.Conflict(f"{subject} already exists and belongs to {reading.owner_text(labels)}")

    # -- observe ------------------------------------------------------------------------------

    def observe(self, *, images: Sequence[str] = (), stacks: Collection[str] | None = None) -> observed.Observed:
        """Every owned object, and the local image id of each reference in ``images``.

        With ``stacks``, containers of other stacks are reported from the container list alone
        (owner labels, id, image, state, networks, volumes; no limits, times or restart count)
        instead of being inspected, so that a no-op apply costs in proportion to its stacks.
        """
        with self._on("observe"):
            pool = self._parallel()
            # Networks, volumes and images are read while the containers are listed and inspected.
            network_list = pool.submit(self._list_networks)
            volume_answer = pool.submit(self._list_volumes)
            image_ids = {ref: pool.submit(self._image_id, ref) for ref in dict.fromkeys(images)}
            containers = self._observe_containers(pool, stacks)
            networks = {str(item["Name"]): reading.observed_network(item) for item in network_list.result()}
            volume_list = volume_answer.result().get("Volumes") or []
            volumes = {str(item["Name"]): reading.observed_volume(item) for item in volume_list}
            resolved = {ref: future.result() for ref, future in image_ids.items()}
        return observed.Observed(
            containers=dict(sorted(containers.items())),
            networks=dict(sorted(networks.items())),
            volumes=dict(sorted(volumes.items())),
            images=resolved,
        )

    def _observe_containers(
        self, pool: concurrent.futures.ThreadPoolExecutor, stacks: Collection[str] | None
    ) -> dict[str, observed.ObservedContainer]:
        listed = self.informer.list_owned(self._list_containers)
        in_scope: list[Mapping[str, Any]] = []
        containers: dict[str, observed.ObservedContainer] = {}
        for item in listed:
            stack = (item.get("Labels") or {}).get(observed.LABEL_STACK)
            if stacks is None or stack in stacks:
                in_scope.append(item)
            else:
                outside = reading.listed_container(item)
                containers[outside.name] = outside
        # The list lacks limits, times and restart counts; inspecting is the only source, so the
        # inspects run concurrently (or come from the informer).
        inspects = [pool.submit(self.informer.inspect_listed, item, self._inspect_container) for item in in_scope]
        for future in inspects:
            inspected = future.result()
            if inspected is None:  # removed between the list and the inspect
                continue
            container = reading.observed_container(inspected)
            if secret_files.lost(inspected):
                # Its secrets' files went with a host reboot: it cannot start as it is, and a
                # recreate (which the changed hash asks the planner for) writes them again.
                container = dataclasses.replace(container, labels=secret_files.mark_lost(container.labels))
            containers[container.name] = container
        self.informer.keep_only({str(item["Id"]) for item in listed})
        return containers

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
                        raise translating.pull_error(subject, str(progress["error"]))
            except sdk().errors.APIError as exc:
                # The daemon answers a failed pull with 404 or 500 whatever the cause; its words
                # tell a missing image from an unreachable registry.
                if exc.status_code in (404, 500):
                    raise translating.pull_error(subject, translating.daemon_message(exc)) from exc
                raise
            pulled = self._image_id(image)
        if pulled is None:
            raise errors.NotFound(f"{subject}: pull reported success but the image is not present")
        return pulled

    # -- networks and volumes -----------------------------------------------------------------

    def create_network(self, request: plans.NetworkRequest) -> None:
        subject = f"network {request.name}"
        spec = request.spec
        try:
            with self._on(subject, conflict=True):
                self.api.create_network(
                    request.name,
                    driver=spec.driver,
                    options=dict(spec.options) or None,
                    ipam=configs.network_ipam(spec),
                    # Docker allows two networks of one name unless asked not to.
                    check_duplicate=True,
                    internal=spec.internal,
                    labels=dict(request.labels),
                )
        except errors.Conflict:
            with self._on(subject):
                existing = self.api.inspect_network(request.name)
            self._ensure_owner(subject, existing.get("Labels"), request.labels)

    def remove_network(self, name: str) -> None:
        # A network a running container is attached to: Docker refuses (403), RuntimeFailed.
        with contextlib.suppress(errors.NotFound), self._on(f"network {name}"):
            self.api.remove_network(name)

    def create_volume(self, request: plans.VolumeRequest) -> None:
        subject = f"volume {request.name}"
        # Docker's volume create silently returns an existing volume whatever its labels, so
        # ownership is checked by inspecting first.
        with self._on(subject):
            try:
                existing = self.api.inspect_volume(request.name)
            except sdk().errors.NotFound:
                existing = None
            if existing is not None:
                self._ensure_owner(subject, existing.get("Labels"), request.labels)
                return
            self.api.create_volume(
                request.name,
                driver=request.spec.driver,
                driver_opts=dict(request.spec.options) or None,
                labels=dict(request.labels),
            )

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(errors.NotFound), self._on(f"volume {name}"):
            self.api.remove_volume(name)

    # -- containers ---------------------------------------------------------------------------

    def _check_references(self, subject: str, spec: manifests.ContainerSpec) -> None:
        """NotFound for a missing named volume or network: Docker would create the volume on the
        fly and notice the network only at start, while the contract says NotFound at creation."""
        with self._on(subject):
            for mount in spec.mounts:
                if isinstance(mount, manifests.VolumeMount):
                    try:
                        self.api.inspect_volume(mount.source)
                    except sdk().errors.NotFound:
                        what = "external volume" if mount.external else "volume"
                        raise errors.NotFound(f"{subject}: {what} {mount.source} not found") from None
            for attachment in spec.networks:
                try:
                    self.api.inspect_network(attachment.name)
                except sdk().errors.NotFound:
                    what = "external network" if attachment.external else "network"
                    raise errors.NotFound(f"{subject}: {what} {attachment.name} not found") from None

    @_changes_containers
    def create_container(self, request: plans.ContainerRequest) -> str:
        subject = f"container {request.name}"
        self._check_references(subject, request.spec)
        with self._on(subject):
            default_network = self._stack_networks.ensure(request)
        config = configs.container_config(request, default_network=default_network)
        placed = secret_files.place(request)
        config["HostConfig"]["Mounts"] += secret_files.binds(placed)
        made = False
        try:
            container_id, made = self._create(subject, request, config)
        finally:
            if not made:  # failed, or the container was there already (with files of its own)
                secret_files.remove(secret_files.folders({"Mounts": secret_files.binds(placed)}))
        return container_id

    def _create(self, subject: str, request: plans.ContainerRequest, config: dict[str, Any]) -> tuple[str, bool]:
        """The container created from ``config`` (its id, True), or the same owner's existing one (False)."""
        try:
            with self._on(subject, conflict=True):
                created = self.api.create_container_from_config(config, name=request.name)
        except errors.Conflict:
            with self._on(subject):
                existing = self._inspect_container(request.name)
            if existing is None:  # removed meanwhile: let the caller retry
                raise
            self._ensure_owner(subject, (existing.get("Config") or {}).get("Labels"), request.labels)
            return str(existing["Id"]), False
        container_id = str(created["Id"])
        try:
            with self._on(subject):
                for attachment in request.spec.networks[1:]:
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
        return container_id, True

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
        with self._on(f"container {name}"):
            inspected = self._inspect_container(name)
        try:
            with self._on(f"container {name}"):
                # v=True removes anonymous volumes only; named volumes always survive.
                self.api.remove_container(name, force=True, v=True)
        except errors.NotFound:
            return
        except errors.RuntimeFailed as exc:
            # A concurrent removal (someone's ``docker rm``) is as good as ours.
            if "already in progress" not in str(exc):
                raise
        secret_files.remove(secret_files.folders(inspected or {}))
        with contextlib.suppress(errors.EngineError), self._on(f"container {name}"):
            self._stack_networks.drop_unused(inspected)

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
            response = self.api._post_json(url, data=configs.resources_config(resources, for_update=True))
            self.api._result(response, True)

    # -- inspect while running ----------------------------------------------------------------

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[engine.LogLine]:
        subject = f"container {name}"
        for stream_id, raw_line in streams.logs_endpoint(
            self.api, "/containers/{0}/logs", name, follow=follow, tail=tail, guard=lambda: self._on(subject)
        ):
            yield reading.log_line(stream_id, raw_line)

    def exec(
        self, name: str, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None
    ) -> engine.ExecResult:
        from reconciler import engine

        subject = f"container {name}"
        with self._on(subject):
            exec_id = self.api.exec_create(name, list(argv), stdin=stdin is not None, stdout=True, stderr=True)["Id"]

        def run() -> tuple[bytes | None, bytes | None]:
            with self._on(subject):
                if stdin is None:
                    return cast(tuple[bytes | None, bytes | None], self.api.exec_start(exec_id, demux=True))
                # The SDK only writes to an exec through its raw socket (``SocketIO`` wraps it).
                attached = self.api.exec_start(exec_id, socket=True)
                with contextlib.closing(attached):
                    return streams.exec_with_input(getattr(attached, "_sock", attached), stdin)

        if timeout is None:
            stdout, stderr = run()
        else:
            what = f"{subject}: exec {' '.join(argv)!r}"
            stdout, stderr = _within(run, timeout, name=f"docker-exec-{name}", what=what)
        with self._on(subject):
            exit_code = self.api.exec_inspect(exec_id).get("ExitCode")
        return engine.ExecResult(
            exit_code=int(exit_code) if exit_code is not None else -1,
            stdout=stdout or b"",
            stderr=stderr or b"",
        )

    def exec_attached(self, name: str, argv: Sequence[str]) -> int:
        """``exec -t`` (see :class:`engine.AttachesTerminals`) through Docker's own command line,
        which relays a terminal as ``docker exec -it`` does (raw mode, resizes) and reaches the
        same daemon (``DOCKER_HOST`` is inherited)."""
        binary = shutil.which("docker")
        if binary is None:
            raise errors.Unavailable(
                "exec -t on the docker engine needs the docker command (apt-get install docker.io)"
            )
        with self._on(f"container {name}"):
            self.api.inspect_container(name)  # a clear "not found" before handing over the terminal
        return subprocess.run([binary, "exec", "-it", name, *argv], check=False).returncode

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
        return reading.stats(raw, inspected)

    def events(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        filters = {"type": ["container"], "label": [observed.LABEL_KIND], "event": list(reading.SUBSCRIBED_ACTIONS)}
        with self._on("events"):
            stream = self.api.events(filters=filters, decode=True)
        with self.informer.subscribed(), streams.closed_on(stop, stream):
            while not stop.is_set():
                with self._on("events"):
                    try:
                        item = next(stream)
                    except StopIteration:
                        break
                actor_id = (item.get("Actor") or {}).get("ID") or item.get("id")
                self.informer.forget(str(actor_id) if actor_id else None)
                event = reading.event(item)
                if event is not None and not stop.is_set():
                    yield event

    def history(self, *, since: float = 0.0) -> list[engine.Event]:
        """The owned containers' events that dockerd still keeps (a buffer of its last 256 or so)."""
        filters = {"type": ["container"], "label": [observed.LABEL_KIND], "event": sorted(reading.EVENT_ACTIONS)}
        # ``until`` makes a finite answer: what was kept up to now, without waiting for news. An
        # event's time is a float of its nanoseconds (a quarter microsecond coarse today): dockerd
        # is asked from a little earlier, and ``since`` is applied here, to the same floats.
        window = {"since": f"{max(since - 1e-3, 0.0):.9f}", "until": f"{time.time():.9f}"}
        with self._on("events"):
            stream = self.api.events(**window, filters=filters, decode=True)
            try:
                found = [event for item in stream if (event := reading.event(item)) is not None]
            finally:
                stream.close()
        return sorted((event for event in found if event.time >= since), key=lambda event: event.time)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        if self._client is not None:
            self._client.close()
        if self.reader is not None:
            self.reader.close()


def _skip_proxies(client: docker.DockerClient) -> None:
    if str(client.api.base_url).startswith("http+docker://localhost"):
        # A unix socket never goes through an HTTP proxy; skipping requests' per-call look at
        # the proxy environment saves about a millisecond per call.
        client.api.trust_env = False


def _quoted(name: str) -> str:
    """A name or image reference in a path, quoted as the SDK quotes it (``/`` and ``:`` kept)."""
    return urllib.parse.quote(name, safe="/:")


def _within(run: Callable[[], _R], timeout: float, *, name: str, what: str) -> _R:
    """``run()``'s result, or RuntimeFailed after ``timeout`` seconds.

    Docker cannot cancel an exec; the waiting is abandoned to its own thread (not the observe
    pool, which a hung command would otherwise block).
    """
    future: concurrent.futures.Future[_R] = concurrent.futures.Future()

    def waiter() -> None:
        try:
            future.set_result(run())
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    threading.Thread(target=waiter, name=name, daemon=True).start()
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise errors.RuntimeFailed(f"{what} did not finish within {timeout:g}s") from None
