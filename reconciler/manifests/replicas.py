"""Replicas: a container document with ``replicas: N`` stands for the containers NAME-1 … NAME-N.

Sits beside :mod:`.checks`, under the loader, which calls :func:`expand` once the documents are
valid and cross-checked: the rest of the project (planner, hash, engines) only ever sees plain
containers. Each replica is the document's container with

* its own name, ``NAME-i``, and the label :data:`SERVICE_LABEL` naming the service, so that an
  engine can answer ``NAME`` with every replica's address on its default network too;
* the alias ``NAME`` on each network it attaches to (a service name resolves to all replicas);
* its own host port where the document publishes a range (``"8000-8002:80"``: replica i takes
  8000 + i - 1); a fixed host port cannot be shared by several replicas, a random one can;
* ``replicas`` itself left out of its spec, so that scaling from 3 to 4 creates NAME-4 and touches
  NAME-1 … NAME-3 not at all (their specs, and so their hashes, do not change).

A ``dependsOn`` naming a replicated service waits for each of its replicas. ``volumesFrom`` and
``networkMode: container:`` need one container, so naming a replicated service there is an error.
This module holds no I/O; its findings go back to the loader, which reports them with positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reconciler import vocabulary
from reconciler.manifests import checks, desired, models

SERVICE_LABEL = vocabulary.SERVICE_LABEL
_NAME_LIMIT = 63


replica_names = checks.replica_names


def expand(
    containers: Mapping[str, desired.DesiredContainer],
) -> tuple[dict[str, desired.DesiredContainer], list[checks.Finding]]:
    """The containers with each replicated one replaced by its replicas; problems as findings."""
    findings: list[checks.Finding] = []
    services = {name: c.spec.replicas for name, c in containers.items() if c.spec.replicas != 1}
    for name, count in services.items():
        findings.extend(_problems(containers[name], count))
    for container in containers.values():
        findings.extend(_single_references(container, services))
    if findings:
        return dict(containers), findings
    expanded: dict[str, desired.DesiredContainer] = {}
    for name, declared in containers.items():
        container = _with_dependencies(declared, services)
        if name not in services:
            expanded[name] = container
            continue
        for index, replica in enumerate(replica_names(name, services[name])):
            expanded[replica] = _replica(container, replica, index)
    return expanded, findings


def _problems(container: desired.DesiredContainer, count: int) -> list[checks.Finding]:
    found = []
    longest = replica_names(container.name, count)[-1] if count else container.name
    if len(longest) > _NAME_LIMIT:
        message = f"replica name {longest!r} is longer than {_NAME_LIMIT} characters: shorten the container's name"
        found.append(checks.Finding(container.name, ("metadata", "name"), message))
    for index, port in enumerate(container.spec.ports):
        if port.host_port is None:
            continue
        size = 1 if port.host_port_last is None else port.host_port_last - port.host_port + 1
        if size < count:
            found.append(checks.Finding(container.name, ("spec", "ports", index, "hostPort"), (
                f"{count} replicas cannot share host port {port.host_port}: publish a range of {count} ports "
                f"(\"{port.host_port}-{port.host_port + count - 1}:{port.container_port}\") or omit the host port"
            )))  # fmt: skip
    return found


def _single_references(container: desired.DesiredContainer, services: Mapping[str, int]) -> list[checks.Finding]:
    found = []
    for index, source in enumerate(container.spec.volumes_from):
        if source in services:
            message = f"volumesFrom needs one container, and {source!r} has replicas; name one, e.g. {source}-1"
            found.append(checks.Finding(container.name, ("spec", "volumesFrom", index), message))
    spec = container.spec
    for field, mode in (("networkMode", spec.network_mode), ("ipc", spec.ipc or ""), ("pid", spec.pid or "")):
        peer = mode.removeprefix("container:")
        if mode.startswith("container:") and peer in services:
            message = f"{field} container: needs one container, and {peer!r} has replicas; name one, e.g. {peer}-1"
            found.append(checks.Finding(container.name, ("spec", field), message))
    return found


def _with_dependencies(container: desired.DesiredContainer, services: Mapping[str, int]) -> desired.DesiredContainer:
    """``dependsOn: [web]`` with ``web`` replicated waits for web-1 … web-N (same condition)."""
    if not any(d.name in services for d in container.spec.depends_on):
        return container
    depends_on = [
        dependency.model_copy(update={"name": name})
        for dependency in container.spec.depends_on
        for name in (replica_names(dependency.name, services[dependency.name]) if dependency.name in services
                     else [dependency.name])
    ]  # fmt: skip
    return dataclasses.replace(container, spec=container.spec.model_copy(update={"depends_on": depends_on}))


def _replica(container: desired.DesiredContainer, name: str, index: int) -> desired.DesiredContainer:
    spec = container.spec
    ports = [
        port.model_copy(update={"host_port": port.host_port + index, "host_port_last": None})
        if port.host_port is not None and port.host_port_last is not None
        else port
        for port in spec.ports
    ]
    networks = [
        attachment.model_copy(update={"aliases": sorted({*attachment.aliases, container.name})})
        for attachment in spec.networks
    ]
    update = {"replicas": models.ContainerSpec.model_fields["replicas"].default, "ports": ports, "networks": networks}
    labels = {**container.labels, SERVICE_LABEL: container.name}
    return dataclasses.replace(container, name=name, spec=spec.model_copy(update=update), labels=labels)
