"""Swarm backend, requests → Engine API bodies: what a container of the plan becomes as a Swarm service.

Where it sits: under :mod:`.engine`, which sends these bodies (``POST /services/create``,
``/services/{id}/update``); pure, no daemon, no docker SDK. The rules shared with the Docker
backend (a mount, a health check, a network's address pool) are imported from
:mod:`reconciler.backends.docker.configs`, not written twice. The mapping:

* the task template's ``ContainerSpec``: image, command, env, user, folder, hostname, health
  check, stop signal and grace period, mounts, read-only root, init, capabilities, sysctls,
  ulimits, groups, resolver settings, extra hosts, secrets and configs (Swarm objects named by
  name and content digest, see :func:`file_object_name`);
* ``restart`` → the task restart policy: ``always``/``unless-stopped`` → ``any``, ``on-failure``
  (``maxRetries``) → ``on-failure``, ``no`` → ``none``; a backoff's first delay is Swarm's delay;
  an unhealthy task is always replaced by Swarm (``onUnhealthy`` is its only behaviour);
* ``resources`` → limits (memory, CPUs, pids), ``memoryReservation`` → a reservation;
* ``placement.constraints`` → placement constraints;
* ports → the endpoint spec: ``mode: ingress`` through the routing mesh (the service gets a
  virtual IP), ``mode: host`` on the node of each task; a service with no ingress port resolves
  by DNS round robin, its name answering with every task's address (as a replicated service's
  name answers with every replica on the other engines);
* networks → attachments with aliases; none named → the stack's own overlay network;
* replacements → the update config: one task at a time, ``start-first`` (``stop-first`` when the
  manifest says so or a host-mode port would be bound twice on one node), ``failure_action:
  rollback``, each new task watched ``minReadySeconds`` (Swarm's monitor window; a task with a
  health check counts as running only once healthy).

Fields with no Swarm equivalent are refused by :func:`unsupported`, each with what to do instead.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import manifests, observed, plans, vocabulary
from reconciler.backends.docker import configs

# Labels of the Swarm secrets and configs this backend makes: which stack's, and that they are ours.
FILE_LABEL = "reconciler.swarm.file"
# On each task's container: its service, so that events name it (never the owner labels: a
# ``--engine docker`` on the same daemon must not take tasks for containers of its own).
TASK_LABEL = "reconciler.swarm.service"
_NAME_LIMIT = 64


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def unsupported(spec: manifests.ContainerSpec) -> list[str]:
    """What the spec asks for that a Swarm service cannot do, one message per field (empty: all fine)."""
    found = []
    if spec.network_mode != "bridge":
        found.append(f"networkMode {spec.network_mode}: a service joins networks (declare them under networks)")
    refused = {
        "volumesFrom": spec.volumes_from, "devices": spec.devices, "deviceCgroupRules": spec.device_cgroup_rules,
        "securityOpt": spec.security_opt, "oomScoreAdj": spec.oom_score_adj, "cpuset": spec.cpuset,
        "cpuShares": spec.cpu_shares, "shmSize": spec.shm_size, "domainname": spec.uts_names[1],
        "ipc": spec.ipc, "pid": spec.pid,
    }  # fmt: skip
    found += [f"{field}: Swarm services have no such setting" for field, value in refused.items() if value]
    if spec.privileged:
        found.append("privileged: Swarm services cannot run privileged (add the capabilities needed instead)")
    for port in spec.ports:
        if port.host_ip not in (None, "0.0.0.0"):  # noqa: S104 (a comparison, not a bind)
            found.append(f"ports: {port.host_ip}: Swarm publishes on every address of a node, not on one")
    for tmpfs in spec.mounts:
        if isinstance(tmpfs, manifests.TmpfsMount) and tmpfs.options:
            found.append(f"mounts {tmpfs.target}: tmpfs flags ({', '.join(tmpfs.options)}) are not in Swarm's mounts")
    return found


def restart_policy(restart: manifests.Restart) -> dict[str, Any]:
    """The task restart policy for a manifest's restart policy."""
    condition = {"always": "any", "unless-stopped": "any", "on-failure": "on-failure", "no": "none"}[restart.policy]
    policy: dict[str, Any] = {"Condition": condition, "MaxAttempts": restart.max_retries or 0}
    if restart.backoff is not None:
        policy["Delay"] = _ns(restart.backoff.initial)
    return policy


def resources(resources: manifests.Resources, spec: manifests.ContainerSpec | None = None) -> dict[str, Any]:
    """``TaskTemplate.Resources``: limits (absent ones unset: a service update replaces them all)."""
    limits: dict[str, Any] = {}
    if resources.memory is not None:
        limits["MemoryBytes"] = resources.memory
    if resources.cpus is not None:
        limits["NanoCPUs"] = round(resources.cpus * 1e9)
    if resources.pids is not None:
        limits["Pids"] = resources.pids
    result: dict[str, Any] = {"Limits": limits}
    if spec is not None and spec.memory_reservation is not None:
        result["Reservations"] = {"MemoryBytes": spec.memory_reservation}
    return result


def file_object_name(stack: str, item: manifests.MountedFile, content: bytes, *, secret: bool) -> str:
    """The Swarm secret's or config's name: the stack's and the file's names and the content's
    digest. Swarm's secrets and configs cannot change, so a new content is a new object (the
    service moves to it, the old one is removed once no service uses it)."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    kind = "secret" if secret else "config"
    readable = f"{stack}_{kind}_{item.name}"[: _NAME_LIMIT - len(digest) - 1]
    return f"{readable}_{digest}"


def file_reference(item: manifests.MountedFile, object_id: str, object_name: str, *, secret: bool) -> dict[str, Any]:
    """A ``SecretReference``/``ConfigReference``: the file at its path, with its owner and mode."""
    file = {"Name": item.path, "UID": str(item.uid), "GID": str(item.gid), "Mode": item.mode}
    key = "Secret" if secret else "Config"
    return {f"{key}ID": object_id, f"{key}Name": object_name, "File": file}


def _process(request: plans.ContainerRequest, service: str) -> dict[str, Any]:
    """The ``ContainerSpec`` fields of what runs and as whom."""
    spec = request.spec
    stack = request.labels.get(observed.LABEL_STACK, "")
    container: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in sorted(request.env.items())],
        "Labels": {TASK_LABEL: service, observed.LABEL_STACK: stack},
        "StopGracePeriod": _ns(math.ceil(spec.stop_timeout)),
        "ReadOnly": spec.read_only_rootfs,
    }
    optional = {
        "Command": spec.entrypoint, "Args": spec.command, "Dir": spec.working_dir, "User": spec.user,
        "Hostname": spec.uts_names[0], "StopSignal": spec.stop_signal, "Groups": spec.group_add or None,
        "CapabilityAdd": spec.cap_add or None, "CapabilityDrop": spec.cap_drop or None,
        "Sysctls": dict(spec.sysctls) or None, "Init": spec.init or None,
    }  # fmt: skip
    container.update({key: value for key, value in optional.items() if value is not None})
    if spec.healthcheck is not None:
        container["Healthcheck"] = configs.healthcheck(spec.healthcheck)
    if spec.ulimits:
        container["Ulimits"] = [{"Name": n, "Soft": u.soft, "Hard": u.hard} for n, u in spec.ulimits.items()]
    if spec.extra_hosts:
        # Swarm's hosts entries are written as /etc/hosts lines: "IP NAME".
        container["Hosts"] = [f"{ip} {name}" for name, _, ip in (h.partition(":") for h in spec.extra_hosts)]
    resolver = {"Nameservers": spec.dns, "Search": spec.dns_search, "Options": spec.dns_options}
    if any(resolver.values()):
        container["DNSConfig"] = {key: list(value) for key, value in resolver.items() if value}
    return container


def _mounts(spec: manifests.ContainerSpec, volume_options: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The mounts; a named volume carries its labels and driver options, so that each node that
    runs a task makes the same local volume."""
    mounts = []
    for item in spec.mounts:
        mount = configs.mount(item)
        if isinstance(item, manifests.VolumeMount) and item.source in volume_options:
            mount["VolumeOptions"] = dict(volume_options[item.source])
        mounts.append(mount)
    return mounts


def networks(spec: manifests.ContainerSpec, service: str, default_network: str | None) -> list[dict[str, Any]]:
    """The network attachments: declared ones with their aliases (the service's own name answers
    on each by itself), else the stack's own network."""
    if not spec.networks:
        return [{"Target": default_network}] if default_network else []
    return [
        {"Target": n.name, **({"Aliases": aliases} if (aliases := [a for a in n.aliases if a != service]) else {})}
        for n in spec.networks
    ]


def replica_index(request: plans.ContainerRequest, plain_name: str) -> int:
    """Which replica a request is (1 for NAME-1 and for a container without replicas)."""
    service = request.labels.get(vocabulary.SERVICE_LABEL)
    number = plain_name.removeprefix(f"{service}-") if service else ""
    return int(number) if number.isdigit() else 1


def endpoint(spec: manifests.ContainerSpec, replica: int = 1) -> dict[str, Any]:
    """The endpoint spec: the published ports, and DNS round robin unless the routing mesh needs a VIP.

    A service publishes one set of ports for all its tasks: replica ``i`` of a published range
    (whose host port is the range's ``i``-th) asks for the range's first port, as every replica
    does, which the routing mesh balances over the tasks."""
    published = []
    for port in spec.ports:
        entry: dict[str, Any] = {"Protocol": port.protocol, "TargetPort": port.container_port}
        entry["PublishMode"] = port.mode
        if port.host_port is not None:
            entry["PublishedPort"] = port.host_port - (replica - 1)
        published.append(entry)
    mesh = any(entry["PublishMode"] == "ingress" for entry in published)
    return {"Mode": "vip" if mesh else "dnsrr", "Ports": published}


def template_digest(template: Mapping[str, Any], endpoint_spec: Mapping[str, Any]) -> str:
    """The digest of what a member asks the service to run (its tasks and their ports)."""
    document = json.dumps({"TaskTemplate": template, "EndpointSpec": endpoint_spec}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:32]


# The rollout fields of a manifest (``strategy``, ``minReadySeconds``, ``progressDeadline``) as
# the planner's rollouts define them; these defaults serve manifests models without them.
_MIN_READY = 3.0
_DEADLINE = 120.0


def min_ready(spec: manifests.ContainerSpec) -> float:
    """How long a new task is watched before the next one is replaced (Swarm's monitor window)."""
    return float(getattr(spec, "min_ready_seconds", _MIN_READY))


def ready_deadline(spec: manifests.ContainerSpec) -> float:
    """How long a rollout or a first start may take: ``progressDeadline``, else its default (long
    enough for the health check's start period, two intervals and a timeout)."""
    deadline = getattr(spec, "ready_deadline", None)
    if deadline is not None:
        return float(deadline)
    check = spec.healthcheck
    needs = [_DEADLINE, min_ready(spec) + 30.0]
    if check is not None:
        needs.append(check.start_period + 2 * check.interval + check.timeout)
    return max(needs)


def update_config(spec: manifests.ContainerSpec) -> dict[str, Any]:
    """How Swarm replaces the tasks after a change: one at a time, the new one first unless two
    cannot run at once, each watched ``minReadySeconds``, rolled back on failure."""
    fixed_host_port = any(p.mode == "host" and p.host_port is not None for p in spec.ports)
    stop_first = getattr(spec, "strategy", "start-first") == "stop-first"
    order = "stop-first" if stop_first or fixed_host_port else "start-first"
    return {
        "Parallelism": 1,
        "FailureAction": "rollback",
        # Swarm's own default window (5 s) where the manifest asks for none.
        "Monitor": _ns(min_ready(spec)),
        "MaxFailureRatio": 0,
        "Order": order,
    }


def rollback_config(spec: manifests.ContainerSpec) -> dict[str, Any]:
    """How Swarm goes back: every task at once (the old spec was known good), the same order."""
    return {"Parallelism": 0, "FailureAction": "pause", "Monitor": _ns(min_ready(spec)),
            "MaxFailureRatio": 0, "Order": update_config(spec)["Order"]}  # fmt: skip


def service_name(request: plans.ContainerRequest, plain_name: str) -> str:
    """The service a container of the plan belongs to: its replicas' service, else its own name
    (``plain_name``: the request's name without a staging suffix)."""
    return request.labels.get(vocabulary.SERVICE_LABEL) or plain_name


def task_template(
    request: plans.ContainerRequest,
    service: str,
    *,
    files: Sequence[dict[str, Any]],
    volume_options: Mapping[str, Mapping[str, Any]],
    default_network: str | None,
) -> dict[str, Any]:
    """``TaskTemplate``: the container, its files, resources, restart policy, placement, networks, logs.

    ``files``: the secret and config references (see :func:`file_reference`)."""
    spec = request.spec
    container = _process(request, service)
    container["Mounts"] = _mounts(spec, volume_options)
    container["Secrets"] = [f for f in files if "SecretID" in f]
    container["Configs"] = [f for f in files if "ConfigID" in f]
    template: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": resources(spec.resources, spec),
        "RestartPolicy": restart_policy(spec.restart),
        "Placement": {"Constraints": list(spec.placement.constraints)},
        "Networks": networks(spec, service, default_network),
    }
    if spec.logging.max_size:
        options = {"max-size": str(spec.logging.max_size), "max-file": str(spec.logging.max_files)}
        template["LogDriver"] = {"Name": "json-file", "Options": options}
    return template


def service_spec(
    request: plans.ContainerRequest,
    service: str,
    template: dict[str, Any],
    endpoint_spec: dict[str, Any],
    *,
    labels: Mapping[str, str],
    replicas: int,
) -> dict[str, Any]:
    """The whole ``ServiceSpec``: ``labels`` are the service's (owner labels, spec, members)."""
    spec = request.spec
    return {
        "Name": service,
        "Labels": dict(labels),
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": update_config(spec),
        "RollbackConfig": rollback_config(spec),
        "EndpointSpec": endpoint_spec,
    }
