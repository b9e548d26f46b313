"""A stack's own network on Docker, for containers that name none (compose's ``<project>_default``).

Where it sits: under :mod:`.engine`, which asks for it when it creates a bridge-mode container
without networks and after it removes a container. On Docker's default bridge container names do
not resolve; on a user-defined network they do, so each stack gets one, ``<stack>_default``, and
its containers join it with their names as aliases.

The network carries :data:`LABEL` (the stack's name) and no owner labels, so no plan ever sees it:
nothing to create, change or prune. It is made on first use and removed once no container uses it,
a stopped one included: Docker lists only running containers as a network's users (and its
``network prune`` removes a network that only stopped containers use), but a stopped container
that is started again (the old one after a failed stop-first rollout) needs its network there.
This module must not plan or know manifests beyond the request it is given; Docker's errors pass
through to the caller, which translates them.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import docker
import docker.errors

from reconciler import errors, observed

if TYPE_CHECKING:  # annotations only here
    from reconciler import plans

LABEL = "reconciler.stack-network"
# How old an unused stack network must be before another stack's first container prunes it.
PRUNE_AFTER = datetime.timedelta(seconds=60)


class StackNetworks:
    """Makes and removes the stacks' own networks through one Docker API client."""

    def __init__(self, api: docker.APIClient, *, driver: str = "bridge") -> None:
        self.api = api
        # bridge on one dockerd; overlay (attachable) for a swarm's services.
        self.driver = driver
        # Docker's duplicate-name check is not atomic: two creates of one stack's network at once
        # (parallel container steps) would make two networks of one name.
        self._lock = threading.Lock()

    def ensure(self, request: plans.ContainerRequest) -> str | None:
        """The network a bridge-mode container without networks joins (made if missing), or None."""
        stack = request.labels.get(observed.LABEL_STACK)
        if request.spec.networks or request.spec.network_mode != "bridge" or not stack:
            return None
        name = f"{stack}_default"
        with self._lock:
            try:
                labels = self.api.inspect_network(name).get("Labels") or {}
            except docker.errors.NotFound:
                # Stack networks whose containers went without us (a `docker rm`, a killed
                # process) would use up Docker's address pools: those unused for a minute go
                # first (a fresh one may still be waiting for its first container).
                prune(self.api)
                self.api.create_network(name, driver=self.driver, check_duplicate=True, labels={LABEL: stack},
                                        attachable=self.driver == "overlay" or None)  # fmt: skip
                return name
        if labels.get(LABEL) != stack:
            raise errors.Conflict(f"network {name} exists and is not stack {stack}'s own network")
        return name

    def drop_unused(self, inspected: Mapping[str, Any] | None) -> None:
        """After a container's removal (``inspected``: how it looked before): its stack's network
        goes once no container is attached to it."""
        labels = ((inspected or {}).get("Config") or {}).get("Labels") or {}
        name = f"{labels.get(observed.LABEL_STACK)}_default"
        if name not in (((inspected or {}).get("NetworkSettings") or {}).get("Networks") or {}):
            return
        with self._lock:
            network = self.api.inspect_network(name)
            if (network.get("Labels") or {}).get(LABEL) and name not in in_use(self.api):
                self.api.remove_network(name)


def in_use(api: docker.APIClient) -> set[str]:
    """The networks any container names, running or not (one listing of all containers)."""
    return {
        network
        for container in api.containers(all=True)
        for network in ((container.get("NetworkSettings") or {}).get("Networks") or {})
    }


def prune(api: docker.APIClient, *, older_than: datetime.timedelta | None = None) -> None:
    """Remove the stack networks that no container names, running or not, and that are older
    than ``older_than`` (default :data:`PRUNE_AFTER`: a fresh one may still be waiting for its
    first container). Best effort: one that a container joined meanwhile stays. Use this, never
    Docker's ``network prune``, which takes the network of a stopped container too."""
    candidates = api.networks(filters={"label": [LABEL]})
    if not candidates:
        return
    used, limit = in_use(api), PRUNE_AFTER if older_than is None else older_than
    now = datetime.datetime.now(datetime.UTC)
    for network in candidates:
        name, created = network.get("Name", ""), network.get("Created") or ""
        try:
            age = now - datetime.datetime.fromisoformat(created)
        except ValueError:
            continue  # an age we cannot read: not ours to guess
        if name not in used and age >= limit:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_network(network.get("Id") or name)
