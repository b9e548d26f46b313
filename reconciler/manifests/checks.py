"""Checks that need more than one document: published ports, references by name, dependency cycles.

Sits above :mod:`.desired`: it reads the loaded objects and returns what is wrong as findings
(a container, a field path in its document, a message), in a stable order; the loader positions
them. Also the one rule of which containers must start before another
(:func:`container_dependencies`), which the planner orders by. This module must not read files or
YAML, nor raise for a user's mistake.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Set
from typing import NamedTuple, TypeAlias

from reconciler.manifests import desired, messages, models

# A key for every address a port is published on: (host IP, host port, protocol).
_Published: TypeAlias = dict[tuple[str, int, str], tuple[str, int]]


class Finding(NamedTuple):
    """One problem, about the document of container ``container``, at ``path`` in it."""

    container: str
    path: tuple[str | int, ...]
    message: str


def cross_check(
    containers: Mapping[str, desired.DesiredContainer],
    networks: Mapping[str, desired.DesiredNetwork],
    volumes: Mapping[str, desired.DesiredVolume],
    invalid: Set[tuple[str, str]],
) -> list[Finding]:
    """Every cross-document problem, container by container (sorted by name), then the cycles.

    ``invalid`` holds ``(kind, name)`` of the objects whose own document failed validation: they
    count as declared here, so that one mistake produces one message, not a cascade of "not
    declared" ones.
    """
    findings: list[Finding] = []
    published: _Published = {}
    # A reference may name one replica of a replicated container (volumesFrom needs one).
    declared = dict.fromkeys(
        [*containers, *(r for n, c in containers.items() for r in replica_names(n, c.spec.replicas))]
    )
    for name in sorted(containers):
        container = containers[name]
        _port_clashes(container, published, findings)
        _network_references(container, networks, invalid, findings)
        _volume_references(container, volumes, invalid, findings)
        _container_references(container, declared, invalid, findings)
    for cycle in _cycles(containers):
        findings.append(Finding(cycle[0], ("spec", "dependsOn"), "dependency cycle: " + " → ".join([*cycle, cycle[0]])))
    return findings


def replica_names(name: str, count: int) -> list[str]:
    """The containers a document with ``replicas: count`` stands for (none of its own when 1)."""
    return [f"{name}-{index}" for index in range(1, count + 1)] if count != 1 else []


def container_dependencies(container: desired.DesiredContainer) -> list[str]:
    """Containers that must be started before this one (dependsOn, volumesFrom, container: mode)."""
    names = [d.name for d in container.spec.depends_on] + list(container.spec.volumes_from)
    for mode in (container.spec.network_mode, container.spec.ipc or "", container.spec.pid or ""):
        if mode.startswith("container:"):
            names.append(mode.removeprefix("container:"))
    return sorted(set(names))


def _port_clashes(container: desired.DesiredContainer, published: _Published, findings: list[Finding]) -> None:
    """Appends a finding per host port an earlier container already publishes; records the others in ``published``."""
    for index, port in enumerate(container.spec.ports):
        if port.host_port is None:
            continue
        for ip in [port.host_ip] if port.host_ip else ["0.0.0.0"]:  # noqa: S104 (a key, not a bind)
            key = (ip, port.host_port, port.protocol)
            clash = [
                other
                for (other_ip, hp, proto), other in published.items()
                if (hp == port.host_port and proto == port.protocol and "0.0.0.0" in (ip, other_ip))  # noqa: S104
                or (other_ip, hp, proto) == key
            ]
            if clash:
                other_name, other_index = clash[0]
                findings.append(
                    Finding(
                        container.name,
                        ("spec", "ports", index, "hostPort"),
                        f"host port {port.host_port}/{port.protocol} is already published by "
                        f"container {other_name!r} (ports[{other_index}])",
                    )
                )
            else:
                published[key] = (container.name, index)


def _network_references(
    container: desired.DesiredContainer,
    networks: Mapping[str, desired.DesiredNetwork],
    invalid: Set[tuple[str, str]],
    findings: list[Finding],
) -> None:
    """Appends a finding per attached network not declared, or fixed address outside the network's subnet."""
    for index, network in enumerate(container.spec.networks):
        if network.name not in networks and ("Network", network.name) not in invalid and not network.external:
            findings.append(
                Finding(
                    container.name,
                    ("spec", "networks", index, "name"),
                    f"network {network.name!r} is not declared in the manifests (declare a Network, or mark "
                    "the attachment external: true to use another stack's)"
                    + messages.did_you_mean(network.name, networks),
                )
            )
        elif network.name in networks and network.ipv4_address and networks[network.name].spec.subnet:
            subnet = ipaddress.IPv4Network(networks[network.name].spec.subnet or "")
            if ipaddress.IPv4Address(network.ipv4_address) not in subnet:
                findings.append(
                    Finding(
                        container.name,
                        ("spec", "networks", index, "ipv4Address"),
                        f"{network.ipv4_address} is outside network {network.name}'s subnet {subnet}",
                    )
                )


def _volume_references(
    container: desired.DesiredContainer,
    volumes: Mapping[str, desired.DesiredVolume],
    invalid: Set[tuple[str, str]],
    findings: list[Finding],
) -> None:
    """Appends a finding per volume mount of an undeclared Volume (unless the mount says ``external: true``)."""
    for index, mount in enumerate(container.spec.mounts):
        if (
            isinstance(mount, models.VolumeMount)
            and not mount.external
            and mount.source not in volumes
            and ("Volume", mount.source) not in invalid
        ):
            findings.append(
                Finding(
                    container.name,
                    ("spec", "mounts", index, "source"),
                    f"volume {mount.source!r} is not declared in the manifests (declare a Volume, "
                    "or mark the mount external: true)" + messages.did_you_mean(mount.source, volumes),
                )
            )


def _container_references(
    container: desired.DesiredContainer,
    containers: Mapping[str, None],
    invalid: Set[tuple[str, str]],
    findings: list[Finding],
) -> None:
    """Appends a finding per ``dependsOn``, ``volumesFrom`` or ``container:NAME`` naming no other declared container."""
    name = container.name
    for field, names in (
        ("dependsOn", [d.name for d in container.spec.depends_on]),
        ("volumesFrom", list(container.spec.volumes_from)),
    ):
        for index, other in enumerate(names):
            path: tuple[str | int, ...] = ("spec", field, index) + (("name",) if field == "dependsOn" else ())
            if other == name or other in replica_names(name, container.spec.replicas):
                findings.append(Finding(name, path, f"container {name!r} cannot refer to itself"))
            elif other not in containers and ("Container", other) not in invalid:
                findings.append(
                    Finding(
                        name,
                        path,
                        f"container {other!r} is not declared in the manifests"
                        + messages.did_you_mean(other, containers),
                    )
                )
    for field, mode in (("networkMode", container.spec.network_mode), ("ipc", container.spec.ipc or ""),
                        ("pid", container.spec.pid or "")):  # fmt: skip
        peer = mode.removeprefix("container:")
        if mode.startswith("container:") and peer not in containers and ("Container", peer) not in invalid:
            findings.append(Finding(name, ("spec", field), f"container {peer!r} is not declared"))


def _cycles(containers: Mapping[str, desired.DesiredContainer]) -> list[list[str]]:
    """Each dependency cycle once, starting at its alphabetically first member."""
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for dep in container_dependencies(containers[name]):
            if dep not in containers:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :]
                members = frozenset(cycle)
                if members not in seen:
                    seen.add(members)
                    start = cycle.index(min(cycle))
                    cycles.append(cycle[start:] + cycle[:start])
            elif state.get(dep) is None:
                visit(dep, stack)
        stack.pop()
        state[name] = 2

    for name in sorted(containers):
        if state.get(name) is None:
            visit(name, [])
    return cycles
