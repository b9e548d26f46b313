"""Compose services, networks, volumes, secrets and configs as manifest documents.

Sits above :mod:`.located` and :mod:`.shorthands`, under :mod:`.loader`. Input: one project, its
files merged and in long forms. Output: manifest documents (plain values, not yet validated: the
manifest loader validates them, so one set of rules holds for both) with the place in the
compose files of every field they hold, so that a problem found later still points at
``compose.yaml:line:col``. Every field is either written into a document or refused here with its
reason (:data:`REFUSED` and the checks below): nothing is dropped silently. The names are
compose's: container ``<project>-<service>-<n>`` (a DNS label: the project's and service's other
characters written ``-``), networks and volumes ``<project>_<name>`` as compose writes them. This
module must not read files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from reconciler.compose.located import Located, Path, Where

API_VERSION = "reconciler/v1"
NO_BUILD = "this project does not build images; build it with docker build and name it in image:"

# Fields written into the spec as they are, under their manifest name.
RENAMED = {
    "image": "image", "working_dir": "workingDir", "user": "user", "hostname": "hostname",
    "domainname": "domainname", "dns": "dns", "dns_search": "dnsSearch", "dns_opt": "dnsOptions",
    "extra_hosts": "extraHosts", "command": "command", "entrypoint": "entrypoint", "stop_signal": "stopSignal",
    "stop_grace_period": "stopTimeout", "read_only": "readOnlyRootfs", "cap_add": "capAdd", "cap_drop": "capDrop",
    "privileged": "privileged", "ulimits": "ulimits", "shm_size": "shmSize", "sysctls": "sysctls", "init": "init",
    "devices": "devices", "device_cgroup_rules": "deviceCgroupRules", "security_opt": "securityOpt",
    "oom_score_adj": "oomScoreAdj", "group_add": "groupAdd", "cpuset": "cpuset", "cpu_shares": "cpuShares",
    "mem_reservation": "memoryReservation",
}  # fmt: skip
RESOURCES = {"mem_limit": "memory", "cpus": "cpus", "pids_limit": "pids"}
# Fields compose has and the manifests do not: refused with this reason.
REFUSED = {
    "expose": "expose only documents a port; publish it with ports:, or leave it out",
    "links": "links are legacy; services reach each other by name on their networks",
    "external_links": "external_links are legacy; attach the other container's network instead",
    "platform": "the platform is the host's; pull an image for it",
    "tty": "containers here have no terminal; use reconcile exec -t",
    "stdin_open": "containers here have no stdin; use reconcile exec -i",
}
CONDITIONS = {"service_started": "started", "service_healthy": "healthy",
               "service_completed_successfully": "completed"}  # fmt: skip
PULL = {"always": "Always", "never": "Never", "missing": "IfNotPresent", "if_not_present": "IfNotPresent"}
RESTART_CONDITIONS = {"none": "no", "on-failure": "on-failure", "any": "always"}


def label(text: str) -> str:
    """A name as a DNS label: lowercase, every other character a ``-``."""
    return re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")[:63] or "x"


def former_volume_names(stack: str, name: str) -> dict[str, str]:
    """The names earlier versions gave the compose volume now named ``name`` in ``stack``, each with
    the volume's key: they wrote ``<stack>-<key as a DNS label>`` where compose (and now this
    package) writes ``<project>_<key>`` (``stack`` being the project's name as a DNS label). Empty
    for a name that is not ``<project>_<key>`` of that stack. The planner asks, so that a volume
    holding a project's data under its old name is never silently replaced by an empty one."""
    return {
        f"{stack}-{label(name[index + 1 :])}": name[index + 1 :]
        for index, character in enumerate(name)
        if character == "_" and label(name[:index]) == stack
    }


@dataclasses.dataclass(slots=True)
class Problem:
    where: Where
    field: Path
    message: str
    warning: bool = False


@dataclasses.dataclass(slots=True)
class Document:
    """A manifest document being written: its value and ``(document path, compose path, place)``."""

    value: dict[str, object]
    places: list[tuple[Path, Path, Where]]

    @property
    def spec(self) -> dict[str, object]:
        spec = self.value.setdefault("spec", {})
        assert isinstance(spec, dict)
        return spec

    def put(self, doc_path: Path, value: object, compose_path: Path, where: Where) -> None:
        """Write ``value`` at ``doc_path``, placed where ``compose_path`` was written."""
        target: dict[str, object] = self.value
        for element in doc_path[:-1]:
            inner = target.setdefault(str(element), {})
            assert isinstance(inner, dict)
            target = inner
        target[str(doc_path[-1])] = value
        self.places.append((doc_path, compose_path, where))


@dataclasses.dataclass(slots=True)
class Project:
    """What translating needs besides the merged files."""

    name: str
    directory: str
    environment: Mapping[str, str]
    profiles: frozenset[str]
    # The variables of the services of included projects (theirs over their env files), by service.
    included: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class Translation:
    documents: list[Document] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)


def begin(project: Project, merged: Located) -> tuple[Context, dict[str, dict[str, object]]]:
    """The project's networks and volumes translated, and its active services (by name) to
    translate next (:mod:`.services`)."""
    out = Translation()
    top = merged.value if isinstance(merged.value, dict) else {}
    services = top.get("services") or {}
    if not isinstance(services, dict):
        out.problems.append(Problem(merged.at(("services",)), ("services",), "services must be a mapping"))
        services = {}
    active = {n: s for n, s in services.items() if isinstance(s, dict) and _active(s, project.profiles)}
    names = {service: _container_name(project, service, spec) for service, spec in active.items()}
    # A reference that needs one container (service:x, volumes_from) takes x's first replica, as compose.
    single = {
        service: names[service] if _replicas(spec) == 1 else f"{names[service]}-1" for service, spec in active.items()
    }
    context = Context(project, merged, out, names, top, single)
    _refuse_top_level(context, top)
    networks_used = {"default"} if any(_uses_default(s) for s in active.values()) else set()
    for service in active.values():
        networks_used.update(n for n in (service.get("networks") or {}) if isinstance(n, str))
    context.networks(networks_used)
    context.volumes()
    return context, active


def _active(service: dict[str, object], profiles: frozenset[str]) -> bool:
    wanted = service.get("profiles") or []
    return not wanted or "*" in profiles or bool(profiles & set(map(str, wanted)))  # type: ignore[call-overload]


def _uses_default(service: dict[str, object]) -> bool:
    return not service.get("networks") and "network_mode" not in service


def _replicas(spec: dict[str, object]) -> object:
    deploy = spec.get("deploy")
    if isinstance(deploy, dict) and "replicas" in deploy:
        return deploy["replicas"]
    return spec.get("scale", 1)


def _container_name(project: Project, service: str, spec: dict[str, object]) -> str:
    if isinstance(spec.get("container_name"), str):
        return str(spec["container_name"])
    base = f"{label(project.name)}-{label(service)}"
    return f"{base}-1" if _replicas(spec) == 1 else base


def _refuse_top_level(context: Context, top: dict[str, object]) -> None:
    for key in top:
        if key in ("services", "networks", "volumes", "secrets", "configs", "name", "version", "include"):
            continue
        if not key.startswith("x-"):
            context.refuse((key,), (key,), f"unknown top-level field `{key}`")


@dataclasses.dataclass(slots=True)
class ServiceDocument:
    name: str
    path: Path
    document: Document

    def put(self, context: Context, doc_path: Path, value: object, field: str | Path) -> None:
        compose_path = (*self.path, *((field,) if isinstance(field, str) else field))
        self.document.put(doc_path, value, compose_path, context.merged.at(compose_path))


@dataclasses.dataclass(slots=True)
class Context:
    project: Project
    merged: Located
    out: Translation
    names: dict[str, str]
    top: dict[str, object]
    single: dict[str, str]
    network_names: dict[str, tuple[str, bool]] = dataclasses.field(default_factory=dict)
    volume_names: dict[str, tuple[str, bool]] = dataclasses.field(default_factory=dict)

    @property
    def stack(self) -> str:
        return label(self.project.name)

    def refuse(self, _unused: Path, path: Path, message: str, *, warning: bool = False) -> None:
        self.out.problems.append(Problem(self.merged.key_at(path), path, message, warning))

    def metadata(self, name: str, labels: object = None) -> dict[str, object]:
        meta: dict[str, object] = {"name": name, "stack": self.stack}
        if labels:
            meta["labels"] = labels
        return meta

    def networks(self, used: set[str]) -> None:
        """The networks services attach to (compose creates no other), ``default`` included."""
        declared = self.top.get("networks") or {}
        declared = declared if isinstance(declared, dict) else {}
        for key in sorted(used):
            if key != "default" and key not in declared:
                continue  # the service that names it is refused (attachments.attach_networks)
            spec = declared.get(key) or {}
            path = ("networks", key)
            if not isinstance(spec, dict):
                self.refuse(path, path, "a network is a mapping")
                continue
            external = bool(spec.get("external"))
            name = str(spec.get("name") or (key if external else f"{self.project.name}_{key}"))
            self.network_names[key] = (name, external)
            if not external:
                _network_document(self, key, name, spec)

    def volumes(self) -> None:
        declared = self.top.get("volumes") or {}
        for key, written in declared.items() if isinstance(declared, dict) else []:
            spec = written or {}
            path = ("volumes", key)
            if not isinstance(spec, dict):
                self.refuse(path, path, "a volume is a mapping")
                continue
            name = str(spec.get("name") or (key if spec.get("external") else f"{self.project.name}_{key}"))
            self.volume_names[key] = (name, bool(spec.get("external")))
            if not spec.get("external"):
                _volume_document(self, key, name, spec)

    def anonymous_volume(self, service: str, target: str, path: Path) -> str:
        """The Volume standing for the anonymous volume ``service`` mounts at ``target`` (compose
        makes one per container and keeps it until ``down -v``): ``<project>_<service>-<hash of
        the target>``, the same at every load, a Volume of the stack like the declared ones, so
        it is kept across recreations and deleted only when the user asks (``--prune-volumes``)."""
        name = f"{self.project.name}_{service}-{hashlib.sha256(target.encode()).hexdigest()[:12]}"
        document = Document({"apiVersion": API_VERSION, "kind": "Volume", "metadata": self.metadata(name)}, [])
        document.places.append(((), path, self.merged.at(path)))
        self.out.documents.append(document)
        return name

    def service_document(self, name: str) -> ServiceDocument:
        """The container document of service ``name``, its spec still empty."""
        path = ("services", name)
        where = self.merged.at(path)
        document = Document({"apiVersion": API_VERSION, "kind": "Container"}, [((), path, where)])
        document.put(("metadata",), self.metadata(self.names[name]), path, where)
        document.put(("spec",), {}, path, where)
        self.out.documents.append(document)
        return ServiceDocument(name, path, document)


def _network_document(context: Context, key: str, name: str, spec: dict[str, object]) -> None:
    path = ("networks", key)
    where = context.merged.at(path)
    document = Document({"apiVersion": API_VERSION, "kind": "Network", "metadata": context.metadata(name)}, [])
    document.places.append(((), path, where))
    network: dict[str, object] = {}
    for field, value in spec.items():
        here = (*path, field)
        if field.startswith("x-") or field == "name" or (field == "driver" and value == "bridge"):
            continue
        if field == "internal":
            network["internal"] = value
        elif field == "driver_opts":
            network["options"] = {k: str(v) for k, v in value.items()} if isinstance(value, dict) else value
        elif field == "labels":
            document.value["metadata"]["labels"] = value  # type: ignore[index]
        elif field == "enable_ipv6" and value is False:
            continue
        elif field == "ipam":
            _ipam(context, network, here, value)
        else:
            context.refuse(here, here, f"networks: `{field}` has no manifest field here (bridge networks only)")
        document.places.append((("spec", _NETWORK_FIELDS.get(field, field)), here, context.merged.at(here)))
    document.value["spec"] = network
    context.out.documents.append(document)


_NETWORK_FIELDS = {"driver_opts": "options", "ipam": "subnet"}


def _ipam(context: Context, network: dict[str, object], path: Path, value: object) -> None:
    configs = value.get("config") if isinstance(value, dict) else None
    extra = [
        k
        for k in (value if isinstance(value, dict) else {})
        if k not in ("config", "driver") and not k.startswith("x-")
    ]
    if extra or (isinstance(value, dict) and value.get("driver", "default") != "default"):
        context.refuse(path, path, "ipam: only config with one subnet (and gateway) is supported")
    if not configs:
        return
    if not isinstance(configs, list) or len(configs) != 1 or not isinstance(configs[0], dict):
        context.refuse(path, (*path, "config"), "ipam.config: one entry {subnet, gateway} is supported")
        return
    for field, item in configs[0].items():
        if field in ("subnet", "gateway"):
            network[field] = item
        else:
            context.refuse(path, (*path, "config", 0, field), f"ipam.config.{field} has no manifest field")


def _volume_document(context: Context, key: str, name: str, spec: dict[str, object]) -> None:
    path = ("volumes", key)
    document = Document({"apiVersion": API_VERSION, "kind": "Volume", "metadata": context.metadata(name)}, [])
    document.places.append(((), path, context.merged.at(path)))
    volume: dict[str, object] = {}
    for field, value in spec.items():
        here = (*path, field)
        if field.startswith("x-") or field == "name" or (field == "driver" and value == "local"):
            continue
        if field == "driver_opts":
            volume["options"] = {k: str(v) for k, v in value.items()} if isinstance(value, dict) else value
            document.places.append((("spec", "options"), here, context.merged.at(here)))
        elif field == "labels":
            document.value["metadata"]["labels"] = value  # type: ignore[index]
            document.places.append((("metadata", "labels"), here, context.merged.at(here)))
        else:
            context.refuse(here, here, f"volumes: `{field}` has no manifest field here (local volumes only)")
    document.value["spec"] = volume
    context.out.documents.append(document)


def environment_value(key: str, value: object, environment: Mapping[str, str]) -> str | None:
    """An ``environment`` entry's value as compose sets it: ``KEY`` alone takes the loading
    process's variable (none when unset); numbers and booleans as text."""
    if value is None:
        return environment.get(key, os.environ.get(key))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def absolute(directory: str, path: str) -> str:
    """A path of a compose file (``./x``, ``~/x``, ``x``, ``/x``) as an absolute one."""
    if path.startswith("~"):
        path = os.path.expanduser(path)
    return (
        os.path.normpath(os.path.join(directory, path))
        if not PurePosixPath(path).is_absolute()
        else os.path.normpath(path)
    )


def exists(path: str) -> bool:
    return os.path.exists(path)
