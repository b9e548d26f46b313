"""The manifest models: one strict, frozen pydantic model per part of a Container, Network or Volume document.

Sits above :mod:`.fields` (the field types) and below everything that reads manifests. The models
say what is valid within one document (field types, ranges, fields that exclude each other);
checks that need several documents live in :mod:`.checks`. Class docstrings and field
descriptions become the descriptions of the JSON schema under ``schemas/``.

Code outside the package uses the models as frozen values (reads their attributes, compares them)
and turns them into data or back only through :func:`to_document`,
:func:`container_spec_from_document`, :func:`bind_mount` and :func:`with_mounts`, never through
pydantic's API. This module must not read files or YAML.
"""

from __future__ import annotations

import contextlib
import ipaddress
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, TypeGuard

import pydantic
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from reconciler import vocabulary
from reconciler.manifests import fields, units

KINDS = ("Container", "Network", "Volume")


class Model(pydantic.BaseModel):
    """Strict, frozen, camelCase in YAML and snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=False,
    )


class Metadata(Model):
    name: fields.DnsLabel = Field(description="The engine object's name (a DNS label).")
    stack: fields.DnsLabel | None = Field(
        default=None, description="Pruning and deletion group; default: the file's stem."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the engine object.")

    @pydantic.field_validator("labels")
    @classmethod
    def _no_reserved_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key.startswith("reconciler."):
                raise ValueError(f"label {key!r}: the reconciler.* prefix is reserved for ownership labels")
        return labels


class ObjectMetadata(Metadata):
    """A Network's or Volume's metadata: its name as Docker allows (compose's ``<project>_<name>``)."""

    name: fields.ObjectName = Field(
        description="The engine object's name: letters, digits, '_', '.' and '-' (compose's <project>_<name>)."
    )


class Port(Model):
    """A published port. The long form, or compose's short one: ``"8080:80"``,
    ``"127.0.0.1:8080:80/udp"``, ``"80"`` (a random host port), ``"127.0.0.1::80"``, ranges
    ``"8000-8002:80-82"``, ``"[::1]:8080:80"``."""

    container_port: fields.PortNumber
    host_port: fields.PortNumber | None = Field(default=None, description="Omit to publish on a random port.")
    host_port_last: fields.PortNumber | None = Field(
        default=None,
        description="With replicas: the last host port of a range starting at hostPort, one port per replica "
        '(the short form "8000-8002:80").',
    )
    host_ip: str | None = Field(default=None, alias="hostIP", description="Default: all addresses.")
    protocol: Literal["tcp", "udp"] = "tcp"
    mode: Literal["ingress", "host"] = Field(
        default="ingress",
        description="Swarm only: ingress publishes the port on every node through the routing mesh; host "
        "on the nodes that run a task. The other engines publish on their one host either way.",
    )

    @pydantic.field_validator("host_ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @pydantic.model_validator(mode="after")
    def _range(self) -> Port:
        if self.host_port_last is not None and (self.host_port is None or self.host_port_last < self.host_port):
            raise ValueError("hostPortLast needs a hostPort at or below it")
        return self


_SHORT_PORT = re.compile(
    r"^(?:(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?P<host>\d+(?:-\d+)?)?:)?"
    r"(?P<container>\d+(?:-\d+)?)(?:/(?P<protocol>tcp|udp))?$"
)


def _port_range(text: str) -> range:
    first, _, last = text.partition("-")
    start, end = int(first), int(last or first)
    if end < start:
        raise ValueError(f"port range {text!r} ends before it starts")
    return range(start, end + 1)


def _short_port(value: str | int) -> list[dict[str, object]]:
    """One compose-style port string as long forms (a range gives one per port)."""
    match = _SHORT_PORT.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a port: write e.g. \"8080:80\", \"127.0.0.1:8080:80/udp\", "
                         "\"8000-8002:80-82\" or the long form {containerPort: 80, hostPort: 8080}")  # fmt: skip
    inside = _port_range(match["container"])
    outside = _port_range(match["host"]) if match["host"] else None
    if outside is not None and len(outside) > 1 and len(inside) == 1:
        # One container port on a host range: a host port per replica (see ``replicas``).
        port: dict[str, object] = {"containerPort": inside[0], "hostPort": outside[0], "hostPortLast": outside[-1]}
        port.update({"hostIP": match["ip"].strip("[]")} if match["ip"] else {})
        port.update({"protocol": match["protocol"]} if match["protocol"] else {})
        return [port]
    if outside is not None and len(outside) != len(inside):
        raise ValueError(f"{value!r}: the host range and the container range must be as long as each other")
    long: list[dict[str, object]] = []
    for offset, container_port in enumerate(inside):
        port = {"containerPort": container_port}
        if outside is not None:
            port["hostPort"] = outside[offset]
        if match["ip"]:
            port["hostIP"] = match["ip"].strip("[]")
        if match["protocol"]:
            port["protocol"] = match["protocol"]
        long.append(port)
    return long


def _is_short(item: object) -> TypeGuard[str | int]:
    return isinstance(item, str | int) and not isinstance(item, bool)


def _port_ranges(value: object) -> object:
    """A short form with a range stands for several ports: it is split here, before each port is
    read. The range's first port takes its place and the others go to the end, so that every
    written item keeps its index, which is what error positions point at (a malformed range is
    left in place for :func:`_port_short_form` to report)."""
    if not isinstance(value, list):
        return value
    expanded: list[object] = []
    extra: list[object] = []
    for item in value:
        if _is_short(item) and "-" in str(item):
            with contextlib.suppress(ValueError):
                first, *others = _short_port(item)
                expanded.append(first)
                extra.extend(others)
                continue
        expanded.append(item)
    return expanded + extra


def _port_short_form(value: object) -> object:
    """A compose-style port (``"8080:80"``, ``80``) as its long form."""
    if _is_short(value):
        (port,) = _short_port(value)
        return port
    return value


class NetworkAttachment(Model):
    name: fields.ObjectName = Field(description="A Network declared in the manifests (or external: true).")
    aliases: list[fields.DnsLabel] = Field(default_factory=list)
    ipv4_address: str | None = None
    external: bool = Field(
        default=False,
        description="The network belongs to another stack or was made outside reconciler: it is used, "
        "never created, changed or removed by this stack; a missing one is an error.",
    )

    @pydantic.field_validator("ipv4_address")
    @classmethod
    def _ipv4(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.IPv4Address(value)
        return value


class VolumeMount(Model):
    type: Literal["volume"]
    source: fields.ObjectName = Field(description="A Volume declared in the manifests (or external: true).")
    target: fields.AbsolutePath
    read_only: bool = False
    external: bool = Field(
        default=False,
        description="The volume belongs to another stack or was made outside reconciler: it is used, "
        "never created or removed by this stack; a missing one is an error.",
    )


class BindMount(Model):
    type: Literal["bind"]
    source: fields.AbsolutePath = Field(description="A host path: bind mounts are the manifest opting in.")
    target: fields.AbsolutePath
    read_only: bool = False


class TmpfsMount(Model):
    type: Literal["tmpfs"]
    target: fields.AbsolutePath
    size: fields.Size | None = None
    mode: int | None = Field(default=None, ge=0, le=0o7777)
    options: list[Literal["exec", "noexec", "suid", "nosuid", "dev", "nodev"]] = Field(
        default_factory=list, description="Default: noexec, nosuid, nodev (as Docker); exec, suid, dev lift one."
    )

    @pydantic.field_validator("options")
    @classmethod
    def _no_contradiction(cls, options: list[str]) -> list[str]:
        for option in options:
            if f"no{option}" in options:
                raise ValueError(f"{option} and no{option} contradict each other")
        return options


Mount: TypeAlias = Annotated[VolumeMount | BindMount | TmpfsMount, Field(discriminator="type")]


class Placement(Model):
    """Where a Swarm service's tasks may run (the other engines run on their one host)."""

    constraints: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list,
        description='Swarm placement constraints, e.g. "node.role==worker", "node.labels.disk==ssd".',
    )


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
            raise ValueError(f"memory {units.format_size(memory)} is below the 6Mi minimum (as Docker's)")
        return memory

    memory: fields.Size | None = Field(default=None, description="At least 6Mi, as Docker.")
    cpus: float | None = Field(default=None, gt=0, le=1024)
    pids: int | None = Field(default=None, ge=1)


class Backoff(Model):
    """Restart backoff; the defaults are Docker's restart manager's."""

    initial: fields.Duration = 0.1
    max: fields.Duration = 60.0
    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    reset_after: fields.Duration = 10.0
    jitter: float = Field(default=0.0, ge=0.0, le=1.0, description="Fraction of random spread per delay.")


class Restart(Model):
    """Docker's restart policy. ``restart: always`` is short for ``{policy: always}`` and
    ``restart: on-failure:3`` for ``{policy: on-failure, maxRetries: 3}``, as in compose."""

    policy: vocabulary.RestartPolicy = "no"
    max_retries: int | None = Field(default=None, ge=0, description="Only with on-failure.")
    backoff: Backoff | None = None
    on_unhealthy: bool = False

    @pydantic.model_validator(mode="after")
    def _retries_only_on_failure(self) -> Restart:
        if self.max_retries is not None and self.policy != "on-failure":
            raise ValueError("maxRetries is only meaningful with policy: on-failure")
        return self


def _restart_shorthand(value: object) -> object:
    if value is False:
        # YAML reads an unquoted ``restart: no`` as false; compose users write exactly that.
        return {"policy": "no"}
    if isinstance(value, str):
        policy, colon, retries = value.partition(":")
        if colon and policy == "on-failure" and retries.isdigit():
            return {"policy": policy, "maxRetries": int(retries)}
        return {"policy": value}
    return value


# What ``restart:`` may be instead of a mapping, for the JSON schema (``_restart_shorthand`` reads it).
_RestartShorthand: TypeAlias = vocabulary.RestartPolicy | Annotated[str, Field(pattern=r"^on-failure:\d+$")]


class Logging(Model):
    """Rotation of the container's json-file log, as Docker's ``max-size``/``max-file`` options.

    Without ``maxSize`` the log grows without bound (Docker's default)."""

    max_size: fields.Size | None = Field(default=None, description="Rotate when the log reaches this size.")
    max_files: int = Field(default=1, ge=1, le=100, description="Log files kept, the current one included.")

    @pydantic.model_validator(mode="after")
    def _files_need_a_size(self) -> Logging:
        if self.max_files > 1 and not self.max_size:
            raise ValueError("maxFiles needs maxSize (files are rotated when they reach it)")
        if self.max_size is not None and self.max_size < 1024:
            raise ValueError("maxSize must be at least 1Ki")
        return self


def _shell_test(value: object) -> object:
    """A health check ``test`` written as one string runs in the container's shell, as Docker's."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("an empty test checks nothing; write a command, or [NONE] to turn the check off")
        return ["CMD-SHELL", value]
    return value


class Healthcheck(Model):
    """Docker's health check, with Docker's defaults."""

    test: Annotated[
        list[str],
        Field(
            min_length=1,
            description='[CMD, args...], [CMD-SHELL, "a command"], [NONE], or a string '
            "(short for [CMD-SHELL, the string], as in Docker).",
        ),
        BeforeValidator(_shell_test),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    {"type": "string", "minLength": 1},
                ]
            }
        ),
    ]
    interval: fields.Duration = 30.0
    timeout: fields.Duration = 30.0
    retries: int = Field(default=3, ge=1)
    start_period: fields.Duration = 0.0

    @pydantic.field_validator("test")
    @classmethod
    def _form(cls, test: list[str]) -> list[str]:
        if test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ValueError("test must start with CMD, CMD-SHELL or NONE, e.g. [CMD, /bin/check]")
        if test[0] != "NONE" and len(test) < 2:
            raise ValueError(f"{test[0]} needs a command after it")
        return test


# ---------------------------------------------------------------------------------------------
# The knobs real images need: ulimits, devices, sysctls, security options, namespaces shared
# ---------------------------------------------------------------------------------------------

# Docker's ulimit names (as ``docker run --ulimit``), each a setrlimit(2) resource.
ULIMIT_NAMES = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip


class Ulimit(Model):
    """A resource limit; -1 is unlimited. ``nofile: 65536`` is short for ``{soft: 65536, hard: 65536}``."""

    soft: int = Field(ge=-1)
    hard: int = Field(ge=-1)

    @pydantic.model_validator(mode="after")
    def _soft_within_hard(self) -> Ulimit:
        if self.hard != -1 and (self.soft == -1 or self.soft > self.hard):
            raise ValueError(f"the soft limit ({self.soft}) must not exceed the hard limit ({self.hard})")
        return self


def _ulimit_name(name: str) -> str:
    if name not in ULIMIT_NAMES:
        raise ValueError(f"{name!r} is not a ulimit; one of {', '.join(ULIMIT_NAMES)}")
    return name


def _ulimit_shorthand(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"soft": value, "hard": value}
    return value


_PERMISSIONS = re.compile(r"^[rwm]{1,3}$")


def _permissions(text: str) -> str:
    if not _PERMISSIONS.match(text) or len(set(text)) != len(text):
        raise ValueError(f"{text!r}: permissions are r, w and m (mknod), each at most once")
    return text


class Device(Model):
    """A host device made available in the container. Docker's short form ``/dev/fuse``,
    ``/dev/sda:/dev/xvda`` or ``/dev/sda:/dev/xvda:rwm`` is accepted too."""

    source: fields.AbsolutePath = Field(description="The device on the host.")
    target: fields.AbsolutePath | None = Field(default=None, description="Default: the same path.")
    permissions: Annotated[str, pydantic.AfterValidator(_permissions)] = Field(
        default="rwm", description="r, w, m (mknod)."
    )


def _device_short_form(value: object) -> object:
    if not isinstance(value, str):
        return value
    parts = value.split(":")
    if len(parts) == 2 and _PERMISSIONS.match(parts[1]):
        parts = [parts[0], "", parts[1]]
    if len(parts) > 3 or not all(parts[:1]):
        raise ValueError(f"{value!r} is not a device: write /dev/fuse, /dev/sda:/dev/xvda or /dev/sda:/dev/xvda:rwm")
    device: dict[str, object] = {"source": parts[0]}
    if len(parts) > 1 and parts[1]:
        device["target"] = parts[1]
    if len(parts) > 2:
        device["permissions"] = parts[2]
    return device


# Docker's device cgroup rule: type (a all, c char, b block), major:minor (* any), access.
DEVICE_CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def _device_cgroup_rule(rule: str) -> str:
    if not DEVICE_CGROUP_RULE.match(rule):
        raise ValueError(f"{rule!r} is not a device cgroup rule: write e.g. 'c 10:229 rwm' or 'b 8:* r'")
    return rule


# Sysctls that belong to a container's own IPC namespace (Docker's list); net.* belong to its
# network namespace. Any other sysctl would change the whole host, and is refused, as by Docker.
IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
    "kernel.shmmni", "kernel.shm_rmid_forced",
})  # fmt: skip


def sysctl_namespace(key: str) -> Literal["ipc", "net"] | None:
    """The namespace a sysctl belongs to, or None for one that is not namespaced."""
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "net"
    return None


def _sysctl_values(value: object) -> object:
    """YAML reads ``somaxconn: 1024`` as a number; sysctl values are text."""
    if isinstance(value, dict):
        return {k: str(int(v)) if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
                for k, v in value.items()}  # fmt: skip
    return value


def _security_option(option: str) -> str:
    """One ``securityOpt`` entry in its canonical spelling: ``no-new-privileges:true|false``,
    ``seccomp=unconfined``, ``seccomp=/a/profile.json``, ``apparmor=PROFILE`` (``:`` or ``=``
    after the key, as Docker accepts)."""
    match = re.match(r"^([a-z-]+)(?:[:=](.*))?$", option)
    key, value = (match[1], match[2]) if match else ("", None)
    if key == "no-new-privileges":
        if value is not None and value not in ("true", "false"):
            raise ValueError(f"{option!r}: no-new-privileges takes true or false")
        return f"no-new-privileges:{value or 'true'}"
    if key == "seccomp" and value:
        if value != "unconfined" and not value.startswith("/"):
            raise ValueError(f"{option!r}: write seccomp=unconfined or seccomp=<absolute path of a profile file>")
        return f"seccomp={value}"
    if key == "apparmor" and value:
        return f"apparmor={value}"
    raise ValueError(
        f"{option!r} is not a security option: write no-new-privileges[:true|false], "
        "seccomp=unconfined|<profile file>, or apparmor=<profile>|unconfined"
    )


def _shared_namespace(mode: str, modes: tuple[str, ...], field: str) -> str:
    if mode in modes or (mode.startswith("container:") and fields.DNS_LABEL.match(mode.removeprefix("container:"))):
        return mode
    raise ValueError(f"{mode!r}: {field} must be {', '.join(modes)} or container:NAME")


_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def _cpuset(cpus: str) -> str:
    if not _CPUSET.match(cpus):
        raise ValueError(f"{cpus!r} is not a CPU list: write e.g. 0-3 or 0,2")
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        if last and int(last) < int(first):
            raise ValueError(f"{cpus!r}: the range {part} ends before it starts")
    return cpus


def _group_names(value: object) -> object:
    """``groupAdd: [audio, 1000]``: YAML reads numbers as integers; groups are names or numbers."""
    if isinstance(value, list):
        return [str(item) if isinstance(item, int) and not isinstance(item, bool) else item for item in value]
    return value


class Dependency(Model):
    name: fields.DnsLabel
    condition: Literal["started", "healthy", "completed"] = "started"


def _dependency_shorthand(value: object) -> object:
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value


def _octal_mode(value: object) -> object:
    """A file mode as compose users write it: an integer (YAML reads ``0440`` as octal), or octal
    text (``"0440"``, ``"0o440"``, ``"440"``: YAML 1.1 reads ``0o440`` as text)."""
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not re.fullmatch(r"[0-7]{1,4}", text):
            raise ValueError(f"{value!r} is not an octal file mode such as 0440")
        return int(text, 8)
    return value


class MountedFile(Model):
    """A file the engine puts into the container, read-only, from a root-only tmpfs (never the
    container's layer): its content comes from ``file`` (relative to the manifest) or ``env`` (a
    variable of the process that loads the manifest). Labels, plans and status show only a
    digest of the content; a changed content recreates the container."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    file: str | None = Field(default=None, description="Relative to the manifest file.")
    env: str | None = Field(default=None, pattern=fields.ENV_KEY.pattern, description="An environment variable.")
    target: str | None = Field(default=None, description="An absolute path, or a file name in the default folder.")
    uid: int = Field(default=0, ge=0, le=0xFFFFFFFE)
    gid: int = Field(default=0, ge=0, le=0xFFFFFFFE)
    mode: Annotated[int, BeforeValidator(_octal_mode, json_schema_input_type=int | str), Field(ge=0, le=0o777)] = 0o444

    # Where a target that is a bare file name goes (secrets: /run/secrets, as Docker's).
    default_folder: ClassVar[str] = "/"

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> MountedFile:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file (a path) or env (a variable name)")
        target = self.target
        if target is not None and (posixpath.normpath(target) != target or ".." in target.split("/") or target == "/"):
            raise ValueError(f"target {target!r}: a file's path, without '..', '.', '//' or a trailing '/'")
        return self

    @property
    def path(self) -> str:
        """Where it appears in the container."""
        return posixpath.join(self.default_folder, self.target or self.name)


class Secret(MountedFile):
    """A secret, at ``/run/secrets/NAME`` by default; mode 0444 and owner 0:0 by default, as Docker's."""

    default_folder: ClassVar[str] = "/run/secrets"


class Config(MountedFile):
    """A config file, at ``/NAME`` by default (as compose), or at its ``target``."""


def mounted_files(spec: ContainerSpec) -> list[MountedFile]:
    """The spec's secrets, then its configs: every file the engine mounts from its tmpfs."""
    return [*spec.secrets, *spec.configs]


_DOMAIN_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
HOST_GATEWAY = "host-gateway"


def _check_domain(value: str, what: str, *, limit: int = 253) -> str:
    """A domain name (labels of letters, digits and '-'), at most ``limit`` characters."""
    labels = value.removesuffix(".").split(".")
    if not value or len(value) > limit or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise ValueError(f"{what} {value!r} is not a domain name: dot-separated labels of 1-63 letters, digits "
                         f"and '-', at most {limit} characters")  # fmt: skip
    return value


def _extra_hosts_map(value: object) -> object:
    """``extraHosts`` written as a map (``{name: ip}``, as compose allows) as its list form."""
    if isinstance(value, dict):
        return [f"{name}:{ip}" for name, ip in value.items()]
    return value


def _check_extra_host(entry: str) -> str:
    name, colon, address = entry.partition(":")
    if not colon or not name:
        raise ValueError(f"extraHosts {entry!r}: write name:ip, e.g. db.local:10.0.0.5 or gw:host-gateway")
    _check_domain(name.replace("_", "-"), "extraHosts name")
    if address != HOST_GATEWAY:
        try:
            ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            raise ValueError(f"extraHosts {entry!r}: {address!r} is not an IP address or host-gateway") from None
    return entry


class ContainerSpec(Model):
    image: fields.ImageRef
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="How many copies run, as NAME-1 … NAME-N, each answering NAME on its networks; "
        "1 (the default) runs one container called NAME.",
    )
    pull_policy: vocabulary.PullPolicy = "IfNotPresent"
    entrypoint: fields.Argv | None = Field(default=None, description="Overrides the image's ENTRYPOINT.")
    command: fields.Argv | None = Field(default=None, description="Overrides the image's CMD.")
    env: fields.EnvMap = Field(default_factory=dict, description="A map, or a list of KEY=VALUE strings.")
    env_files: list[str] = Field(default_factory=list, description="Relative to the manifest file.")
    working_dir: fields.AbsolutePath | None = None
    user: str | None = None
    hostname: str | None = Field(
        default=None,
        description="A DNS label, or an FQDN: the first label is the hostname, the rest the domainname (as Docker).",
    )
    domainname: str | None = Field(default=None, description="The container's NIS domain name (kernel.domainname).")
    dns: list[str] = Field(
        default_factory=list,
        description="Upstream resolvers (IP addresses) for names outside the stack; default: the engine's.",
    )
    dns_search: list[str] = Field(default_factory=list, description="Search domains in resolv.conf.")
    dns_options: list[str] = Field(default_factory=list, description="resolv.conf options, e.g. ndots:2.")
    extra_hosts: Annotated[
        list[str],
        BeforeValidator(_extra_hosts_map, json_schema_input_type=list[str] | dict[str, str]),
    ] = Field(
        default_factory=list,
        description='/etc/hosts entries: ["name:ip", ...] or {name: ip}; the ip host-gateway is the '
        "host's address on the container's network.",
    )
    ports: Annotated[
        list[Annotated[Port, BeforeValidator(_port_short_form, json_schema_input_type=str | int | Port)]],
        BeforeValidator(_port_ranges),
    ] = Field(
        default_factory=list,
        description='Published ports: "8080:80", "127.0.0.1:8080:80/udp", "80" (a random host port), '
        '"8000-8002:80-82", or the long form {containerPort: 80, hostPort: 8080}.',
    )
    networks: list[NetworkAttachment] = Field(default_factory=list)
    network_mode: str = Field(default="bridge", description="bridge | none | host | container:NAME")
    mounts: list[Mount] = Field(default_factory=list)
    volumes_from: list[fields.DnsLabel] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    restart: Annotated[
        Restart,
        BeforeValidator(_restart_shorthand, json_schema_input_type=_RestartShorthand | Restart),
    ] = Field(
        default_factory=Restart,
        description="always is short for {policy: always}, on-failure:3 for {policy: on-failure, maxRetries: 3}.",
    )
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
    stop_signal: fields.Signal | None = Field(
        default=None, description="Default: the image's STOPSIGNAL, else SIGTERM (as Docker)."
    )
    stop_timeout: fields.Duration = 10.0
    strategy: Literal["start-first", "stop-first"] = Field(
        default="start-first",
        description="How a changed container is replaced: start-first runs the new one beside the old and "
        "switches once it is ready (stop-first where the two cannot run at once: a named volume mounted "
        "read-write, or the same published host port on an engine that cannot hand it over); stop-first "
        "stops the old one first. Either way the "
        "old one is kept, and started again, if the new one does not become ready.",
    )
    min_ready_seconds: fields.Duration = Field(
        default=3.0,
        description="A replacement without a health check is ready once it has run this long without "
        "exiting or restarting; with a health check, once it is healthy.",
    )
    progress_deadline: fields.Duration | None = Field(
        default=None,
        description="How long a replacement may take to become ready before it is rolled back; default "
        "120s, or longer when minReadySeconds (plus 30s) or the health check (its startPeriod, two "
        "intervals and its timeout) needs it.",
    )
    read_only_rootfs: bool = False
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    privileged: bool = Field(default=False, description="Off unless the manifest says so.")
    ulimits: dict[
        Annotated[str, pydantic.AfterValidator(_ulimit_name)],
        Annotated[Ulimit, BeforeValidator(_ulimit_shorthand, json_schema_input_type=int | Ulimit)],
    ] = Field(default_factory=dict, description="e.g. {nofile: {soft: 1024, hard: 4096}, nproc: 512}.")
    shm_size: fields.Size | None = Field(default=None, description="Size of /dev/shm; default 64Mi (as Docker).")
    sysctls: Annotated[dict[str, str], BeforeValidator(_sysctl_values)] = Field(
        default_factory=dict,
        description="Namespaced sysctls only (as Docker): net.*, kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*.",
    )
    init: bool = Field(default=False, description="Run tini as pid 1 (Docker's docker-init), reaping zombies.")
    devices: list[Annotated[Device, BeforeValidator(_device_short_form, json_schema_input_type=str | Device)]] = Field(
        default_factory=list, description="/dev/fuse, /dev/sda:/dev/xvda:rwm or {source, target, permissions}."
    )
    device_cgroup_rules: list[Annotated[str, pydantic.AfterValidator(_device_cgroup_rule)]] = Field(
        default_factory=list, description="Devices the container may create and use, e.g. 'c 10:229 rwm'."
    )
    security_opt: list[Annotated[str, pydantic.AfterValidator(_security_option)]] = Field(
        default_factory=list,
        description="no-new-privileges[:true|false], seccomp=unconfined|<profile file>, apparmor=<profile>|unconfined.",
    )
    oom_score_adj: int | None = Field(default=None, ge=-1000, le=1000)
    group_add: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]], BeforeValidator(_group_names)
    ] = Field(default_factory=list, description="Extra groups (names in the image's /etc/group, or numbers).")
    ipc: str | None = Field(default=None, description="private (default) | shareable | host | container:NAME")
    pid: str | None = Field(default=None, description="private (default) | host | container:NAME")
    cpuset: Annotated[str, pydantic.AfterValidator(_cpuset)] | None = Field(
        default=None, description="The CPUs it may run on, e.g. 0-3 or 0,2; a change recreates the container."
    )
    memory_reservation: fields.Size | None = Field(
        default=None, description="A soft memory limit; a change recreates the container."
    )
    cpu_shares: int | None = Field(
        default=None, ge=2, le=262144, description="Relative CPU weight (1024 is the default); a change recreates."
    )
    secrets: list[Secret] = Field(
        default_factory=list, description="Files mounted read-only at /run/secrets/NAME from a root-only tmpfs."
    )
    configs: list[Config] = Field(default_factory=list, description="Files mounted read-only at their target.")
    placement: Placement = Field(default_factory=Placement, description="Swarm only: where the tasks may run.")

    @pydantic.field_validator("env")
    @classmethod
    def _env_keys(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not fields.ENV_KEY.match(key):
                raise ValueError(f"env name {key!r} must match [A-Za-z_][A-Za-z0-9_.-]*")
        return env

    @pydantic.field_validator("network_mode")
    @classmethod
    def _mode(cls, mode: str) -> str:
        if mode in ("bridge", "none", "host"):
            return mode
        if mode.startswith("container:") and fields.DNS_LABEL.match(mode.removeprefix("container:")):
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

    @pydantic.field_validator("ipc")
    @classmethod
    def _ipc(cls, mode: str | None) -> str | None:
        return None if mode is None else _shared_namespace(mode, ("private", "shareable", "host"), "ipc")

    @pydantic.field_validator("pid")
    @classmethod
    def _pid(cls, mode: str | None) -> str | None:
        return None if mode is None else _shared_namespace(mode, ("private", "host"), "pid")

    @pydantic.field_validator("security_opt")
    @classmethod
    def _one_of_each(cls, options: list[str]) -> list[str]:
        keys = [re.split("[:=]", option, maxsplit=1)[0] for option in options]
        for key in sorted({k for k in keys if keys.count(k) > 1}):
            raise ValueError(f"{key} is given twice")
        return options

    @pydantic.model_validator(mode="after")
    def _namespaced_sysctls(self) -> ContainerSpec:
        # Docker's rule: a sysctl must belong to a namespace of the container's own, else it
        # would change the host's (or another container's) kernel settings.
        owners = {"net": ("networkMode", self.network_mode), "ipc": ("ipc", self.ipc or "private")}
        for key in self.sysctls:
            kind = sysctl_namespace(key)
            if kind is None:
                raise ValueError(f"sysctl {key} is not namespaced (only net.*, kernel.msg*, kernel.sem, "
                                 "kernel.shm* and fs.mqueue.* are): it would change the host")  # fmt: skip
            field, mode = owners[kind]
            if mode == "host" or mode.startswith("container:"):
                raise ValueError(
                    f"sysctl {key} cannot be set with {field} {mode}: that namespace is not this container's"
                )
        if self.memory_reservation and self.resources.memory and self.memory_reservation > self.resources.memory:
            raise ValueError("memoryReservation must not exceed resources.memory")
        return self

    @pydantic.model_validator(mode="after")
    def _distinct_files(self) -> ContainerSpec:
        for kind, items in (("secret", self.secrets), ("config", self.configs)):
            names = [item.name for item in items]
            for name in sorted({n for n in names if names.count(n) > 1}):
                raise ValueError(f"{kind} {name} is listed twice")
        paths = [item.path for item in mounted_files(self)] + [m.target for m in self.mounts]
        for path in sorted({p for p in paths if paths.count(p) > 1}):
            raise ValueError(f"two mounts, secrets or configs target {path}")
        return self

    @property
    def ready_deadline(self) -> float:
        """Seconds a replacement has to become ready: ``progressDeadline``, else its default."""
        if self.progress_deadline is not None:
            return self.progress_deadline
        needs = [120.0, self.min_ready_seconds + 30.0]
        check = self.healthcheck
        if check is not None and check.test[0] != "NONE":
            needs.append(check.start_period + 2 * check.interval + check.timeout)
        return max(needs)

    @property
    def uts_names(self) -> tuple[str | None, str | None]:
        """The hostname and domainname the kernel is given: an FQDN hostname split at its first dot."""
        if self.hostname is not None and "." in self.hostname:
            first, _, domain = self.hostname.partition(".")
            return first, domain.removesuffix(".")
        return self.hostname, self.domainname

    @pydantic.field_validator("hostname", "domainname")
    @classmethod
    def _names(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        # The kernel's UTS names are at most 64 bytes each (hostname: one label; domainname: the rest).
        if value is not None and info.field_name == "hostname":
            first, _, domain = value.partition(".")
            if not fields.DNS_LABEL.match(first):
                raise ValueError(f"hostname {value!r}: {first!r} is not a DNS label (1-63 lowercase letters, "
                                 "digits and '-'); an FQDN's first label is the hostname")  # fmt: skip
            return value if not domain else f"{first}.{_check_domain(domain, 'hostname domain', limit=64)}"
        return None if value is None else _check_domain(value, "domainname", limit=64)

    @pydantic.field_validator("dns")
    @classmethod
    def _dns(cls, servers: list[str]) -> list[str]:
        for server in servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ValueError(f"dns {server!r} is not an IP address") from None
        return servers

    @pydantic.field_validator("dns_search", "dns_options", "extra_hosts")
    @classmethod
    def _resolver_words(cls, values: list[str], info: pydantic.ValidationInfo) -> list[str]:
        for value in values:
            if not value or any(c.isspace() for c in value) or "#" in value:
                raise ValueError(f"{to_camel(str(info.field_name))} {value!r}: one word, no spaces or '#'")
            if info.field_name == "dns_search" and value != ".":
                _check_domain(value, "dnsSearch")
            if info.field_name == "extra_hosts":
                _check_extra_host(value)
        return values

    @pydantic.model_validator(mode="after")
    def _coherent(self) -> ContainerSpec:
        resolver = {"domainname": self.domainname, "dns": self.dns, "dnsSearch": self.dns_search,
                    "dnsOptions": self.dns_options, "extraHosts": self.extra_hosts}  # fmt: skip
        for key, value in resolver.items():
            if value and self.network_mode.startswith("container:"):
                raise ValueError(f"{key} cannot be set with networkMode container:NAME (it shares that container's)")
        if self.domainname and self.hostname and "." in self.hostname:
            raise ValueError("give the domain once: in an FQDN hostname or in domainname, not both")
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
        if self.progress_deadline is not None and self.progress_deadline <= self.min_ready_seconds:
            raise ValueError("progressDeadline must be longer than minReadySeconds")
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
    metadata: ObjectMetadata
    spec: NetworkSpec = Field(default_factory=NetworkSpec)


class VolumeDocument(_Document):
    """``kind: Volume`` — named storage; never removed unless the user asks explicitly."""

    kind: Literal["Volume"]
    metadata: ObjectMetadata
    spec: VolumeSpec = Field(default_factory=VolumeSpec)


Document: TypeAlias = ContainerDocument | NetworkDocument | VolumeDocument
DOCUMENT_MODELS: dict[str, type[_Document]] = {
    "Container": ContainerDocument,
    "Network": NetworkDocument,
    "Volume": VolumeDocument,
}


def to_document(
    model: Model, *, exclude_defaults: bool = False, exclude: Mapping[str, Any] | set[str] | None = None
) -> dict[str, Any]:
    """``model`` as the JSON document a manifest would spell (camelCase keys, plain values).

    The one way code outside this package turns a model into data (for hashing, records, digests),
    so that nothing else calls pydantic's API.
    """
    return model.model_dump(mode="json", by_alias=True, exclude_defaults=exclude_defaults, exclude=exclude)


def container_spec_from_document(document: Mapping[str, Any]) -> ContainerSpec:
    """The inverse of :func:`to_document` for a container spec (a record read back from disk)."""
    return ContainerSpec.model_validate(document)


def bind_mount(source: str, target: str) -> BindMount:
    """A read-write bind mount of ``source`` at ``target``, as the engines add for anonymous volumes."""
    return BindMount.model_validate({"type": "bind", "source": source, "target": target})


def with_mounts(spec: ContainerSpec, extra: Sequence[VolumeMount | BindMount | TmpfsMount]) -> ContainerSpec:
    """``spec`` with ``extra`` mounted after its own mounts (the anonymous and inherited volumes an engine adds).

    The copy is not validated again: the engine that adds the mounts keeps their targets apart.
    """
    return spec.model_copy(update={"mounts": [*spec.mounts, *extra]})
