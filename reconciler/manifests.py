"""DESIRED state: the manifest models (pydantic, strict) and the loader that positions every error.

A manifest file holds one or more YAML documents, each a ``Container``, ``Network`` or ``Volume``
of ``apiVersion: reconciler/v1``. :func:`load` turns files, folders or stdin into a
:class:`Desired` value, or raises :class:`errors.ManifestError` carrying **every** problem found,
each as ``file:line:col: field.path: message``. Nothing outside this module sees YAML or pydantic:
the rest of the project reads the frozen models and the ``Desired*`` dataclasses.

How positions survive validation: the YAML is *composed* (not constructed) so that every node
keeps its start mark; we build plain Python values from the nodes ourselves, recording the mark of
every path (``("spec", "ports", 0, "hostPort")``). pydantic reports errors by the same path (by
alias), so each error is mapped back to the closest recorded mark. Building values ourselves also
lets us reject duplicate keys, which PyYAML would silently overwrite.

This module must not talk to an engine, the network or the planner; it only reads the manifest
files and the env files they reference.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import hashlib
import ipaddress
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

import pydantic
import yaml
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from reconciler import errors, references
from reconciler.sources import read_sources

API_VERSION = "reconciler/v1"
KINDS = ("Container", "Network", "Volume")

# ---------------------------------------------------------------------------------------------
# Scalar types: durations, sizes, names, signals
# ---------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: object) -> float:
    """``"1m30s"`` → 90.0 seconds. Go's duration syntax, which Docker and compose users know.

    A bare number is seconds. Negative durations are rejected: nothing here waits backwards.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 100ms, 10s or 1m30s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 100ms, 10s or 1m30s")
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration; use e.g. 100ms, 10s, 1m30s, 2h")
    return total


def format_duration(seconds: float) -> str:
    """The canonical text of a duration (used in plans and the JSON schema's examples)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs:g}s" if secs else "")


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]i?|[kmgtp]|[KMGTP]?B|b)?$")
_SIZE_UNITS = {
    "": 1, "b": 1, "B": 1,
    "K": 1000, "k": 1000, "KB": 1000, "M": 1000**2, "m": 1000**2, "MB": 1000**2,
    "G": 1000**3, "g": 1000**3, "GB": 1000**3, "T": 1000**4, "t": 1000**4, "TB": 1000**4,
    "P": 1000**5, "p": 1000**5, "PB": 1000**5,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5,
}  # fmt: skip


def parse_size(value: object) -> int:
    """``"256Mi"`` → 268435456 bytes; Kubernetes suffixes (``Ki``, ``M``), bare numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64Mi, 1G or 1048576")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size such as 64Mi, 1G or 1048576")
    match = _SIZE_RE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size; use e.g. 64Mi, 512M, 1Gi or a number of bytes")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2) or ""])


def format_size(size: int) -> str:
    """The shortest exact binary-suffixed text of a size (``268435456`` → ``256Mi``)."""
    for suffix, unit in (("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _check_dns_label(value: str) -> str:
    if not _DNS_LABEL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a DNS label: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_image(value: str) -> str:
    try:
        references.parse(value)
    except references.InvalidReference as exc:
        raise ValueError(f"invalid image reference {value!r}: {exc}") from None
    return value


def _check_absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    return value


_SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
    "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16,
    "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24,
    "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31,
}  # fmt: skip


def parse_signal(value: object) -> str:
    """``SIGTERM``, ``TERM`` or ``15`` → ``SIGTERM``; ValueError for anything else."""
    return _check_signal(value)


def _check_signal(value: object) -> str:
    """Accept ``SIGTERM``, ``TERM`` or ``15``; store the canonical ``SIGTERM`` spelling."""
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in _SIGNALS.items():
            if number == value:
                return f"SIG{name}"
        raise ValueError(f"{value} is not a signal number")
    if isinstance(value, str):
        name = value.upper().removeprefix("SIG")
        if name.isdigit():
            return _check_signal(int(name))
        if name in _SIGNALS:
            return f"SIG{name}"
    raise ValueError(f"{value!r} is not a signal; use e.g. SIGTERM, SIGINT or 15")


def _env_to_map(value: object) -> object:
    """``env`` is a map or a list of ``K=V`` strings (compose users write both)."""
    if isinstance(value, list):
        result: dict[str, object] = {}
        for index, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item or item.startswith("="):
                raise ValueError(f"env[{index}] must be a KEY=VALUE string, got {item!r}")
            key, _, val = item.partition("=")
            result[key] = val
        return result
    if isinstance(value, dict):
        # YAML turns `DEBUG: true` and `PORT: 8080` into bool/int; env values are strings.
        return {k: _scalar_text(v) for k, v in value.items()}
    return value


def _scalar_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _string_list(value: object) -> object:
    """A command may be written as one string; it is split on whitespace, never run by a shell."""
    if isinstance(value, str):
        return value.split()
    return value


# Each accepted spelling is in the JSON schema too, so that editors accept what the loader accepts.
_DURATION_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": r"^(0|(\d+(\.\d+)?(ms|us|µs|ns|h|m|s))+)$"},
               {"type": "number", "minimum": 0}],
     "description": "A duration: 100ms, 10s, 1m30s, or a number of seconds."}
)  # fmt: skip
_SIZE_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*([KMGTP]i?|[kmgtp]|[KMGTP]?B|b)?$"},
               {"type": "integer", "minimum": 0}],
     "description": "A size: 64Mi, 1G, or a number of bytes."}
)  # fmt: skip
_ENV_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
               {"type": "array", "items": {"type": "string", "pattern": "^[^=]+=.*$"}}]}
)  # fmt: skip
_ARGV_SCHEMA = WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]})
_SIGNAL_SCHEMA = WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1, "maximum": 31}]})

Duration: TypeAlias = Annotated[float, BeforeValidator(parse_duration), Field(ge=0), _DURATION_SCHEMA]
Size: TypeAlias = Annotated[int, BeforeValidator(parse_size), Field(ge=0), _SIZE_SCHEMA]
DnsLabel: TypeAlias = Annotated[str, pydantic.AfterValidator(_check_dns_label), Field(pattern=_DNS_LABEL_RE.pattern)]
ImageRef: TypeAlias = Annotated[str, pydantic.AfterValidator(_check_image)]
AbsolutePath: TypeAlias = Annotated[str, pydantic.AfterValidator(_check_absolute), Field(pattern="^/")]
Signal: TypeAlias = Annotated[str, BeforeValidator(_check_signal), _SIGNAL_SCHEMA]
EnvMap: TypeAlias = Annotated[dict[str, str], BeforeValidator(_env_to_map), _ENV_SCHEMA]
Argv: TypeAlias = Annotated[list[str], BeforeValidator(_string_list), _ARGV_SCHEMA]
PortNumber: TypeAlias = Annotated[int, Field(ge=1, le=65535)]

_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class Model(pydantic.BaseModel):
    """Strict, frozen, camelCase in YAML and snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=False,
    )


def to_document(
    model: Model, *, exclude_defaults: bool = False, exclude: Mapping[str, Any] | set[str] | None = None
) -> dict[str, Any]:
    """``model`` as the JSON document a manifest would spell (camelCase keys, plain values).

    The one way code outside this module turns a model into data (for hashing, records, digests),
    so that nothing else calls pydantic's API.
    """
    return model.model_dump(mode="json", by_alias=True, exclude_defaults=exclude_defaults, exclude=exclude)


def container_spec_from_document(document: Mapping[str, Any]) -> ContainerSpec:
    """The inverse of :func:`to_document` for a container spec (a record read back from disk)."""
    return ContainerSpec.model_validate(document)


def bind_mount(source: str, target: str) -> BindMount:
    """A read-write bind mount of ``source`` at ``target``, as the engines add for anonymous volumes."""
    return BindMount.model_validate({"type": "bind", "source": source, "target": target})


class Metadata(Model):
    name: DnsLabel = Field(description="The engine object's name (a DNS label).")
    stack: DnsLabel | None = Field(default=None, description="Pruning and deletion group; default: the file's stem.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the engine object.")

    @pydantic.field_validator("labels")
    @classmethod
    def _no_reserved_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key.startswith("reconciler."):
                raise ValueError(f"label {key!r}: the reconciler.* prefix is reserved for ownership labels")
        return labels


class Port(Model):
    container_port: PortNumber
    host_port: PortNumber | None = Field(default=None, description="Omit to publish on a random port.")
    host_ip: str | None = Field(default=None, alias="hostIP", description="Default: all addresses.")
    protocol: Literal["tcp", "udp"] = "tcp"

    @pydantic.field_validator("host_ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value


class NetworkAttachment(Model):
    name: DnsLabel
    aliases: list[DnsLabel] = Field(default_factory=list)
    ipv4_address: str | None = None

    @pydantic.field_validator("ipv4_address")
    @classmethod
    def _ipv4(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.IPv4Address(value)
        return value


class VolumeMount(Model):
    type: Literal["volume"]
    source: DnsLabel = Field(description="A Volume declared in the manifests (or external: true).")
    target: AbsolutePath
    read_only: bool = False
    external: bool = Field(default=False, description="The volume is managed outside these manifests.")


class BindMount(Model):
    type: Literal["bind"]
    source: AbsolutePath = Field(description="A host path: bind mounts are the manifest opting in.")
    target: AbsolutePath
    read_only: bool = False


class TmpfsMount(Model):
    type: Literal["tmpfs"]
    target: AbsolutePath
    size: Size | None = None
    mode: int | None = Field(default=None, ge=0, le=0o7777)


Mount: TypeAlias = Annotated[VolumeMount | BindMount | TmpfsMount, Field(discriminator="type")]


class Resources(Model):
    """Limits applied in place (no recreation) when they change."""

    @pydantic.field_validator("cpus")
    @classmethod
    def _cpu_precision(cls, cpus: float | None) -> float | None:
        # Engines apply CPUs as a CFS quota over a 100 ms period (10 µs steps): a finer value
        # could never be read back equal, and every apply would "update" it again.
        if cpus is not None and abs(round(cpus, 5) - cpus) > 1e-12:
            raise ValueError(f"cpus {cpus} has more than 5 decimal places")
        return cpus

    @pydantic.field_validator("memory")
    @classmethod
    def _memory_minimum(cls, memory: int | None) -> int | None:
        if memory is not None and memory < 6 * 1024 * 1024:
            raise ValueError(f"memory {format_size(memory)} is below the 6Mi minimum (as Docker's)")
        return memory

    memory: Size | None = Field(default=None, description="At least 6Mi, as Docker.")
    cpus: float | None = Field(default=None, gt=0, le=1024)
    pids: int | None = Field(default=None, ge=1)


class Backoff(Model):
    """Restart backoff; the defaults are Docker's restart manager's."""

    initial: Duration = 0.1
    max: Duration = 60.0
    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    reset_after: Duration = 10.0
    jitter: float = Field(default=0.0, ge=0.0, le=1.0, description="Fraction of random spread per delay.")


class Restart(Model):
    policy: Literal["no", "always", "on-failure", "unless-stopped"] = "no"
    max_retries: int | None = Field(default=None, ge=0, description="Only with on-failure.")
    backoff: Backoff | None = None
    on_unhealthy: bool = False

    @pydantic.model_validator(mode="after")
    def _retries_only_on_failure(self) -> Restart:
        if self.max_retries is not None and self.policy != "on-failure":
            raise ValueError("maxRetries is only meaningful with policy: on-failure")
        return self


class Logging(Model):
    """Rotation of the container's json-file log, as Docker's ``max-size``/``max-file`` options.

    Without ``maxSize`` the log grows without bound (Docker's default)."""

    max_size: Size | None = Field(default=None, description="Rotate when the log reaches this size.")
    max_files: int = Field(default=1, ge=1, le=100, description="Log files kept, the current one included.")

    @pydantic.model_validator(mode="after")
    def _files_need_a_size(self) -> Logging:
        if self.max_files > 1 and not self.max_size:
            raise ValueError("maxFiles needs maxSize (files are rotated when they reach it)")
        if self.max_size is not None and self.max_size < 1024:
            raise ValueError("maxSize must be at least 1Ki")
        return self


class Healthcheck(Model):
    """Docker's health check; defaults from moby's daemon/health.go."""

    test: Annotated[list[str], Field(min_length=1)]
    interval: Duration = 30.0
    timeout: Duration = 30.0
    retries: int = Field(default=3, ge=1)
    start_period: Duration = 0.0

    @pydantic.field_validator("test")
    @classmethod
    def _form(cls, test: list[str]) -> list[str]:
        if test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ValueError("test must start with CMD, CMD-SHELL or NONE, e.g. [CMD, /bin/check]")
        if test[0] != "NONE" and len(test) < 2:
            raise ValueError(f"{test[0]} needs a command after it")
        return test


class Dependency(Model):
    name: DnsLabel
    condition: Literal["started", "healthy", "completed"] = "started"


def _dependency_shorthand(value: object) -> object:
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value


class ContainerSpec(Model):
    image: ImageRef
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    entrypoint: Argv | None = Field(default=None, description="Overrides the image's ENTRYPOINT.")
    command: Argv | None = Field(default=None, description="Overrides the image's CMD.")
    env: EnvMap = Field(default_factory=dict, description="A map, or a list of KEY=VALUE strings.")
    env_files: list[str] = Field(default_factory=list, description="Relative to the manifest file.")
    working_dir: AbsolutePath | None = None
    user: str | None = None
    hostname: DnsLabel | None = None
    ports: list[Port] = Field(default_factory=list)
    networks: list[NetworkAttachment] = Field(default_factory=list)
    network_mode: str = Field(default="bridge", description="bridge | none | host | container:NAME")
    mounts: list[Mount] = Field(default_factory=list)
    volumes_from: list[DnsLabel] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    restart: Restart = Field(default_factory=Restart)
    healthcheck: Healthcheck | None = None
    logging: Logging = Field(default_factory=Logging)
    depends_on: Annotated[
        list[Dependency],
        BeforeValidator(_dependency_shorthand),
        WithJsonSchema(
            {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "string", "description": "a container name (condition: started)"},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "condition": {
                                    "enum": ["started", "healthy", "completed"],
                                    "default": "started",
                                },
                            },
                        },
                    ]
                },
            }
        ),
    ] = Field(default_factory=list)
    stop_signal: Signal | None = Field(
        default=None, description="Default: the image's STOPSIGNAL, else SIGTERM (as Docker)."
    )
    stop_timeout: Duration = 10.0
    read_only_rootfs: bool = False
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    privileged: bool = Field(default=False, description="Off unless the manifest says so.")

    @pydantic.field_validator("env")
    @classmethod
    def _env_keys(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"env name {key!r} must match [A-Za-z_][A-Za-z0-9_.-]*")
        return env

    @pydantic.field_validator("network_mode")
    @classmethod
    def _mode(cls, mode: str) -> str:
        if mode in ("bridge", "none", "host"):
            return mode
        if mode.startswith("container:") and _DNS_LABEL_RE.match(mode.removeprefix("container:")):
            return mode
        raise ValueError(f"{mode!r}: networkMode must be bridge, none, host or container:NAME")

    @pydantic.field_validator("cap_add", "cap_drop")
    @classmethod
    def _caps(cls, caps: list[str]) -> list[str]:
        normalised = []
        for cap in caps:
            name = cap.upper()
            name = name if name == "ALL" or name.startswith("CAP_") else f"CAP_{name}"
            if not re.match(r"^(ALL|CAP_[A-Z_]+)$", name):
                raise ValueError(f"{cap!r} is not a capability name")
            normalised.append(name)
        return normalised

    @pydantic.model_validator(mode="after")
    def _coherent(self) -> ContainerSpec:
        if self.network_mode != "bridge" and (self.networks or self.ports):
            raise ValueError(f"networks and ports need networkMode bridge, not {self.network_mode}")
        if self.network_mode.startswith("container:") and self.hostname is not None:
            raise ValueError("hostname cannot be set with networkMode container:NAME (it shares that container's)")
        targets = [m.target for m in self.mounts]
        for target in sorted({t for t in targets if targets.count(t) > 1}):
            raise ValueError(f"two mounts target {target}")
        names = [n.name for n in self.networks]
        for name in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"network {name} is attached twice")
        return self


class NetworkSpec(Model):
    driver: Literal["bridge"] = "bridge"
    subnet: str | None = Field(default=None, description="IPv4 CIDR; default: one picked by the engine.")
    gateway: str | None = None
    internal: bool = Field(default=False, description="No route to the outside world.")
    options: dict[str, str] = Field(default_factory=dict)

    @pydantic.model_validator(mode="after")
    def _addresses(self) -> NetworkSpec:
        if self.gateway is not None and self.subnet is None:
            raise ValueError("gateway needs a subnet")
        if self.subnet is not None:
            try:
                net = ipaddress.IPv4Network(self.subnet, strict=True)
            except ValueError as exc:
                raise ValueError(f"subnet: {exc}") from None
            if self.gateway is not None and ipaddress.IPv4Address(self.gateway) not in net:
                raise ValueError(f"gateway {self.gateway} is outside subnet {self.subnet}")
        return self


class VolumeSpec(Model):
    driver: Literal["local"] = "local"
    options: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class _Document(Model):
    api_version: Literal["reconciler/v1"]
    metadata: Metadata


class ContainerDocument(_Document):
    """``kind: Container`` — one container, created and kept running per its restart policy."""

    kind: Literal["Container"]
    spec: ContainerSpec


class NetworkDocument(_Document):
    """``kind: Network`` — a bridge network with its own subnet and name resolution."""

    kind: Literal["Network"]
    spec: NetworkSpec = Field(default_factory=NetworkSpec)


class VolumeDocument(_Document):
    """``kind: Volume`` — named storage; never removed unless the user asks explicitly."""

    kind: Literal["Volume"]
    spec: VolumeSpec = Field(default_factory=VolumeSpec)


Document: TypeAlias = ContainerDocument | NetworkDocument | VolumeDocument
_DOCUMENT_MODELS: dict[str, type[_Document]] = {
    "Container": ContainerDocument,
    "Network": NetworkDocument,
    "Volume": VolumeDocument,
}

# ---------------------------------------------------------------------------------------------
# The loaded, cross-checked desired state
# ---------------------------------------------------------------------------------------------

Kind: TypeAlias = Literal["Container", "Network", "Volume"]


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """Where an object was declared: for messages and for ``file:line:col``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredContainer:
    name: str
    stack: str
    spec: ContainerSpec
    labels: Mapping[str, str]
    source: Source
    # The environment as the container will see it: env files first, then ``env`` overriding.
    effective_env: Mapping[str, str]
    # sha256 of each env file's contents, by the path written in the manifest (feeds the hash).
    file_digests: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredNetwork:
    name: str
    stack: str
    spec: NetworkSpec
    labels: Mapping[str, str]
    source: Source


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredVolume:
    name: str
    stack: str
    spec: VolumeSpec
    labels: Mapping[str, str]
    source: Source


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """Everything the loaded manifests ask for, by name, plus the stacks they cover."""

    containers: Mapping[str, DesiredContainer]
    networks: Mapping[str, DesiredNetwork]
    volumes: Mapping[str, DesiredVolume]
    stacks: frozenset[str]

    @staticmethod
    def empty(stacks: Iterable[str] = ()) -> Desired:
        """The desired state of a deleted stack: nothing, so that pruning removes everything."""
        return Desired(containers={}, networks={}, volumes={}, stacks=frozenset(stacks))


# ---------------------------------------------------------------------------------------------
# Loading: YAML nodes → values with positions → models → cross-object checks
# ---------------------------------------------------------------------------------------------

Path_: TypeAlias = tuple[str | int, ...]


@dataclasses.dataclass(slots=True)
class _Positions:
    """The start mark (1-based line, column) of every value and key in one document."""

    values: dict[Path_, tuple[int, int]] = dataclasses.field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = dataclasses.field(default_factory=dict)

    def clean(self, loc: Sequence[str | int]) -> Path_:
        """``loc`` without pydantic's union tags (``mounts[1].bind.source`` → ``mounts[1].source``)."""
        result: list[str | int] = []
        for index, element in enumerate(loc):
            here = (*result, element)
            if here not in self.values and index + 1 < len(loc) and (*result, loc[index + 1]) in self.values:
                continue
            result.append(element)
        return tuple(result)

    def nearest(self, path: Sequence[str | int], *, key: bool = False) -> tuple[Path_, tuple[int, int]]:
        """The deepest recorded prefix of ``path`` and its mark.

        pydantic inserts union tags (``'bind'``) into error locations; they are skipped because
        they are not in the document. ``key=True`` prefers the key's position (for unknown fields).
        """
        found: Path_ = ()
        for element in path:
            candidate = (*found, element)
            if candidate in self.values:
                found = candidate
        if key and found in self.keys:
            return found, self.keys[found]
        return found, self.values.get(found, (1, 1))


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, column: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.column, self.first_line = key, line, column, first_line


def _node_value(node: yaml.Node, path: Path_, positions: _Positions) -> object:
    """Construct a plain value from a composed node, recording each path's mark."""
    positions.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, object] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            key_text = key if isinstance(key, str) else str(key)
            if key_text in first_seen:
                raise _DuplicateKey(
                    key_text,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    first_seen[key_text],
                )
            first_seen[key_text] = key_node.start_mark.line + 1
            child = (*path, key_text)
            positions.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key_text] = _node_value(value_node, child, positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_node_value(item, (*path, index), positions) for index, item in enumerate(node.value)]
    return _scalar(node)


_RESOLVER_LOADER = yaml.SafeLoader("")
# libyaml's composer gives the same nodes and marks six times faster (7 ms instead of 42 for a
# 50-container stack); PyYAML built without libyaml falls back to the pure-Python one.
_COMPOSER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> object:
    """A scalar's value with YAML 1.1 core types, as the safe loader would construct it."""
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value", node.start_mark)
    return _RESOLVER_LOADER.construct_object(node, deep=True)


def _field_text(path: Sequence[str | int]) -> str:
    text = ""
    for element in path:
        text += f"[{element}]" if isinstance(element, int) else (f".{element}" if text else element)
    return text


def _model_fields(model: type[pydantic.BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(path: Sequence[str | int], root: type[pydantic.BaseModel]) -> list[type[pydantic.BaseModel]]:
    """The model classes that may sit at ``path`` (for did-you-mean hints on unknown fields)."""
    candidates: list[type[pydantic.BaseModel]] = [root]
    for element in path:
        if isinstance(element, int):
            continue
        following: list[type[pydantic.BaseModel]] = []
        for model in candidates:
            for name, info in model.model_fields.items():
                if element in (name, info.alias):
                    following.extend(_models_in(info.annotation))
        candidates = following
    return candidates


def _models_in(annotation: object) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    metadata_origin = getattr(annotation, "__origin__", None)
    if metadata_origin is not None and not found:
        found.extend(_models_in(metadata_origin))
    return found


def _hint(unknown: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(unknown, list(options), n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        if unknown.lower().replace("_", "").replace("-", "") in lowered:
            close = [lowered[unknown.lower().replace("_", "").replace("-", "")]]
    return f"; did you mean `{close[0]}`?" if close else ""


def _pydantic_message(error: Mapping[str, Any], model: type[pydantic.BaseModel]) -> str:
    kind = error["type"]
    loc = [e for e in error["loc"] if isinstance(e, str | int)]
    if kind == "extra_forbidden":
        unknown = str(loc[-1])
        options = sorted({f for m in _model_at(loc[:-1], model) for f in _model_fields(m)})
        return f"unknown field `{unknown}`{_hint(unknown, options)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {error.get('input')!r}"
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown type {error.get('input')!r}; expected one of {expected}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _declared_name(value: object) -> tuple[str, str] | None:
    """``(kind, name)`` of a document that failed validation, to silence cascading "not declared"."""
    if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
        name = value["metadata"].get("name")
        if isinstance(name, str):
            return str(value.get("kind")), name
    return None


@dataclasses.dataclass(slots=True)
class _Parsed:
    document: Document
    positions: _Positions
    file: str


def _validate_document(
    value: object, positions: _Positions, file: str, diagnostics: list[errors.Diagnostic]
) -> Document | None:
    def report(path: Sequence[str | int], message: str, *, key: bool = False) -> None:
        _found, (line, column) = positions.nearest(path, key=key)
        diagnostics.append(errors.Diagnostic(file, line, column, _field_text(path), message))

    if not isinstance(value, dict):
        report((), "a manifest document must be a mapping with apiVersion, kind, metadata and spec")
        return None
    kind = value.get("kind")
    if kind is None:
        report((), "required field `kind` is missing (Container, Network or Volume)")
        return None
    model = _DOCUMENT_MODELS.get(str(kind))
    if model is None:
        report(("kind",), f"unknown kind {kind!r}; expected one of Container, Network, Volume"
               + _hint(str(kind), KINDS))  # fmt: skip
        return None
    try:
        document = model.model_validate(value)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            loc = positions.clean([e for e in error["loc"] if isinstance(e, str | int)])
            report(loc, _pydantic_message(error, model), key=error["type"] == "extra_forbidden")
        return None
    assert isinstance(document, ContainerDocument | NetworkDocument | VolumeDocument)
    return document


def _parse_text(
    text: str, file: str, diagnostics: list[errors.Diagnostic], invalid: set[tuple[str, str]]
) -> list[_Parsed]:
    parsed: list[_Parsed] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=_COMPOSER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        diagnostics.append(errors.Diagnostic(file, line, column, "", f"YAML syntax error: {problem}"))
        return parsed
    except yaml.YAMLError as exc:
        diagnostics.append(errors.Diagnostic(file, 1, 1, "", f"YAML error: {exc}"))
        return parsed
    for node in nodes:
        if node is None:
            continue
        positions = _Positions()
        try:
            value = _node_value(node, (), positions)
        except _DuplicateKey as dup:
            diagnostics.append(
                errors.Diagnostic(
                    file, dup.line, dup.column, dup.key, f"duplicate key (first at line {dup.first_line})"
                )
            )
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            diagnostics.append(errors.Diagnostic(file, line, column, "", f"YAML error: {exc}"))
            continue
        if value is None:
            continue
        document = _validate_document(value, positions, file, diagnostics)
        if document is not None:
            parsed.append(_Parsed(document, positions, file))
        elif (declared := _declared_name(value)) is not None:
            invalid.add(declared)
    return parsed


def load(paths: Sequence[str]) -> Desired:
    """Load and validate manifests from files, folders or ``-`` (stdin); all errors at once."""
    return load_sources(read_sources(paths))


def load_text(text: str, file: str = "<string>") -> Desired:
    """Load one manifest text (tests, the API); env files resolve against the current folder."""
    return load_sources([(file, text)])


def load_sources(sources: Sequence[tuple[str, str]]) -> Desired:
    """The core of :func:`load`: parse, validate, resolve env files, cross-check; all errors at once."""
    diagnostics: list[errors.Diagnostic] = []
    parsed: list[_Parsed] = []
    invalid: set[tuple[str, str]] = set()
    for file, text in sources:
        file_parsed, file_diagnostics, file_invalid = _parse_cached(text, file)
        parsed.extend(file_parsed)
        diagnostics.extend(file_diagnostics)
        invalid.update(file_invalid)
    desired = _assemble(parsed, diagnostics, invalid)
    if diagnostics:
        raise errors.ManifestError(diagnostics)
    return desired


_ParseResult: TypeAlias = tuple[tuple[_Parsed, ...], tuple[errors.Diagnostic, ...], frozenset[tuple[str, str]]]
# A daemon loads the same texts again and again (every resync, every ``apply`` through its API);
# parsing and validating is a pure function of (text, file name), so the last results are kept.
# Env files are not part of it: ``_assemble`` reads them on every load.
_PARSE_CACHE: collections.OrderedDict[tuple[str, str], _ParseResult] = collections.OrderedDict()
_PARSE_CACHE_SIZE = 64
_PARSE_CACHE_LOCK = threading.Lock()


def _parse_cached(text: str, file: str) -> _ParseResult:
    key = (text, file)
    with _PARSE_CACHE_LOCK:
        if (hit := _PARSE_CACHE.get(key)) is not None:
            _PARSE_CACHE.move_to_end(key)
            return hit
    diagnostics: list[errors.Diagnostic] = []
    invalid: set[tuple[str, str]] = set()
    parsed = _parse_text(text, file, diagnostics, invalid)
    result = (tuple(parsed), tuple(diagnostics), frozenset(invalid))
    with _PARSE_CACHE_LOCK:
        _PARSE_CACHE[key] = result
        while len(_PARSE_CACHE) > _PARSE_CACHE_SIZE:
            _PARSE_CACHE.popitem(last=False)
    return result


def _default_stack(file: str) -> str:
    if file.startswith("<"):
        return "default"
    stem = Path(file).stem.lower()
    stem = re.sub(r"[^a-z0-9-]+", "-", stem).strip("-")[:63].strip("-")
    return stem or "default"


def _read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments and blank lines skipped; ``export`` prefix allowed.

    Quotes around a whole value are removed as docker compose does; nothing is interpolated.
    """
    env: dict[str, str] = {}
    for number, raw_line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_KEY_RE.match(key):
            raise ValueError(f"line {number}: expected KEY=VALUE, got {raw_line.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def _assemble(parsed: list[_Parsed], diagnostics: list[errors.Diagnostic], invalid: set[tuple[str, str]]) -> Desired:
    containers: dict[str, DesiredContainer] = {}
    networks: dict[str, DesiredNetwork] = {}
    volumes: dict[str, DesiredVolume] = {}
    positions_of: dict[tuple[str, str], _Parsed] = {}

    def report(item: _Parsed, path: Sequence[str | int], message: str) -> None:
        _found, (line, column) = item.positions.nearest(path)
        diagnostics.append(errors.Diagnostic(item.file, line, column, _field_text(path), message))

    for item in parsed:
        doc = item.document
        name = doc.metadata.name
        stack = doc.metadata.stack or _default_stack(item.file)
        line, column = item.positions.values.get((), (1, 1))
        source = Source(item.file, line, column)
        previous = positions_of.get((doc.kind, name))
        if previous is not None:
            first = previous.positions.values.get(("metadata", "name"), (1, 1))
            where = f"{previous.file}:{first[0]}:{first[1]}"
            report(item, ("metadata", "name"), f"duplicate {doc.kind} {name!r} (first declared at {where})")
            continue
        positions_of[(doc.kind, name)] = item
        labels = dict(doc.metadata.labels)
        if isinstance(doc, ContainerDocument):
            effective: dict[str, str] = {}
            digests: dict[str, str] = {}
            base = Path(item.file).parent if not item.file.startswith("<") else Path.cwd()
            for index, env_file in enumerate(doc.spec.env_files):
                env_path = base / env_file
                try:
                    data = env_path.read_bytes()
                    effective.update(_read_env_file(env_path))
                except OSError as exc:
                    report(item, ("spec", "envFiles", index), f"cannot read {env_path}: {exc.strerror}")
                    continue
                except ValueError as exc:
                    report(item, ("spec", "envFiles", index), f"{env_path}: {exc}")
                    continue
                digests[env_file] = "sha256:" + hashlib.sha256(data).hexdigest()
            effective.update(doc.spec.env)
            containers[name] = DesiredContainer(name, stack, doc.spec, labels, source, effective, digests)
        elif isinstance(doc, NetworkDocument):
            networks[name] = DesiredNetwork(name, stack, doc.spec, labels, source)
        else:
            volumes[name] = DesiredVolume(name, stack, doc.spec, labels, source)

    _cross_check(containers, networks, volumes, positions_of, report, invalid=invalid)
    stacks = frozenset(
        [c.stack for c in containers.values()]
        + [n.stack for n in networks.values()]
        + [v.stack for v in volumes.values()]
    )
    return Desired(containers=containers, networks=networks, volumes=volumes, stacks=stacks)


def _cross_check(
    containers: Mapping[str, DesiredContainer],
    networks: Mapping[str, DesiredNetwork],
    volumes: Mapping[str, DesiredVolume],
    positions_of: Mapping[tuple[str, str], _Parsed],
    report: Any,
    *,
    invalid: set[tuple[str, str]],
) -> None:
    """Checks that need more than one object: ports, references, cycles.

    An object whose own document failed validation counts as declared here: one mistake should
    produce one message, not a cascade of "not declared" ones.
    """
    published: dict[tuple[str, int, str], tuple[str, int]] = {}
    for name in sorted(containers):
        container = containers[name]
        item = positions_of[("Container", name)]
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
                    report(item, ("spec", "ports", index, "hostPort"),
                           f"host port {port.host_port}/{port.protocol} is already published by container "
                           f"{other_name!r} (ports[{other_index}])")  # fmt: skip
                else:
                    published[key] = (name, index)
        for index, network in enumerate(container.spec.networks):
            if network.name not in networks and ("Network", network.name) not in invalid:
                report(item, ("spec", "networks", index, "name"),
                       f"network {network.name!r} is not declared in the manifests"
                       + _hint(network.name, networks))  # fmt: skip
            elif network.name in networks and network.ipv4_address and networks[network.name].spec.subnet:
                subnet = ipaddress.IPv4Network(networks[network.name].spec.subnet or "")
                if ipaddress.IPv4Address(network.ipv4_address) not in subnet:
                    report(item, ("spec", "networks", index, "ipv4Address"),
                           f"{network.ipv4_address} is outside network {network.name}'s subnet {subnet}")  # fmt: skip
        for index, mount in enumerate(container.spec.mounts):
            if (
                isinstance(mount, VolumeMount)
                and not mount.external
                and mount.source not in volumes
                and ("Volume", mount.source) not in invalid
            ):
                report(item, ("spec", "mounts", index, "source"),
                       f"volume {mount.source!r} is not declared in the manifests (declare a Volume, "
                       "or mark the mount external: true)" + _hint(mount.source, volumes))  # fmt: skip
        for field, names in (
            ("dependsOn", [d.name for d in container.spec.depends_on]),
            ("volumesFrom", list(container.spec.volumes_from)),
        ):
            for index, other in enumerate(names):
                path: tuple[str | int, ...] = ("spec", field, index) + (("name",) if field == "dependsOn" else ())
                if other == name:
                    report(item, path, f"container {name!r} cannot refer to itself")
                elif other not in containers and ("Container", other) not in invalid:
                    report(item, path, f"container {other!r} is not declared in the manifests"
                           + _hint(other, containers))  # fmt: skip
        mode = container.spec.network_mode
        peer = mode.removeprefix("container:")
        if mode.startswith("container:") and peer not in containers and ("Container", peer) not in invalid:
            report(
                item,
                ("spec", "networkMode"),
                f"container {mode.removeprefix('container:')!r} is not declared",
            )
    for cycle in _cycles(containers):
        item = positions_of[("Container", cycle[0])]
        report(item, ("spec", "dependsOn"), "dependency cycle: " + " → ".join([*cycle, cycle[0]]))


def container_dependencies(container: DesiredContainer) -> list[str]:
    """Containers that must be started before this one (dependsOn, volumesFrom, container: mode)."""
    names = [d.name for d in container.spec.depends_on] + list(container.spec.volumes_from)
    if container.spec.network_mode.startswith("container:"):
        names.append(container.spec.network_mode.removeprefix("container:"))
    return sorted(set(names))


def _cycles(containers: Mapping[str, DesiredContainer]) -> list[list[str]]:
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


# ---------------------------------------------------------------------------------------------
# JSON Schema
# ---------------------------------------------------------------------------------------------


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema per kind plus a combined one, as committed under ``schemas/``."""
    result: dict[str, dict[str, Any]] = {}
    for kind, model in _DOCUMENT_MODELS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = kind
        result[kind.lower()] = schema
    combined = pydantic.TypeAdapter(Annotated[Document, Field(discriminator="kind")]).json_schema(
        by_alias=True, mode="validation"
    )
    combined["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    combined["title"] = "reconciler manifest"
    result["reconciler"] = combined
    return result
