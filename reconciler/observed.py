"""ACTUAL state: what an engine reports it is running, as frozen dataclasses, plus the owner labels.

Engines build these values in ``observe()``; the planner compares them with the desired state.
Ownership is decided by labels, never by names: every object the project creates carries
``reconciler.stack``, ``reconciler.kind`` and ``reconciler.hash``, and containers also carry
``reconciler.spec`` (the canonical JSON the hash was computed over, so that a plan can show a
field-level diff of what changed since the object was created).

Env values may be secrets, and labels are shown by every engine's inspect: the spec label holds
each ``env`` value as its digest (:func:`spec_label_document`), never the value. The hash label is
still computed over the values (so that a changed value recreates, and so that the hashes of
containers created before the label held digests stay valid); labels written before then, with
values in clear, are read through :func:`spec_label_document` too, so no reader sees a value.

This module holds data only: no I/O, no engine, no pydantic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Literal, TypeAlias

LABEL_STACK = "reconciler.stack"
LABEL_KIND = "reconciler.kind"
LABEL_HASH = "reconciler.hash"
LABEL_SPEC = "reconciler.spec"
OWNER_LABELS = (LABEL_STACK, LABEL_KIND, LABEL_HASH)
# The spec label's mark that its ``spec.env`` holds digests (labels without it hold values).
ENV_DIGESTS = "envDigests"


def value_digest(value: str) -> str:
    """``sha256:`` and the first 16 hex digits of the SHA-256 of a value's UTF-8 text: enough to
    tell a change, and what ``printf %s "$VALUE" | sha256sum`` starts with."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def spec_label_document(document: dict[str, object]) -> dict[str, object]:
    """``document`` (a container's spec document, or a spec label's) with each ``spec.env`` value
    replaced by its :func:`value_digest`, marked so; a document already marked is returned as is.

    ``spec.env`` is always there (``{}`` when the spec sets none), so that a diff of two such
    documents names each key added or removed, never a whole map."""
    if document.get(ENV_DIGESTS):
        return document
    result = dict(document)
    spec = document.get("spec")
    if isinstance(spec, dict):
        env = spec.get("env")
        pairs = env.items() if isinstance(env, dict) else ()
        result["spec"] = {**spec, "env": {str(key): value_digest(str(value)) for key, value in pairs}}
    result[ENV_DIGESTS] = True
    return result


ContainerState: TypeAlias = Literal["created", "running", "paused", "restarting", "exited", "dead"]


@dataclasses.dataclass(frozen=True, slots=True)
class Owned:
    """Accessors shared by every observed object: who owns it, and with which spec hash."""

    name: str
    labels: Mapping[str, str]

    @property
    def stack(self) -> str | None:
        return self.labels.get(LABEL_STACK)

    @property
    def kind(self) -> str | None:
        return self.labels.get(LABEL_KIND)

    @property
    def spec_hash(self) -> str | None:
        return self.labels.get(LABEL_HASH)


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedResources:
    """Limits as the engine applies them now; ``None`` means unlimited."""

    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedContainer(Owned):
    container_id: str
    image: str
    image_id: str
    state: ContainerState
    exit_code: int | None = None
    # When the engine created it (wall clock); None when the engine does not say.
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    restart_count: int = 0
    health: str | None = None
    oom_killed: bool = False
    resources: ObservedResources = ObservedResources()
    networks: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    # The ports it publishes as the engine bound them (a random host port resolved), as
    # ``docker ps`` prints them; None when the engine does not say (then the recorded spec's).
    ports: tuple[str, ...] | None = None

    @property
    def spec_json(self) -> dict[str, object] | None:
        """The canonical spec recorded at creation, env values as digests (whatever the label's
        age, see :func:`spec_label_document`), or None when absent or unreadable."""
        raw = self.labels.get(LABEL_SPEC)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return spec_label_document(value) if isinstance(value, dict) else None

    @property
    def has_health_check(self) -> bool:
        """Whether its recorded spec declares a health check (status tells "none" from "not probed")."""
        spec = (self.spec_json or {}).get("spec")
        return isinstance(spec, dict) and spec.get("healthcheck") is not None

    @property
    def unprobed_health(self) -> str | None:
        """Its health when nobody has probed it: ``unknown`` while it runs with a health check
        (no engine verdict, and no controller of its folder to probe it), else ``None``."""
        return "unknown" if self.state == "running" and self.has_health_check else None

    @property
    def published_ports(self) -> tuple[str, ...]:
        """The ports it publishes, as ``docker ps`` prints them (``0.0.0.0:8080->80/tcp``): as
        the engine bound them, else as its recorded spec says (a random host port, unknown
        there, prints as ``80/tcp``)."""
        if self.ports is not None:
            return self.ports
        spec = (self.spec_json or {}).get("spec")
        ports = spec.get("ports") if isinstance(spec, dict) else None
        return tuple(port_text(port) for port in ports if isinstance(port, dict)) if isinstance(ports, list) else ()


def port_text(port: Mapping[str, object]) -> str:
    """A published port of a spec document (``containerPort``, ``hostPort``, ``hostIP``,
    ``protocol``) as ``docker ps`` prints it."""
    inside = f"{port.get('containerPort')}/{port.get('protocol') or 'tcp'}"
    if port.get("hostPort") is None:
        return inside
    # Not a bind: how docker ps names "every address".
    return f"{port.get('hostIP') or '0.0.0.0'}:{port['hostPort']}->{inside}"  # noqa: S104


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedNetwork(Owned):
    network_id: str
    subnet: str | None = None
    gateway: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedVolume(Owned):
    mountpoint: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Observed:
    """One consistent look at the engine: owned objects by name, and local image ids by reference."""

    containers: Mapping[str, ObservedContainer] = dataclasses.field(default_factory=dict)
    networks: Mapping[str, ObservedNetwork] = dataclasses.field(default_factory=dict)
    volumes: Mapping[str, ObservedVolume] = dataclasses.field(default_factory=dict)
    # For each image reference asked about: the local image id, or None when not present.
    images: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
