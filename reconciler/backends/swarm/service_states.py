"""Swarm backend, Engine API answers → the project's values: a service and its tasks as the plan's containers.

Where it sits: under :mod:`.engine`, which hands it the decoded JSON of ``GET /services`` and
``GET /tasks``; pure, no daemon, no docker SDK. Each member of a service (see :mod:`.members`)
is one ``ObservedContainer``: its name, the service's owner labels with the member's own spec
hash, and a state read from the service's tasks:

* a running member is ``running`` while a task runs for it (the running tasks are dealt to the
  running members in name order); else ``exited`` when its tasks completed or failed (with the
  exit code), else ``restarting`` (Swarm is placing, pulling or restarting its task);
* a stopped member (``stopped``, ``handover``) is ``exited`` (0), a created one ``created``.

A task with a health check is ``running`` for Swarm only once its check passed: a running member
whose spec has a health check is ``healthy``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import observed
from reconciler.backends.docker import reading
from reconciler.backends.swarm import members

# Task states of a task that ended by itself (Swarm's own stop is "shutdown").
_ENDED = frozenset({"complete", "failed", "rejected"})


def current_tasks(service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The service's current tasks, oldest first (so that a member keeps its task, and its start
    time, from one look to the next): in each slot the newest task Swarm wants running (an old
    task that a start-first update or its rollback kept is one), else the newest task when it
    ended by itself (restart ``no``: Swarm shuts it down and starts no other, as an exited container)."""
    slots: dict[object, list[Mapping[str, Any]]] = {}
    for task in sorted(tasks, key=_age):
        if task.get("ServiceID") == service.get("ID"):
            slots.setdefault(task.get("Slot") or task.get("ID"), []).append(task)
    current = []
    for history in slots.values():
        wanted = [t for t in history if t.get("DesiredState") == "running"]
        if wanted:
            current.append(wanted[-1])
        elif task_state(history[-1]) in _ENDED:
            current.append(history[-1])
    return sorted(current, key=_age)


def _age(task: Mapping[str, Any]) -> tuple[str, str]:
    return str(task.get("CreatedAt", "")), str(task.get("ID", ""))


def task_state(task: Mapping[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State", ""))


def task_error(tasks: Sequence[Mapping[str, Any]]) -> str:
    """The newest error a task reports ("No such image: ...", "task: non-zero exit (1)"), or ""."""
    for task in sorted(tasks, key=lambda t: str((t.get("Status") or {}).get("Timestamp", "")), reverse=True):
        status = task.get("Status") or {}
        if status.get("Err"):
            return f"{status.get('State')}: {status['Err']}"
    return ""


def _exit_code(task: Mapping[str, Any]) -> int:
    return int(((task.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode") or 0)


def _ports(service: Mapping[str, Any]) -> tuple[str, ...]:
    # The endpoint holds the ports as bound (a random one resolved); the spec, as asked.
    endpoint = (service.get("Endpoint") or {}).get("Ports")
    ports = endpoint or ((service.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports")
    texts = []
    for port in ports or ():
        published = port.get("PublishedPort") or None
        texts.append(observed.port_text({"containerPort": port.get("TargetPort"), "protocol": port.get("Protocol"),
                                         "hostPort": published}))  # fmt: skip
    return tuple(texts)


def _resources(template: Mapping[str, Any]) -> observed.ObservedResources:
    limits = (template.get("Resources") or {}).get("Limits") or {}
    nano = limits.get("NanoCPUs") or 0
    return observed.ObservedResources(
        memory=limits.get("MemoryBytes") or None, cpus=nano / 1e9 if nano else None, pids=limits.get("Pids") or None
    )


def _targets(template: Mapping[str, Any]) -> list[str]:
    return [str(n.get("Target")) for n in template.get("Networks") or ()]


def _volume_mounts(container: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in container.get("Mounts") or () if m.get("Type") == "volume" and m.get("Source")]


def _labels(labels: Mapping[str, str], member: members.Member) -> dict[str, str]:
    """The service's labels as a member's: its own hash; the recorded spec only when it is the member's."""
    result = {k: v for k, v in labels.items() if k != members.LABEL}
    if labels.get(observed.LABEL_HASH) != member.spec_hash:
        result.pop(observed.LABEL_SPEC, None)
    result[observed.LABEL_HASH] = member.spec_hash
    return result


def observed_members(
    service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], network_names: Mapping[str, str]
) -> dict[str, observed.ObservedContainer]:
    """The containers a service stands for, by name (``network_names``: network id → name)."""
    spec = service.get("Spec") or {}
    labels = spec.get("Labels") or {}
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    current = current_tasks(service, tasks)
    running = [t for t in current if task_state(t) == "running"]
    finished = [t for t in current if task_state(t) in _ENDED]
    failed_before = sum(1 for t in tasks if t.get("ServiceID") == service.get("ID") and task_state(t) == "failed")
    common: dict[str, Any] = {
        "container_id": str(service.get("ID", "")),
        "image": str(container.get("Image", "")).split("@", 1)[0],
        # Each node resolves the image itself: there is no one image id to compare with.
        "image_id": "",
        "created_at": reading.timestamp(service.get("CreatedAt")),
        "restart_count": failed_before,
        "resources": _resources(template),
        "networks": tuple(sorted(network_names.get(target, target) for target in _targets(template))),
        "volumes": tuple(sorted(str(m["Source"]) for m in _volume_mounts(container))),
        "ports": _ports(service),
    }
    health = "healthy" if container.get("Healthcheck") else None
    found: dict[str, observed.ObservedContainer] = {}
    slots = iter(running)
    for name, member in sorted(members.read(labels).items()):
        state: observed.ContainerState = "created"
        extra: dict[str, Any] = {}
        if member.state == "running":
            task = next(slots, None)
            if task is not None:
                state = "running"
                # Swarm never restarts a task's container (a new task replaces it): its creation is its start.
                extra = {"started_at": reading.timestamp(task.get("CreatedAt")), "health": health}
            elif finished:
                state, extra = "exited", {"exit_code": _exit_code(finished[0])}
            else:
                state = "restarting"
        elif member.state in ("stopped", "handover"):
            state, extra = "exited", {"exit_code": 0}
        found[name] = observed.ObservedContainer(name=name, labels=_labels(labels, member), state=state,
                                                 **common, **extra)  # fmt: skip
    return found
