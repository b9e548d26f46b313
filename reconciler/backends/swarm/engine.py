"""Swarm backend, the engine: each ``reconciler.engine`` primitive as Swarm service calls on a manager.

Where it sits: the executor and the CLI call :class:`SwarmEngine`; it speaks to a swarm manager's
dockerd through the docker SDK's ``APIClient``, builds service bodies with :mod:`.service_specs`,
reads services and tasks with :mod:`.service_states`, keeps the containers each service stands
for with :mod:`.members`, and translates library errors with the Docker backend's
:mod:`~reconciler.backends.docker.translating`. What is the same on a manager as on one dockerd
(pulling on the manager, local volumes, exec and stats of a task running on the manager's node)
is the Docker backend's :class:`~reconciler.backends.docker.engine.DockerEngine`, used as it is
(on another node's dockerd too, where the node's :data:`NODE_DOCKER_HOST_LABEL` names it).

Each change to a service is read-modify-write against the service's version (Swarm refuses a
stale one): :meth:`SwarmEngine._change` retries on "out of sequence", and a lock per service
keeps the executor's parallel steps (three replicas created at once) from racing each other.

Of the planner it reads one rule, :func:`planning.container_of` (which container a staged
``NAME.next`` replaces, and so which service it belongs to). It must not import the executor,
controller, CLI or another backend but the Docker one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, cast

import docker
import docker.errors

from reconciler import engine, errors, manifests, observed, planning, plans
from reconciler.backends.docker import configs, reading, stack_networks, streams, translating
from reconciler.backends.docker import engine as docker_engine
from reconciler.backends.swarm import members, service_specs, service_states

_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
_OWNED = {"label": [observed.LABEL_KIND]}
# How often a wait looks at the service again, and how often a stale version is retried.
_POLL = 0.2
_RETRIES = 8
# Update states after which Swarm does no more for an update.
_UPDATE_DONE = frozenset({"completed", "paused", "rollback_completed", "rollback_paused"})
_ROLLED_BACK = frozenset({"rollback_completed", "rollback_paused", "rollback_started", "paused"})
# How long a stop may take beyond the tasks' grace period before the engine stops waiting.
_STOP_MARGIN = 10.0
# How long a start or update may take where the service's spec label cannot tell.
_DEFAULT_DEADLINE = 120.0
# A node label naming the node's own dockerd (``unix://...``, ``tcp://HOST:2376``, TLS as
# ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` say): where the engine removes a volume's copy that
# the node's tasks made. Only a swarm manager can set a node label.
NODE_DOCKER_HOST_LABEL = "reconciler.docker-host"
# How long a node's copy of a volume may stay in use by the removed service's task containers.
_COPY_WAIT = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    """What a member asks its service to run (kept from its creation until its start when it is
    not what the service runs yet): its request, task template, endpoint and their digest."""

    request: plans.ContainerRequest
    template: dict[str, Any]
    endpoint: dict[str, Any]
    digest: str


# size: one short method per primitive of the Engine contract, plus the service read-modify-write
class SwarmEngine:
    """The ``Engine`` contract on a swarm manager. Thread-safe: the executor calls it from a pool."""

    name = "swarm"

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api
        # What a manager does as any dockerd (pulls, local volumes, exec in a local task).
        self.local = docker_engine.DockerEngine(client)
        self._stack_networks = stack_networks.StackNetworks(self.api, driver="overlay")
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        # The service spec digests Swarm rolled back, with why: the other replicas of the same
        # change fail at once instead of rolling forward and back again each.
        self._rolled_back: dict[str, str] = {}
        # Which nodes other than the manager's ran tasks mounting a volume, by volume: learnt as a
        # service goes, so that removing the volume reaches each copy or says which one stays.
        self._copies: dict[str, set[str]] = {}
        # The other nodes' dockerd reached for exec and stats, by address (NODE_DOCKER_HOST_LABEL).
        self._nodes: dict[str, docker_engine.DockerEngine] = {}

    @classmethod
    def from_env(cls, *, timeout: float = 60.0) -> SwarmEngine:
        """A client of the manager ``DOCKER_HOST`` names (else the local socket), made as
        :meth:`DockerEngine.from_env` makes its own; Unavailable when that dockerd is not a swarm manager."""
        where = os.environ.get("DOCKER_HOST") or _DEFAULT_DOCKER_HOST
        made = cls(docker_engine.DockerEngine.from_env(timeout=timeout).client)
        try:
            with made._on("swarm"):
                control = (made.api.info().get("Swarm") or {}).get("ControlAvailable")
        except errors.EngineError:
            made.close()
            raise
        if not control:
            made.close()
            raise errors.Unavailable(f"the Docker daemon at {where} is not a swarm manager (docker swarm init)")
        return made

    # -- helpers ------------------------------------------------------------------------------

    def _on(self, subject: str, *, conflict: bool = False) -> translating.Translating:
        return translating.on(subject, where=str(self.api.base_url), conflict=conflict)

    def _lock(self, service: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(service, threading.Lock())

    def _services(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.api.services(filters=_OWNED))

    def _inspect(self, service: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self.api.inspect_service(service))
        except docker.errors.NotFound:
            return None

    def _service_of(self, name: str) -> str | None:
        """The service whose member ``name`` is, or None."""
        with self._on(f"container {name}"):
            for service in self._services():
                if name in members.read((service.get("Spec") or {}).get("Labels")):
                    return str(service["Spec"]["Name"])
        return None

    def _require_service(self, name: str) -> str:
        service = self._service_of(name)
        if service is None:
            raise errors.NotFound(f"container {name}: no such service member on the swarm")
        return service

    def _change(
        self, service: str, subject: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Read the service, let ``change`` make its new spec (None: nothing to change), write it at
        the version read; again while Swarm answers that the version is stale. The spec written, or None."""
        for _ in range(_RETRIES):
            with self._on(subject):
                current = self._inspect(service)
                if current is None:
                    raise errors.NotFound(f"{subject}: service {service} not found")
                spec = change(current)
                if spec is None:
                    return None
                try:
                    url = self.api._url("/services/{0}/update", str(current["ID"]))
                    params = {"version": current["Version"]["Index"]}
                    self.api._result(self.api._post_json(url, data=spec, params=params), True)
                except docker.errors.APIError as exc:
                    if "out of sequence" not in translating.daemon_message(exc):
                        raise
                    continue
            return spec
        raise errors.RuntimeFailed(f"{subject}: service {service} kept changing under us; try again")

    def _relabelled(self, current: Mapping[str, Any], updated: Mapping[str, members.Member]) -> dict[str, Any]:
        """The service's spec with ``updated`` members and as many replicas as they run."""
        spec = dict(current["Spec"])
        spec["Labels"] = {**(spec.get("Labels") or {}), members.LABEL: members.label(updated)}
        spec["Mode"] = {"Replicated": {"Replicas": members.replicas(updated)}}
        return spec

    # -- observe ------------------------------------------------------------------------------

    def observe(self, *, images: Sequence[str] = (), stacks: Collection[str] | None = None) -> observed.Observed:
        """Every owned service as the containers it stands for, the owned overlay networks, the
        manager's owned volumes and images."""
        del stacks  # one service list and one task list serve every stack
        with self._on("observe"):
            services = self._services()
            tasks = cast(list[dict[str, Any]], self.api.tasks()) if services else []
            all_networks = cast(list[dict[str, Any]], self.api.networks())
            volume_list = self.api.volumes(filters=_OWNED).get("Volumes") or []
            found = {ref: self._image_id(ref) for ref in dict.fromkeys(images)}
        names = {str(n["Id"]): str(n["Name"]) for n in all_networks}
        containers: dict[str, observed.ObservedContainer] = {}
        for service in services:
            containers.update(service_states.observed_members(service, tasks, names))
        owned_networks = [n for n in all_networks if observed.LABEL_KIND in (n.get("Labels") or {})]
        return observed.Observed(
            containers=dict(sorted(containers.items())),
            networks=dict(sorted((str(n["Name"]), reading.observed_network(n)) for n in owned_networks)),
            volumes=dict(sorted((str(v["Name"]), reading.observed_volume(v)) for v in volume_list)),
            images=found,
        )

    def _image_id(self, image: str) -> str | None:
        try:
            return str(self.api.inspect_image(image)["Id"])
        except docker.errors.NotFound:
            return None

    def pull_image(self, image: str, *, policy: engine.PullPolicy = "IfNotPresent") -> str:
        """The Docker backend's pull, on the manager: an image no registry has fails here, at the
        plan's pull step, with the registry's words (each node still pulls for its own tasks)."""
        return self.local.pull_image(image, policy=policy)

    # -- networks and volumes -----------------------------------------------------------------

    def create_network(self, request: plans.NetworkRequest) -> None:
        """An attachable overlay network (services and ``docker run`` containers may join it)."""
        subject = f"network {request.name}"
        spec = request.spec
        try:
            with self._on(subject, conflict=True):
                self.api.create_network(
                    request.name, driver="overlay", attachable=True, options=dict(spec.options) or None,
                    ipam=configs.network_ipam(spec), check_duplicate=True, internal=spec.internal,
                    labels=dict(request.labels), scope="swarm",
                )  # fmt: skip
        except errors.Conflict:
            with self._on(subject):
                existing = self.api.inspect_network(request.name)
            if not reading.same_owner(existing.get("Labels"), request.labels):
                owner = reading.owner_text(existing.get("Labels"))
                raise errors.Conflict(f"{subject} already exists and belongs to {owner}") from None

    def remove_network(self, name: str) -> None:
        """Swarm refuses while a service uses it (RuntimeFailed); once removed, the manager may list
        it for a moment longer, so this returns when it lists it no more (an observe right after
        must not plan around a network that is gone)."""
        self.local.remove_network(name)
        deadline = time.monotonic() + _STOP_MARGIN
        while time.monotonic() < deadline:
            with self._on(f"network {name}"):
                if not any(n.get("Name") == name for n in self.api.networks(names=[name])):
                    return
            time.sleep(_POLL)

    def create_volume(self, request: plans.VolumeRequest) -> None:
        """On the manager; each node that runs a task makes its own from the mount's options."""
        self.local.create_volume(request)

    def remove_volume(self, name: str) -> None:
        """The manager's volume, and the copies the tasks of removed services made on other nodes:
        through each node's own dockerd where its :data:`NODE_DOCKER_HOST_LABEL` names it (a copy
        with the same owner labels only). A copy on a node that has no such label stays, and the
        removal fails saying where (Docker's ``docker volume rm`` on a manager removes the
        manager's alone, and says nothing of the others)."""
        subject = f"volume {name}"
        with self._on(subject):
            try:
                owner: dict[str, str] | None = dict(self.api.inspect_volume(name).get("Labels") or {})
            except docker.errors.NotFound:
                owner = None
        self.local.remove_volume(name)
        copies = self._copies.pop(name, set())
        with self._on(subject):
            nodes = cast(list[dict[str, Any]], self.api.nodes())
            own = str((self.api.info().get("Swarm") or {}).get("NodeID") or "")
        stays = []
        for node in nodes:
            address = ((node.get("Spec") or {}).get("Labels") or {}).get(NODE_DOCKER_HOST_LABEL)
            hostname = str((node.get("Description") or {}).get("Hostname") or node.get("ID"))
            if node.get("ID") == own:
                continue
            if address:
                _remove_copy(f"{subject} on node {hostname}", name, str(address), owner)
            elif node.get("ID") in copies:
                stays.append(hostname)
        if stays:
            raise errors.RuntimeFailed(
                f"{subject}: removed on the manager; the copies on node {', '.join(sorted(stays))} stay (no "
                f"{NODE_DOCKER_HOST_LABEL} node label names its dockerd): run docker volume rm {name} there"
            )

    def _note_copies(self, subject: str, service: str) -> None:
        """Note the nodes (other than the manager's) where the service's tasks mounted volumes."""
        with self._on(subject):
            listed = cast(list[dict[str, Any]], self.api.tasks(filters={"service": service}))
        for task in listed:
            container = (task.get("Spec") or {}).get("ContainerSpec") or {}
            for mount in container.get("Mounts") or ():
                if mount.get("Type") == "volume" and mount.get("Source") and task.get("NodeID"):
                    self._copies.setdefault(str(mount["Source"]), set()).add(str(task["NodeID"]))

    # -- containers (members of services) -----------------------------------------------------

    def create_container(self, request: plans.ContainerRequest) -> str:
        name = request.name
        subject = f"container {name}"
        if problems := service_specs.unsupported(request.spec):
            raise errors.RuntimeFailed(f"{subject}: no Swarm equivalent: " + "; ".join(problems))
        plain = planning.container_of(plans.CreateContainer(request)) or name
        service = service_specs.service_name(request, plain)
        template = self._template(subject, request, service)
        endpoint = service_specs.endpoint(request.spec, service_specs.replica_index(request, plain))
        asked = _Pending(request, template, endpoint, service_specs.template_digest(template, endpoint))
        with self._lock(service):
            current = self._inspect_translated(subject, service)
            if current is None:
                return self._create_service(subject, asked, service)
            labels = (current.get("Spec") or {}).get("Labels") or {}
            if not all(labels.get(k) == request.labels.get(k) for k in (observed.LABEL_STACK, observed.LABEL_KIND)):
                raise errors.Conflict(f"{subject}: service {service} belongs to {reading.owner_text(labels)}")
            if name not in members.read(labels) and labels.get(members.TEMPLATE_LABEL) != asked.digest:
                self._pending[name] = asked
            self._change(service, subject, lambda now: self._with_member(now, name, asked))
            return str(current["ID"])

    def _with_member(self, current: Mapping[str, Any], name: str, asked: _Pending) -> dict[str, Any] | None:
        present = members.read(current["Spec"].get("Labels"))
        if name in present:
            return None
        spec_hash = asked.request.labels.get(observed.LABEL_HASH, "")
        return self._relabelled(current, members.created(present, name, spec_hash, asked.digest, time.time()))

    def _inspect_translated(self, subject: str, service: str) -> dict[str, Any] | None:
        with self._on(subject):
            return self._inspect(service)

    def _create_service(self, subject: str, asked: _Pending, service: str) -> str:
        request = asked.request
        first = members.Member(request.labels.get(observed.LABEL_HASH, ""), "created", asked.digest, time.time())
        labels = {**request.labels, members.LABEL: members.label({request.name: first}),
                  members.TEMPLATE_LABEL: asked.digest}  # fmt: skip
        body = service_specs.service_spec(request, service, asked.template, asked.endpoint, labels=labels, replicas=0)
        with self._on(subject, conflict=True):
            created = self.api._result(self.api._post_json(self.api._url("/services/create"), data=body), True)
        return str(created["ID"])

    def _template(self, subject: str, request: plans.ContainerRequest, service: str) -> dict[str, Any]:
        """The task template of a request: its networks and volumes checked, its files made."""
        spec = request.spec
        with self._on(subject):
            for attachment in spec.networks:
                try:
                    self.api.inspect_network(attachment.name)
                except docker.errors.NotFound:
                    raise errors.NotFound(f"{subject}: network {attachment.name} not found") from None
            volume_options = {}
            for mount in spec.mounts:
                if isinstance(mount, manifests.VolumeMount):
                    volume_options[mount.source] = self._volume_options(subject, mount)
            default_network = self._stack_networks.ensure(request)
            files = self._files(request)
        return service_specs.task_template(
            request, service, files=files, volume_options=volume_options, default_network=default_network
        )

    def _volume_options(self, subject: str, mount: manifests.VolumeMount) -> dict[str, Any]:
        """The volume's labels and driver options, as each node will make it (from the manager's own)."""
        try:
            volume = self.api.inspect_volume(mount.source)
        except docker.errors.NotFound:
            what = "external volume" if mount.external else "volume"
            raise errors.NotFound(f"{subject}: {what} {mount.source} not found") from None
        options: dict[str, Any] = {"Labels": dict(volume.get("Labels") or {})}
        driver = {"Name": volume.get("Driver") or "local", "Options": dict(volume.get("Options") or {})}
        options["DriverConfig"] = driver
        return options

    def _files(self, request: plans.ContainerRequest) -> list[dict[str, Any]]:
        """The request's secrets and configs as Swarm objects (made when missing), as references."""
        stack = request.labels.get(observed.LABEL_STACK, "")
        references = []
        for secret, items in ((True, request.spec.secrets), (False, request.spec.configs)):
            for item in items:
                content = request.files.get(item.path, b"")
                object_name = service_specs.file_object_name(stack, item, content, secret=secret)
                object_id = self._file_object(object_name, content, stack, secret=secret)
                references.append(service_specs.file_reference(item, object_id, object_name, secret=secret))
        return references

    def _file_object(self, name: str, content: bytes, stack: str, *, secret: bool) -> str:
        labels = {service_specs.FILE_LABEL: stack}
        api = self.api
        make, find = (api.create_secret, api.secrets) if secret else (api.create_config, api.configs)
        try:
            return str(make(name, content, labels=labels)["ID"])
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
        # Same name, same digest: the same content, made by an earlier create.
        for found in find(filters={"name": name}):
            if found["Spec"]["Name"] == name:
                return str(found["ID"])
        raise errors.Conflict(f"{'secret' if secret else 'config'} {name} exists and cannot be read back")

    def start_container(self, name: str) -> None:
        subject = f"container {name}"
        service = self._require_service(name)
        with self._lock(service):
            pending = self._pending.get(name)
            if pending is not None and (reason := self._rolled_back.get(pending.digest)):
                raise errors.RuntimeFailed(f"{subject}: {reason}")
            before = self._last_update(service, subject)
            written = self._change(service, subject, lambda now: self._started(now, name, pending))
            if written is None:
                return
            # The member's spec became the service's (``_started`` put its template in): Swarm
            # rolls. Any change of the service before the rollout ends would become the spec
            # Swarm rolls back to, so the lock is held until it ends.
            rolling = pending is not None and written["TaskTemplate"] is pending.template
            if pending is not None and rolling:
                try:
                    self._await_update(service, subject, _deadline(pending.request.spec), before)
                except errors.RuntimeFailed as exc:
                    self._rolled_back[pending.digest] = str(exc).removeprefix(f"{subject}: ")
                    raise
                self._pending.pop(name, None)
        if pending is not None and rolling:
            self._drop_unused(subject, pending.request.labels.get(observed.LABEL_STACK, ""))
        else:
            self._await_tasks(service, subject, members.replicas(members.read(written["Labels"])))

    def _started(self, current: Mapping[str, Any], name: str, pending: _Pending | None) -> dict[str, Any] | None:
        present = members.read(current["Spec"].get("Labels"))
        if name not in present:
            raise errors.NotFound(f"container {name}: no such service member on the swarm")
        if present[name].state == "running":
            return None
        spec = self._relabelled(current, members.started(present, name))
        if present[name].template != spec["Labels"].get(members.TEMPLATE_LABEL):
            if pending is None:
                raise errors.RuntimeFailed(
                    f"container {name}: its spec was made by an earlier run and is gone; remove it and apply again"
                )
            # The member's spec becomes the service's: Swarm rolls every task onto it.
            request = pending.request
            labels = {**request.labels, members.LABEL: spec["Labels"][members.LABEL],
                      members.TEMPLATE_LABEL: pending.digest}  # fmt: skip
            replicas = spec["Mode"]["Replicated"]["Replicas"]
            spec = service_specs.service_spec(
                request, spec["Name"], pending.template, pending.endpoint, labels=labels, replicas=replicas
            )
        return spec

    def _last_update(self, service: str, subject: str) -> str | None:
        """When the service's last rolling update started (None: it had none): an update whose
        status carries another time is the one a change starts."""
        with self._on(subject):
            current = self._inspect(service) or {}
        started = (current.get("UpdateStatus") or {}).get("StartedAt")
        return str(started) if started else None

    def _await_update(self, service: str, subject: str, seconds: float, before: str | None) -> None:
        """Until the rolling update that started after ``before`` (see :meth:`_last_update`) ends;
        RuntimeFailed when Swarm rolled it back (it did so by itself: the old tasks run again, and
        the service's spec, members included, is the old one). The status of the update before
        is not this one's: it may read "completed" until Swarm starts the new one."""
        deadline = time.monotonic() + seconds
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with self._on(subject):
                current = self._inspect(service) or {}
            status = current.get("UpdateStatus") or {}
            if status.get("State") in _UPDATE_DONE and status.get("StartedAt") != before:
                break
            time.sleep(_POLL)
        state = status.get("State")
        if state in _ROLLED_BACK:
            raise errors.RuntimeFailed(
                f"{subject}: Swarm rolled the update of service {service} back: {status.get('Message', state)}"
            )
        if state not in _UPDATE_DONE:
            raise errors.RuntimeFailed(f"{subject}: the update of service {service} did not end within "
                                       f"{seconds:g}s ({state or 'not started'})")  # fmt: skip

    def _await_tasks(self, service: str, subject: str, replicas: int) -> None:
        """Until as many tasks run (or ran: a one-shot job) as the service has replicas; a task
        Swarm cannot start (an image no node has, no node fits) is reported once the time is up."""
        started = {"running", "complete", "failed"}
        with self._on(subject):
            current = self._inspect(service) or {}
        spec = _container_spec(current)
        deadline = time.monotonic() + (_deadline(spec) if spec is not None else _DEFAULT_DEADLINE)
        tasks: list[Mapping[str, Any]] = []
        while True:
            with self._on(subject):
                listed = cast(list[dict[str, Any]], self.api.tasks(filters={"service": service}))
            tasks = service_states.current_tasks(current, listed)
            if sum(1 for t in tasks if service_states.task_state(t) in started) >= replicas:
                return
            if time.monotonic() >= deadline:
                reason = service_states.task_error(listed) or "no task started"
                raise errors.RuntimeFailed(f"{subject}: service {service} did not start: {reason}")
            time.sleep(_POLL)

    def stop_container(self, name: str, *, timeout: float | None = None) -> None:
        """Fewer tasks (Swarm stops one with the spec's signal and grace period; ``timeout`` is the
        spec's, set at creation). A stop that hands over to a waiting member keeps the task."""
        subject = f"container {name}"
        service = self._require_service(name)
        with self._lock(service):
            # Read before the change: Swarm deletes a scaled-down task from its list once it is
            # shut down, and with it the only record of the node whose volume copy it made.
            self._note_copies(subject, service)
            written = self._change(service, subject, lambda now: self._stopped(now, name))
        if written is not None:
            grace = (timeout if timeout is not None else 10.0) + _STOP_MARGIN
            self._await_at_most(service, subject, members.replicas(members.read(written["Labels"])), grace)

    def _stopped(self, current: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        present = members.read(current["Spec"].get("Labels"))
        if name not in present:
            raise errors.NotFound(f"container {name}: no such service member on the swarm")
        updated = members.stopped(present, name)
        return None if updated == present else self._relabelled(current, updated)

    def _await_at_most(self, service: str, subject: str, replicas: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._on(subject):
                current = self._inspect(service) or {}
                listed = cast(list[dict[str, Any]], self.api.tasks(filters={"service": service}))
            running = [t for t in service_states.current_tasks(current, listed)
                       if service_states.task_state(t) in ("running", "starting")]  # fmt: skip
            alive = [t for t in listed if service_states.task_state(t) in ("running", "starting")]
            if len(running) <= replicas and len(alive) <= replicas:
                return
            time.sleep(_POLL)

    def remove_container(self, name: str) -> None:
        subject = f"container {name}"
        service = self._service_of(name)
        self._pending.pop(name, None)
        if service is None:
            return
        with self._lock(service):
            labels = ((self._inspect_translated(subject, service) or {}).get("Spec") or {}).get("Labels") or {}
            written = self._change(service, subject, lambda now: self._removed(now, name))
            if written is None:
                self._note_copies(subject, service)
                with contextlib.suppress(errors.NotFound), self._on(subject):
                    self.api.remove_service(service)
                self._await_tasks_gone(subject, service, labels)
        self._drop_unused(subject, labels.get(observed.LABEL_STACK, ""))

    def _await_tasks_gone(self, subject: str, service: str, labels: Mapping[str, str]) -> None:
        """Until the removed service's task containers on the manager's node are gone (a volume
        or network they hold cannot be removed before), at most their grace period and a margin."""
        spec = _container_spec({"Spec": {"Labels": labels}})
        deadline = time.monotonic() + (spec.stop_timeout if spec is not None else 10.0) + _STOP_MARGIN
        filters = {"label": [f"{service_specs.TASK_LABEL}={service}"]}
        while time.monotonic() < deadline:
            with self._on(subject):
                if not self.api.containers(all=True, filters=filters):
                    return
            time.sleep(_POLL)

    def _removed(self, current: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        """The spec without member ``name``, or None when it was the last (the service goes)."""
        present = members.read(current["Spec"].get("Labels"))
        updated = members.removed(present, name)
        return self._relabelled(current, updated) if updated else None

    def _drop_unused(self, subject: str, stack: str) -> None:
        """The stack's secrets and configs no service uses any more (an old content), and its own
        network once no service joins it: Swarm refuses to remove one still in use, which is then kept."""
        with self._on(subject):
            services = self.api.services()
        used: set[str] = set()
        for service in services:
            template = (service.get("Spec") or {}).get("TaskTemplate") or {}
            container = template.get("ContainerSpec") or {}
            used |= {str(ref.get("SecretID")) for ref in container.get("Secrets") or ()}
            used |= {str(ref.get("ConfigID")) for ref in container.get("Configs") or ()}
            used |= {str(n.get("Target")) for n in template.get("Networks") or ()}
        with self._on(subject):
            api = self.api
            for listed, remove in ((api.secrets, api.remove_secret), (api.configs, api.remove_config)):
                for found in listed(filters={"label": [f"{service_specs.FILE_LABEL}={stack}"]}):
                    if str(found["ID"]) not in used:
                        with contextlib.suppress(docker.errors.APIError):
                            remove(found["ID"])
            for network in self.api.networks(filters={"label": [f"{stack_networks.LABEL}={stack}"]}):
                if str(network["Id"]) not in used and network.get("Driver") == "overlay":
                    with contextlib.suppress(docker.errors.APIError):
                        self.api.remove_network(network["Id"])

    def rename_container(self, name: str, new_name: str) -> None:
        subject = f"container {name}"
        service = self._require_service(name)
        with self._lock(service):
            self._change(service, subject, lambda now: self._renamed(now, name, new_name))
            if (pending := self._pending.pop(name, None)) is not None:
                self._pending[new_name] = pending

    def _renamed(self, current: Mapping[str, Any], name: str, new_name: str) -> dict[str, Any] | None:
        present = members.read(current["Spec"].get("Labels"))
        if new_name in present:
            raise errors.Conflict(f"container {new_name} already exists")
        return self._relabelled(current, members.renamed(present, name, new_name))

    def update_container(self, name: str, resources: manifests.Resources) -> None:
        """New limits for every task of the service: Swarm replaces the tasks, one at a time."""
        subject = f"container {name}"
        service = self._require_service(name)

        def limited(current: Mapping[str, Any]) -> dict[str, Any] | None:
            spec = dict(current["Spec"])
            template = dict(spec["TaskTemplate"])
            if service_states.resources_of(template) == observed.ObservedResources(
                memory=resources.memory, cpus=resources.cpus, pids=resources.pids
            ):
                return None  # the same limits: Swarm would start no update to wait for
            reservations = (template.get("Resources") or {}).get("Reservations")
            template["Resources"] = service_specs.resources(resources) | ({"Reservations": reservations}
                                                                           if reservations else {})  # fmt: skip
            spec["TaskTemplate"] = template
            return spec

        with self._lock(service):
            before = self._last_update(service, subject)
            if self._change(service, subject, limited) is None:
                return
            with self._on(subject):
                current = self._inspect(service) or {}
            container_spec = _container_spec(current)
            if current["Spec"]["Mode"]["Replicated"]["Replicas"]:
                # A service whose spec label is unreadable still rolls: it gets the default time.
                seconds = _deadline(container_spec) if container_spec is not None else _DEFAULT_DEADLINE
                self._await_update(service, subject, seconds, before)

    # -- inspect while running ----------------------------------------------------------------

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[engine.LogLine]:
        """The service's logs: every task's lines (all replicas'), as ``docker service logs``."""
        subject = f"container {name}"
        service = self._require_service(name)
        # Swarm follows a service's logs until the service goes: with no task running, what was
        # printed is all there will be.
        follow = follow and bool(self._running_tasks(subject, service))
        for stream_id, raw_line in streams.logs_endpoint(
            self.api, "/services/{0}/logs", service, follow=follow, tail=tail, guard=lambda: self._on(subject)
        ):
            yield reading.log_line(stream_id, raw_line)

    def _running_tasks(self, subject: str, service: str) -> list[dict[str, Any]]:
        with self._on(subject):
            listed = cast(list[dict[str, Any]], self.api.tasks(filters={"service": service}))
        return [t for t in listed if service_states.task_state(t) == "running" and t.get("DesiredState") == "running"]

    def _task_container(self, name: str) -> tuple[docker_engine.DockerEngine, str]:
        """The dockerd and container of the newest running task of ``name``'s service that the
        engine reaches: on the manager's node, or on a node whose :data:`NODE_DOCKER_HOST_LABEL`
        names its dockerd (the manager's API reaches no other node's containers)."""
        subject = f"container {name}"
        service = self._require_service(name)
        running = self._running_tasks(subject, service)
        if not running:
            raise errors.RuntimeFailed(f"{subject} is not running")
        with self._on(subject):
            own = (self.api.info().get("Swarm") or {}).get("NodeID")
            addresses = {str(n.get("ID")): ((n.get("Spec") or {}).get("Labels") or {}).get(NODE_DOCKER_HOST_LABEL)
                         for n in self.api.nodes()}  # fmt: skip
        # Newest first: after (or during) a rolling update, the task on the service's new spec.
        for task in sorted(running, key=lambda t: str(t.get("CreatedAt", "")), reverse=True):
            container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
            address = addresses.get(str(task.get("NodeID")))
            if container and task.get("NodeID") == own:
                return self.local, str(container)
            if container and address:
                return self._node_engine(str(address)), str(container)
        raise errors.RuntimeFailed(
            f"{subject}: no task of service {service} runs on the manager's node or on a node labelled "
            f"{NODE_DOCKER_HOST_LABEL}=ADDRESS (its dockerd's); label the node, or ask its own dockerd"
        )

    def _node_engine(self, address: str) -> docker_engine.DockerEngine:
        """The Docker engine on another node's dockerd at ``address`` (made once, closed with this one)."""
        with self._locks_lock:
            found = self._nodes.get(address)
            if found is None:
                with translating.on(f"node {address}", where=address):
                    found = self._nodes[address] = docker_engine.DockerEngine(_node_client(address))
            return found

    def exec(
        self, name: str, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None
    ) -> engine.ExecResult:
        """In a task's container (see :meth:`_task_container` for which ones the engine reaches)."""
        daemon, container = self._task_container(name)
        return daemon.exec(container, argv, timeout=timeout, stdin=stdin)

    def stats(self, name: str) -> engine.Stats:
        daemon, container = self._task_container(name)
        return daemon.stats(container)

    def events(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        """The tasks' container events on the manager's node, each as its member's (the service's
        id, the member's name: see :func:`service_states.member_event`)."""
        filters = {"type": ["container"], "label": [service_specs.TASK_LABEL],
                   "event": list(reading.SUBSCRIBED_ACTIONS)}  # fmt: skip
        with self._on("events"):
            stream = self.api.events(filters=filters, decode=True)
        with streams.closed_on(stop, stream):
            while not stop.is_set():
                with self._on("events"):
                    try:
                        item = next(stream)
                    except StopIteration:
                        break
                event = self._member_event(item)
                # A task container's create is Swarm placing a task, not the member's creation.
                if event is not None and event.action != "create" and not stop.is_set():
                    yield event

    def _member_event(self, item: Mapping[str, Any]) -> engine.Event | None:
        service_id = ((item.get("Actor") or {}).get("Attributes") or {}).get(service_states.SERVICE_ID_LABEL)
        service, listed = None, []
        if service_id:
            with self._on("events"):
                service = self._inspect(str(service_id))
                if service is not None:
                    listed = cast(list[dict[str, Any]], self.api.tasks(filters={"service": str(service_id)}))
        return service_states.member_event(item, service, listed, service_specs.TASK_LABEL)

    def history(self, *, since: float = 0.0) -> list[engine.Event]:
        """What the swarm keeps of the members' lives (``engine.RecordsHistory``): each member's
        ``create`` from its record; the start, die (exit code), oom and health events of the tasks
        on the manager's node from its dockerd's kept events (a buffer of its last 256 or so, as
        the Docker engine's history); the tasks on other nodes from the task list (Swarm keeps a
        few per replica): a running task's start, an ended one's die (Swarm keeps no start time
        of a task that ended there). Times: the engine's clock for a create, the manager's else."""
        filters = {"type": ["container"], "label": [service_specs.TASK_LABEL], "event": sorted(reading.EVENT_ACTIONS)}
        window = {"since": f"{max(since - 1e-3, 0.0):.9f}", "until": f"{time.time():.9f}"}
        with self._on("events"):
            services = self._services()
            tasks = cast(list[dict[str, Any]], self.api.tasks()) if services else []
            node = str((self.api.info().get("Swarm") or {}).get("NodeID") or "")
            stream = self.api.events(**window, filters=filters, decode=True)
            try:
                items = list(stream)
            finally:
                stream.close()
        found = service_states.history(services, tasks, items, node, service_specs.TASK_LABEL)
        return [event for event in found if event.time >= since]

    def close(self) -> None:
        self.local.close()
        with self._locks_lock:
            nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            node.close()


def _container_spec(service: Mapping[str, Any]) -> manifests.ContainerSpec | None:
    """The manifest spec a service was made from (its spec label), for its deadlines; None when unreadable."""
    labels = (service.get("Spec") or {}).get("Labels") or {}
    document = observed.ObservedContainer(
        name="", labels=labels, container_id="", image="", image_id="", state="created"
    ).spec_json
    spec = (document or {}).get("spec")
    if not isinstance(spec, dict):
        return None
    try:
        return manifests.container_spec_from_document({**spec, "env": {}})
    except (errors.ReconcilerError, ValueError):
        return None


def _deadline(spec: manifests.ContainerSpec) -> float:
    return service_specs.ready_deadline(spec)


def _remove_copy(subject: str, name: str, address: str, owner: Mapping[str, str] | None) -> None:
    """Remove a node's copy of a volume through the node's own dockerd at ``address``, when it is
    ours (the owner labels of the manager's, ``owner``; any owned one when that is gone); while a
    task container still holds it (Swarm stops and removes them after their service, each within
    its grace period), again, for :data:`_COPY_WAIT` at most."""
    deadline = time.monotonic() + _COPY_WAIT
    with translating.on(subject, where=address):
        node = _node_client(address)
    try:
        with translating.on(subject, where=address):
            try:
                labels = node.api.inspect_volume(name).get("Labels") or {}
            except docker.errors.NotFound:
                return
        ours = reading.same_owner(labels, owner) if owner is not None else observed.LABEL_KIND in labels
        while ours:
            try:
                with contextlib.suppress(errors.NotFound), translating.on(subject, where=address):
                    node.api.remove_volume(name)
                return
            except errors.RuntimeFailed:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(_POLL)
    finally:
        node.close()


def _node_client(address: str) -> docker.DockerClient:
    """A client of another node's dockerd at ``address``, with TLS as the environment says (as the manager's)."""
    kwargs = {**docker.utils.kwargs_from_env(), "base_url": address, "version": "auto", "timeout": 60}
    return docker.DockerClient(**kwargs)
