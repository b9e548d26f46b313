"""Docker backend, requests → Engine API bodies: what the manifest becomes on Docker.

Where it sits: the engine sends these bodies; this module only builds them (pure, no daemon, no
docker SDK). A container's config is built as the Engine API's own JSON (``Config`` +
``HostConfig`` + ``NetworkingConfig``) and sent with ``create_container_from_config``: the SDK's
keyword helpers cannot express every field (tmpfs mode, a pids limit in an update ...), and
building the JSON here keeps the whole mapping in one readable place.

* Restart policies map to Docker's own, so containers keep restarting when no controller runs;
  a manifest with a custom ``backoff`` or ``onUnhealthy`` leaves Docker's policy at ``no``
  because then the controller owns the restarts (two restarters would fight).
* Resources (memory, CPUs, pids) can be changed in place with Docker's container update, lifting
  a limit included (see :func:`resources_config` for how, since Docker's update has no "unset").
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from reconciler import errors, manifests, vocabulary

if TYPE_CHECKING:  # annotations only here
    from reconciler import plans

# What "no memory limit" is written as in an update (Docker refuses -1 and ignores 0 there); the
# kernel caps it at its own maximum. Read back as None. 2**62 bytes is far beyond any real host.
UNLIMITED_MEMORY = 1 << 62
# CFS period for CPU limits (Docker's default, 100 ms): ``cpus`` maps to a quota over it.
CPU_PERIOD = 100_000


def _nanoseconds(seconds: float) -> int:
    return round(seconds * 1e9)


def restart_policy(restart: manifests.Restart) -> dict[str, Any]:
    """Docker's restart policy for a manifest's, or ``no`` when the controller owns restarts."""
    if restart.backoff is not None or restart.on_unhealthy:
        return {"Name": "no", "MaximumRetryCount": 0}
    if restart.policy == "on-failure":
        return {"Name": "on-failure", "MaximumRetryCount": restart.max_retries or 0}
    return {"Name": restart.policy, "MaximumRetryCount": 0}


def resources_config(resources: manifests.Resources, *, for_update: bool = False) -> dict[str, Any]:
    """HostConfig resource fields. Swap equals memory, so a limit is a limit (no swap on top).

    At creation an absent limit is simply left out. An update must also be able to *lift* a
    limit, and Docker's update treats ``0`` as "unchanged" and rejects ``-1`` for memory, so:

    * memory: lifted by setting :data:`UNLIMITED_MEMORY` (which observe reads back as None);
    * CPUs: a CFS quota over :data:`CPU_PERIOD` rather than ``NanoCpus``, because a quota of
      ``-1`` lifts the limit in place while ``NanoCpus`` cannot be unset once set;
    * pids: ``-1`` is Docker's "unlimited".
    """
    config: dict[str, Any] = {}
    if resources.memory is not None:
        config["Memory"] = config["MemorySwap"] = resources.memory
    elif for_update:
        config["Memory"] = config["MemorySwap"] = UNLIMITED_MEMORY
    if resources.cpus is not None:
        config["CpuPeriod"] = CPU_PERIOD
        config["CpuQuota"] = round(resources.cpus * CPU_PERIOD)
    elif for_update:
        config["CpuQuota"] = -1
    if resources.pids is not None:
        config["PidsLimit"] = resources.pids
    elif for_update:
        config["PidsLimit"] = -1
    return config


def mount(mount: manifests.VolumeMount | manifests.BindMount | manifests.TmpfsMount) -> dict[str, Any]:
    """A mount as the Engine API's ``Mount`` object (a container's ``HostConfig.Mounts``, a Swarm
    task's ``ContainerSpec.Mounts``: one shape)."""
    if isinstance(mount, manifests.TmpfsMount):
        options: dict[str, Any] = {}
        if mount.size is not None:
            options["SizeBytes"] = mount.size
        if mount.mode is not None:
            options["Mode"] = mount.mode
        result: dict[str, Any] = {"Type": "tmpfs", "Target": mount.target}
        if options:
            result["TmpfsOptions"] = options
        return result
    kind = "volume" if isinstance(mount, manifests.VolumeMount) else "bind"
    return {"Type": kind, "Source": mount.source, "Target": mount.target, "ReadOnly": mount.read_only}


def _tmpfs_options(mount: manifests.TmpfsMount) -> str:
    """A tmpfs's ``HostConfig.Tmpfs`` options: its size and mode, then the flags written (dockerd
    puts its defaults, noexec, nosuid and nodev, first, so a written exec, suid or dev wins)."""
    options = [f"size={mount.size}"] if mount.size is not None else []
    options += [f"mode={mount.mode:o}"] if mount.mode is not None else []
    return ",".join([*options, *mount.options])


def _security_options(options: list[str]) -> list[str]:
    """``securityOpt`` as the Engine API takes it: a seccomp profile by its JSON text, which the
    docker CLI reads from the file for ``--security-opt seccomp=FILE`` (dockerd takes no path)."""
    sent = []
    for option in options:
        if option.startswith("seccomp=/"):
            path = option.removeprefix("seccomp=")
            try:
                with open(path, encoding="utf-8") as profile:
                    text = profile.read()
                json.loads(text)
            except (OSError, ValueError) as exc:
                raise errors.RuntimeFailed(f"seccomp profile {path}: {exc}") from None
            sent.append(f"seccomp={text}")
        else:
            sent.append(option)
    return sent


def _knobs(spec: manifests.ContainerSpec) -> dict[str, Any]:
    """The HostConfig fields of the knobs real images need; none of them when none is set."""
    devices = [
        {"PathOnHost": d.source, "PathInContainer": d.target or d.source, "CgroupPermissions": d.permissions}
        for d in spec.devices
    ]
    ulimits = [{"Name": name, "Soft": limit.soft, "Hard": limit.hard} for name, limit in spec.ulimits.items()]
    pid = None if spec.pid == "private" else spec.pid  # Docker's private pid mode is the empty one
    tmpfs = [m for m in spec.mounts if isinstance(m, manifests.TmpfsMount) and m.options]
    knobs: dict[str, Any] = {
        "Ulimits": ulimits, "ShmSize": spec.shm_size, "Sysctls": dict(spec.sysctls), "Init": spec.init or None,
        "Devices": devices, "DeviceCgroupRules": list(spec.device_cgroup_rules),
        "SecurityOpt": _security_options(spec.security_opt), "OomScoreAdj": spec.oom_score_adj,
        "GroupAdd": list(spec.group_add), "IpcMode": spec.ipc, "PidMode": pid, "CpusetCpus": spec.cpuset,
        "MemoryReservation": spec.memory_reservation, "CpuShares": spec.cpu_shares,
        "Tmpfs": {m.target: _tmpfs_options(m) for m in tmpfs},
    }  # fmt: skip
    return {key: value for key, value in knobs.items() if value not in (None, [], {})}


def endpoint(attachment: manifests.NetworkAttachment) -> dict[str, Any]:
    """An ``EndpointsConfig`` entry: the aliases and fixed address of one network attachment."""
    result: dict[str, Any] = {}
    if attachment.aliases:
        result["Aliases"] = list(attachment.aliases)
    if attachment.ipv4_address:
        result["IPAMConfig"] = {"IPv4Address": attachment.ipv4_address}
    return result


def _host_config(spec: manifests.ContainerSpec) -> dict[str, Any]:
    """``HostConfig`` without the ports and the network (see :func:`container_config`)."""
    host: dict[str, Any] = {
        "RestartPolicy": restart_policy(spec.restart),
        # A tmpfs with mount flags goes into ``Tmpfs`` (see :func:`_knobs`): ``Mounts`` cannot carry them.
        "Mounts": [mount(m) for m in spec.mounts if not (isinstance(m, manifests.TmpfsMount) and m.options)],
        "ReadonlyRootfs": spec.read_only_rootfs,
        "Privileged": spec.privileged,
        **resources_config(spec.resources),
        **_knobs(spec),
    }
    if spec.cap_add:
        host["CapAdd"] = list(spec.cap_add)
    if spec.cap_drop:
        host["CapDrop"] = list(spec.cap_drop)
    if spec.volumes_from:
        host["VolumesFrom"] = list(spec.volumes_from)
    # Docker's own resolver settings; host-gateway in ExtraHosts is Docker's too (its bridge's gateway).
    resolver = {"Dns": spec.dns, "DnsSearch": spec.dns_search, "DnsOptions": spec.dns_options,
                "ExtraHosts": spec.extra_hosts}  # fmt: skip
    host.update({key: list(value) for key, value in resolver.items() if value})
    if spec.logging.max_size:
        # The json-file driver named explicitly: its options mean nothing to another default driver.
        host["LogConfig"] = {
            "Type": "json-file",
            "Config": {"max-size": str(spec.logging.max_size), "max-file": str(spec.logging.max_files)},
        }
    return host


def _process_config(request: plans.ContainerRequest) -> dict[str, Any]:
    """The top-level ``Config`` fields: what runs, as whom, with which environment and labels."""
    spec = request.spec
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in sorted(request.env.items())],
        "Labels": dict(request.labels),
        "StopSignal": spec.stop_signal,
        # Docker counts whole seconds; rounding up never cuts a graceful stop short.
        "StopTimeout": math.ceil(spec.stop_timeout),
    }
    optional = {"Entrypoint": spec.entrypoint, "Cmd": spec.command}
    config.update({key: list(value) for key, value in optional.items() if value is not None})
    hostname, domainname = spec.uts_names
    named = {"WorkingDir": spec.working_dir, "User": spec.user, "Hostname": hostname, "Domainname": domainname}
    config.update({key: value for key, value in named.items() if value is not None})
    if spec.healthcheck is not None:
        config["Healthcheck"] = healthcheck(spec.healthcheck)
    return config


def healthcheck(check: manifests.Healthcheck) -> dict[str, Any]:
    """A health check as the Engine API's ``HealthConfig`` (a container's, a Swarm task's: one shape)."""
    return {
        "Test": list(check.test),
        "Interval": _nanoseconds(check.interval),
        "Timeout": _nanoseconds(check.timeout),
        "Retries": check.retries,
        "StartPeriod": _nanoseconds(check.start_period),
    }


def _port_config(spec: manifests.ContainerSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """``ExposedPorts`` (Config) and ``PortBindings`` (HostConfig) for the published ports."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in spec.ports:
        key = f"{port.container_port}/{port.protocol}"
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": port.host_ip or "", "HostPort": str(port.host_port) if port.host_port else ""}
        )
    return exposed, bindings


def container_config(request: plans.ContainerRequest, *, default_network: str | None = None) -> dict[str, Any]:
    """The Engine API body of ``POST /containers/create`` for a request (first network only).

    Engine API 1.41 (Debian's dockerd 20.10) accepts a single network at creation; the engine
    connects the others before the container is started. ``default_network``: the stack's own
    network for a bridge-mode container that names none, joined with its name as an alias.
    """
    spec = request.spec
    host = _host_config(spec)
    config = _process_config(request)
    if spec.ports:
        config["ExposedPorts"], host["PortBindings"] = _port_config(spec)
    if spec.networks:
        first = spec.networks[0]
        host["NetworkMode"] = first.name
        config["NetworkingConfig"] = {"EndpointsConfig": {first.name: endpoint(first)}}
    elif default_network is not None and spec.network_mode == "bridge":
        host["NetworkMode"] = default_network
        service = request.labels.get(vocabulary.SERVICE_LABEL)  # a replica answers its service's name
        aliases = [request.name, *([service] if service else [])]
        config["NetworkingConfig"] = {"EndpointsConfig": {default_network: {"Aliases": aliases}}}
    else:
        host["NetworkMode"] = spec.network_mode
    config["HostConfig"] = host
    return config


def network_ipam(spec: manifests.NetworkSpec) -> dict[str, Any] | None:
    """The IPAM config of a network with a fixed subnet (and gateway), or None for Docker's choice."""
    if spec.subnet is None:
        return None
    pool: dict[str, str] = {"Subnet": spec.subnet}
    if spec.gateway is not None:
        pool["Gateway"] = spec.gateway
    return {"Driver": "default", "Config": [pool], "Options": {}}
