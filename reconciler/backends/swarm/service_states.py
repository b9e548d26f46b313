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

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler import engine, observed
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


def resources_of(template: Mapping[str, Any]) -> observed.ObservedResources:
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
        "resources": resources_of(template),
        "networks": tuple(sorted(network_names.get(target, target) for target in _targets(template))),
        "volumes": tuple(sorted(str(m["Source"]) for m in _volume_mounts(container))),
        "ports": _ports(service),
    }
    health = "healthy" if container.get("Healthcheck") else None
    found: dict[str, observed.ObservedContainer] = {}
    dealt = _dealt(members.read(labels), running)
    for name, member in sorted(members.read(labels).items()):
        state: observed.ContainerState = "created"
        extra: dict[str, Any] = {}
        if member.state == "running":
            task = dealt.get(name)
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


def _dealt(found: Mapping[str, members.Member], running: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The running tasks dealt to the running members: in name order, oldest task first."""
    names = [name for name, member in sorted(found.items()) if member.state == "running"]
    return dict(zip(names, running, strict=False))


def member_of_task(service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], task_id: str) -> str:
    """The member a task runs for, as :func:`observed_members` deals the tasks (a task not dealt,
    one starting or ending, is its slot's: the member dealt the slot's current task); the only
    member of a service of one; else the service's own name."""
    spec = service.get("Spec") or {}
    found = members.read(spec.get("Labels"))
    if len(found) == 1:
        return next(iter(found))
    running = [t for t in current_tasks(service, tasks) if task_state(t) == "running"]
    by_task = {str(task.get("ID")): name for name, task in _dealt(found, running).items()}
    by_slot = {task.get("Slot"): name for name, task in _dealt(found, running).items() if task.get("Slot")}
    slot = next((t.get("Slot") for t in tasks if str(t.get("ID")) == task_id), None)
    return by_task.get(task_id) or (by_slot.get(slot) if slot else None) or str(spec.get("Name", ""))


# The task container events that are a member's too: a task container's create, stop and destroy
# are Swarm placing and removing tasks (the member's own create is its record's).
_MEMBER_ACTIONS = frozenset({"start", "die", "oom", "health_status"})
# Labels Swarm puts on each task's container: its service's id and its task's.
SERVICE_ID_LABEL = "com.docker.swarm.service.id"
TASK_ID_LABEL = "com.docker.swarm.task.id"


def member_event(
    item: Mapping[str, Any], service: Mapping[str, Any] | None, tasks: Sequence[Mapping[str, Any]], task_label: str
) -> engine.Event | None:
    """A task container's event (decoded Docker event) as its member's: the service's id (the id
    ``create_container`` returned and ``observe`` reports) and the member's name (``service``: the
    service, None once removed: then its name from the container's ``task_label``)."""
    event = reading.event(item)
    attributes = (item.get("Actor") or {}).get("Attributes") or {}
    service_id = attributes.get(SERVICE_ID_LABEL)
    if event is None or not service_id:
        return None
    name = str(attributes.get(task_label) or "")
    if service is not None:
        name = member_of_task(service, tasks, str(attributes.get(TASK_ID_LABEL) or ""))
    return dataclasses.replace(event, name=name, container_id=str(service_id))


def _task_events(service: Mapping[str, Any], task: Mapping[str, Any], name: str, stack: str) -> list[engine.Event]:
    """What the task list tells of a task on another node: a running task's start; a task that
    ran and ended (by itself, or shut down by Swarm), its die with its exit code."""
    status = task.get("Status") or {}
    moment = reading.timestamp(status.get("Timestamp"))
    state = task_state(task)
    ran = bool((status.get("ContainerStatus") or {}).get("ContainerID"))
    if moment is None or not ran or state not in ("running", "complete", "failed", "shutdown"):
        return []
    action: engine.EventAction = "start" if state == "running" else "die"
    return [engine.Event(time=moment, action=action, name=name, container_id=str(service.get("ID", "")),
                         exit_code=None if state == "running" else _exit_code(task), stack=stack)]  # fmt: skip


def history(
    services: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    local_events: Iterable[Mapping[str, Any]],
    node_id: str,
    task_label: str,
) -> list[engine.Event]:
    """What the swarm kept of its members' lives, oldest first (see ``SwarmEngine.history``):
    each member's ``create`` (its record's time, else its service's creation), the start, die,
    oom and health events of the tasks on the manager's node ``node_id`` (``local_events``: its
    dockerd's kept container events), and the tasks on the other nodes as the task list tells."""
    tasks_of: dict[str, list[Mapping[str, Any]]] = collections.defaultdict(list)
    for task in tasks:
        tasks_of[str(task.get("ServiceID"))].append(task)
    by_id = {str(service.get("ID")): service for service in services}
    found: list[engine.Event] = []
    for service_id, service in by_id.items():
        labels = (service.get("Spec") or {}).get("Labels") or {}
        stack = str(labels.get(observed.LABEL_STACK, ""))
        made = reading.timestamp(service.get("CreatedAt")) or 0.0
        for name, member in members.read(labels).items():
            found.append(engine.Event(time=member.created or made, action="create", name=name,
                                      container_id=service_id, stack=stack))  # fmt: skip
        for task in tasks_of[service_id]:
            if task.get("NodeID") != node_id:
                name = member_of_task(service, tasks_of[service_id], str(task.get("ID")))
                found += _task_events(service, task, name, stack)
    for item in local_events:
        service_id = str(((item.get("Actor") or {}).get("Attributes") or {}).get(SERVICE_ID_LABEL))
        event = member_event(item, by_id.get(service_id), tasks_of[service_id], task_label)
        if event is not None and event.action in _MEMBER_ACTIONS:
            found.append(event)
    return sorted(found, key=lambda event: event.time)
