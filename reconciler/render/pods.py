"""One container's spec as a Kubernetes pod template: the container, its volumes, probes and security.

Where it sits: under :mod:`.kubernetes`, which decides the workload kind, the Services, claims,
Secrets and policies around the pod. Each field of the spec is either mapped here, or named in a
message (``Container NAME: spec.FIELD ...``) by :func:`pod_spec` or by :func:`unmapped`: a field
that is set and that no rule reads is never dropped without a word. The Secret and ConfigMap
*names* a mounted file refers to are given by the caller (it owns those objects); the content is
never read here. Pure: no I/O, no YAML, no printing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from reconciler import manifests
from reconciler.manifests import models

Notes = list[str]
Json = dict[str, Any]

# Fields :func:`pod_spec` and :func:`container` read (or the workload level reads: replicas,
# restart, ports, networks, dependsOn), by their manifest spelling; every other field that is set
# gets the generic "no equivalent" message of :func:`unmapped`.
MAPPED = frozenset({
    "image", "replicas", "pullPolicy", "entrypoint", "command", "env", "envFiles", "workingDir", "user",
    "hostname", "dnsSearch", "dnsOptions", "extraHosts", "ports", "networks", "networkMode", "mounts",
    "resources", "restart", "healthcheck", "dependsOn", "stopSignal", "stopTimeout", "readOnlyRootfs",
    "capAdd", "capDrop", "privileged", "shmSize", "sysctls", "init", "securityOpt", "groupAdd", "ipc", "pid",
    "memoryReservation", "cpuShares", "secrets", "configs", "placement", "strategy", "minReadySeconds",
    "progressDeadline",
})  # fmt: skip

# Fields with no Kubernetes equivalent, and what to do instead.
NO_EQUIVALENT = {
    "domainname": "a pod has no NIS domain name",
    "dns": "upstream resolvers are the cluster DNS's configuration (CoreDNS forward), not a pod's",
    "volumesFrom": "mount the same PersistentVolumeClaim in both instead",
    "logging": "log rotation is the kubelet's (containerLogMaxSize, containerLogMaxFiles)",
    "ulimits": "resource limits per process are the container runtime's configuration",
    "devices": "devices come from a device plugin",
    "deviceCgroupRules": "devices come from a device plugin",
    "oomScoreAdj": "the kubelet sets it from the pod's QoS class (requests and limits)",
    "cpuset": "pinning CPUs is the kubelet's CPU manager (static policy, whole-CPU Guaranteed pods)",
}


def unmapped(name: str, spec: models.ContainerSpec) -> Notes:
    """A message for each field set in ``spec`` that no rule maps."""
    notes = []
    for field in manifests.to_document(spec, exclude_defaults=True):
        if field in NO_EQUIVALENT:
            notes.append(
                f"Container {name}: spec.{field} has no equivalent in Kubernetes ({NO_EQUIVALENT[field]}): left out"
            )
        elif field not in MAPPED:
            notes.append(f"Container {name}: spec.{field} has no equivalent in Kubernetes: left out")
    return notes


def seconds(value: float, what: str, notes: Notes, *, least: int = 1) -> int:
    """A duration as the whole seconds Kubernetes takes (at least ``least``), rounded up with a message."""
    whole = max(least, math.ceil(value))
    if whole != value:
        notes.append(f"{what}: {value:g}s is rounded up to {whole}s (Kubernetes counts whole seconds)")
    return whole


def quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity: 64Mi rather than 67108864 where it divides."""
    for suffix, unit in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def millicores(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


def probes(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    """Docker's health check as a readiness probe (an unhealthy pod leaves its Services, as an
    unhealthy dependency holds back ``dependsOn: healthy``), a startup probe for ``startPeriod``
    (failures during it do not count, as Docker's), and a liveness probe only with
    ``restart.onUnhealthy`` (Docker does not restart an unhealthy container either)."""
    check = spec.healthcheck
    if check is None or check.test[0] == "NONE":
        return {}
    command = check.test[1:] if check.test[0] == "CMD" else ["/bin/sh", "-c", check.test[1]]
    where = f"Container {name}: spec.healthcheck"
    period = seconds(check.interval, f"{where}.interval", notes)
    probe = {
        "exec": {"command": command},
        "periodSeconds": period,
        "timeoutSeconds": seconds(check.timeout, f"{where}.timeout", notes),
        "failureThreshold": check.retries,
    }
    found: Json = {"readinessProbe": probe}
    if spec.restart.on_unhealthy:
        found["livenessProbe"] = probe
    if check.start_period > 0:
        found["startupProbe"] = {**probe, "failureThreshold": math.ceil(check.start_period / period) + check.retries}
    return found


def resources(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    limits: Json = {}
    requests: Json = {}
    if spec.resources.memory is not None:
        limits["memory"] = quantity(spec.resources.memory)
    if spec.resources.cpus is not None:
        limits["cpu"] = millicores(spec.resources.cpus)
    if spec.memory_reservation is not None:
        requests["memory"] = quantity(spec.memory_reservation)
    if spec.cpu_shares is not None:
        # Kubernetes turns requests.cpu into CPU shares as millicores * 1024 / 1000: the inverse.
        wanted = spec.cpu_shares / 1024
        if spec.resources.cpus is not None and wanted > spec.resources.cpus:
            notes.append(f"Container {name}: spec.cpuShares {spec.cpu_shares} asks for more than resources.cpus "
                         "(a request above the limit is refused by Kubernetes): left out")  # fmt: skip
        else:
            requests["cpu"] = millicores(wanted)
    if spec.resources.pids is not None:
        notes.append(f"Container {name}: spec.resources.pids has no equivalent in Kubernetes (a pod's process "
                     "limit is the kubelet's podPidsLimit): left out")  # fmt: skip
    found = ({"limits": limits} if limits else {}) | ({"requests": requests} if requests else {})
    return {"resources": found} if found else {}


def _user(name: str, user: str | None, notes: Notes) -> Json:
    if user is None:
        return {}
    uid, _, gid = user.partition(":")
    found: Json = {}
    for key, value, what in (("runAsUser", uid, "user"), ("runAsGroup", gid, "group")):
        if value.isdigit():
            found[key] = int(value)
        elif value:
            notes.append(f"Container {name}: spec.user {what} {value!r} is a name, and Kubernetes takes only "
                         "numbers (runAsUser, runAsGroup): left out; write the number")  # fmt: skip
    return found


def _security_options(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    found: Json = {}
    for option in spec.security_opt:
        if option == "no-new-privileges:true":
            found["allowPrivilegeEscalation"] = False
        elif option == "seccomp=unconfined":
            found["seccompProfile"] = {"type": "Unconfined"}
        elif option != "no-new-privileges:false":
            notes.append(f"Container {name}: spec.securityOpt {option} has no equivalent here (a seccomp or "
                         "AppArmor profile must be installed on the nodes and named by the pod): left out")  # fmt: skip
    return found


def security(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    found: Json = _user(name, spec.user, notes) | _security_options(name, spec, notes)
    capabilities = {
        key: [cap.removeprefix("CAP_") for cap in caps]
        for key, caps in (("add", spec.cap_add), ("drop", spec.cap_drop))
        if caps
    }
    if capabilities:
        found["capabilities"] = capabilities
    if spec.read_only_rootfs:
        found["readOnlyRootFilesystem"] = True
    if spec.privileged:
        found["privileged"] = True
    return {"securityContext": found} if found else {}


def container(name: str, spec: models.ContainerSpec, env: Mapping[str, str], notes: Notes) -> Json:
    """The pod's one container (named after the service), without its volume mounts."""
    found: Json = {"name": name, "image": spec.image, "imagePullPolicy": spec.pull_policy}
    if spec.entrypoint is not None:
        found["command"] = list(spec.entrypoint)
    if spec.command is not None:
        found["args"] = list(spec.command)
    if spec.working_dir is not None:
        found["workingDir"] = spec.working_dir
    if env:
        found["env"] = [{"name": key, "value": value} for key, value in env.items()]
    ports = [
        {"containerPort": p.container_port, "protocol": p.protocol.upper()} | _host_port(name, index, p, notes)
        for index, p in enumerate(spec.ports)
    ]
    if ports:
        found["ports"] = [dict(t) for t in dict.fromkeys(tuple(p.items()) for p in ports)]
    found |= resources(name, spec, notes) | probes(name, spec, notes) | security(name, spec, notes)
    return found


def _host_port(name: str, index: int, port: models.Port, notes: Notes) -> Json:
    """``mode: host`` (Swarm's: the port on the node that runs each task) as a hostPort: the port
    on the node that runs each pod; the Services of :mod:`.kubernetes` leave it out."""
    if port.mode != "host":
        return {}
    where = f"Container {name}: spec.ports[{index}]"
    if port.host_port is None:
        notes.append(f"{where}: mode host with a random port has no equivalent (a hostPort is a number): "
                     "not published")  # fmt: skip
        return {}
    if port.host_port_last is not None and port.host_port_last != port.host_port:
        notes.append(f"{where}: mode host with a range becomes hostPort {port.host_port} on each pod's node")
    return {"hostPort": port.host_port}


# Swarm's constraint fields and the node labels Kubernetes sets for the same facts.
_NODE_FIELDS = {"node.hostname": "kubernetes.io/hostname", "node.platform.os": "kubernetes.io/os",
                "node.platform.arch": "kubernetes.io/arch"}  # fmt: skip
# ``uname -m`` names (Swarm's) → Go's (Kubernetes').
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i386": "386", "i686": "386"}
_CONSTRAINT = re.compile(r"^\s*(?P<field>[A-Za-z0-9_./-]+)\s*(?P<op>==|!=)\s*(?P<value>\S+)\s*$")


def affinity(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    """Swarm's placement constraints as a required node affinity: ``node.labels.KEY`` is the node
    label KEY (Kubernetes' nodes must carry the same labels), the hostname, OS and architecture
    the well-known node labels; ``==`` is In, ``!=`` NotIn. The others (a node's role or id, an
    engine label) are named in a message."""
    expressions = []
    for index, constraint in enumerate(spec.placement.constraints):
        where = f"Container {name}: spec.placement.constraints[{index}] {constraint!r}"
        found = _CONSTRAINT.match(constraint)
        field = found["field"] if found else ""
        key = field.removeprefix("node.labels.") if field.startswith("node.labels.") else _NODE_FIELDS.get(field)
        if found is None or key is None:
            notes.append(f"{where} has no equivalent (Kubernetes places by node labels: label the nodes and "
                         "constrain on node.labels.KEY): left out")  # fmt: skip
            continue
        value = _ARCHES.get(found["value"], found["value"]) if field == "node.platform.arch" else found["value"]
        if not (_LABEL_KEY.match(key) and len(value) <= 63 and _LABEL_VALUE.match(value)):
            notes.append(f"{where}: {key}={value} is no valid Kubernetes node label: left out")
            continue
        operator = "In" if found["op"] == "==" else "NotIn"
        expressions.append({"key": key, "operator": operator, "values": [value]})
    if not expressions:
        return {}
    required = {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}}


# A mounted file's object: (kind of volume source, its name key, the object's name).
FileSource = tuple[str, str, str]


def mounts(
    name: str, spec: models.ContainerSpec, files: Callable[[models.MountedFile], FileSource], notes: Notes
) -> tuple[list[Json], list[Json]]:
    """The pod's volumes and the container's mounts: claims, host paths, memory, secrets, configs."""
    volumes: list[Json] = []
    mounted: list[Json] = []
    for index, mount in enumerate(spec.mounts):
        volume = f"{mount.type}-{index}"
        if isinstance(mount, models.VolumeMount):
            volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": kubernetes_name(mount.source)}})
        elif isinstance(mount, models.BindMount):
            notes.append(f"Container {name}: spec.mounts[{index}] binds {mount.source}: rendered as a hostPath "
                         "volume, a path on whichever node runs the pod")  # fmt: skip
            volumes.append({"name": volume, "hostPath": {"path": mount.source}})
        else:
            volumes.append({"name": volume, "emptyDir": _memory(mount.size)})
            if mount.mode is not None or mount.options:
                notes.append(f"Container {name}: spec.mounts[{index}] tmpfs mode and options have no equivalent "
                             "(an emptyDir in memory): left out")  # fmt: skip
        read_only = {"readOnly": True} if getattr(mount, "read_only", False) else {}
        mounted.append({"name": volume, "mountPath": mount.target} | read_only)
    for index, item in enumerate(models.mounted_files(spec)):
        kind, key, object_name = files(item)
        volume = f"file-{index}"
        entry = {"key": item.name, "path": item.name, "mode": item.mode}
        volumes.append({"name": volume, kind: {key: object_name, "items": [entry]}})
        mounted.append({"name": volume, "mountPath": item.path, "subPath": item.name, "readOnly": True})
        if item.uid or item.gid:
            notes.append(f"Container {name}: {item.name}: uid and gid have no equivalent (Kubernetes' files are "
                         "root's, or the pod's fsGroup's): left out")  # fmt: skip
    if spec.shm_size is not None:
        volumes.append({"name": "shm", "emptyDir": _memory(spec.shm_size)})
        mounted.append({"name": "shm", "mountPath": "/dev/shm"})  # noqa: S108 (the pod's own, as Docker's)
    return volumes, mounted


def _memory(size: int | None) -> Json:
    return {"medium": "Memory"} | ({"sizeLimit": quantity(size)} if size else {})


def _namespaces(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    found: Json = {}
    if spec.network_mode == "host":
        found |= {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
    elif spec.network_mode != "bridge":
        notes.append(f"Container {name}: spec.networkMode {spec.network_mode} has no equivalent (containers that "
                     "share a network namespace are containers of one pod): left out")  # fmt: skip
    for field, mode, key in (("ipc", spec.ipc, "hostIPC"), ("pid", spec.pid, "hostPID")):
        if mode == "host":
            found[key] = True
        elif mode is not None and mode.startswith("container:"):
            notes.append(f"Container {name}: spec.{field} {mode} has no equivalent (containers that share it "
                         "are containers of one pod): left out")  # fmt: skip
    if spec.init:
        # The pause container becomes pid 1 and reaps zombies, as Docker's init does.
        found["shareProcessNamespace"] = True
    return found


def _resolver(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    found: Json = {}
    first, domain = spec.uts_names
    if first is not None:
        found["hostname"] = first
    if domain is not None and spec.hostname is not None and "." in spec.hostname:
        notes.append(f"Container {name}: spec.hostname's domain {domain} has no equivalent: left out")
    config: Json = {}
    if spec.dns_search:
        config["searches"] = list(spec.dns_search)
    if spec.dns_options:
        config["options"] = [dict(zip(("name", "value"), o.split(":", 1), strict=False)) for o in spec.dns_options]
    if config:
        found["dnsConfig"] = config
    aliases: dict[str, list[str]] = {}
    for entry in spec.extra_hosts:
        host, _, address = entry.partition(":")
        if address == models.HOST_GATEWAY:
            notes.append(f"Container {name}: spec.extraHosts {host}:host-gateway has no equivalent: left out")
        else:
            aliases.setdefault(address.strip("[]"), []).append(host)
    if aliases:
        found["hostAliases"] = [{"ip": ip, "hostnames": hosts} for ip, hosts in aliases.items()]
    return found


def _groups(name: str, spec: models.ContainerSpec, notes: Notes) -> Json:
    found: Json = {}
    numbers = [int(group) for group in spec.group_add if group.isdigit()]
    for group in spec.group_add:
        if not group.isdigit():
            notes.append(f"Container {name}: spec.groupAdd {group!r} is a name, and Kubernetes takes only "
                         "numbers (supplementalGroups): left out")  # fmt: skip
    if numbers:
        found["supplementalGroups"] = numbers
    if spec.sysctls:
        found["sysctls"] = [{"name": key, "value": value} for key, value in spec.sysctls.items()]
    return {"securityContext": found} if found else {}


_DEFAULT_STOP = frozenset({None, "SIGTERM"})


def pod_spec(
    name: str,
    spec: models.ContainerSpec,
    env: Mapping[str, str],
    files: Callable[[models.MountedFile], FileSource],
    notes: Notes,
) -> Json:
    """The pod template's spec for service ``name`` (restartPolicy is the workload's to add)."""
    volumes, mounted = mounts(name, spec, files, notes)
    main = container(name, spec, env, notes) | ({"volumeMounts": mounted} if mounted else {})
    found: Json = {"containers": [main]}
    found |= _namespaces(name, spec, notes) | _resolver(name, spec, notes) | _groups(name, spec, notes)
    found |= affinity(name, spec, notes)
    if volumes:
        found["volumes"] = volumes
    found["terminationGracePeriodSeconds"] = seconds(spec.stop_timeout, f"Container {name}: spec.stopTimeout", notes)
    if spec.stop_signal not in _DEFAULT_STOP:
        notes.append(f"Container {name}: spec.stopSignal {spec.stop_signal} has no equivalent (Kubernetes sends "
                     "SIGTERM, or the image's STOPSIGNAL): left out")  # fmt: skip
    for dependency in spec.depends_on:
        notes.append(f"Container {name}: spec.dependsOn {dependency.name} ({dependency.condition}) has no "
                     "equivalent: Kubernetes starts every pod at once; the container must retry until "
                     f"{dependency.name} answers (a readiness probe keeps a pod out of its Services "
                     "until ready)")  # fmt: skip
    return found


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def kubernetes_name(name: str) -> str:
    """A Network's or Volume's name (compose's ``shop_data`` too) as a Kubernetes object's name: a
    DNS subdomain, lowercase, ``_`` written ``-``."""
    parts = (re.sub(r"[^a-z0-9-]", "-", part).strip("-") for part in name.lower().split("."))
    return ".".join(part for part in parts if part)[:253].strip(".-") or "x"


def user_labels(labels: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The manifest's own labels as Kubernetes labels, and those that are no valid Kubernetes
    label (a longer value, a space) as annotations, which take any text: kept either way."""
    as_labels: dict[str, str] = {}
    as_annotations: dict[str, str] = {}
    for key, value in labels.items():
        if key.startswith("reconciler."):
            continue
        valid = _LABEL_KEY.match(key) and len(value) <= 63 and _LABEL_VALUE.match(value)
        (as_labels if valid else as_annotations)[key] = value
    return as_labels, as_annotations
