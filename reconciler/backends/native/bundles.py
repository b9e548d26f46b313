"""OCI bundles: the ``config.json`` an OCI runtime (runc, crun) needs to run one container.

The filesystem layer (``snapshots``/``mounts``) produces the container's rootfs; this module turns
a :class:`plans.ContainerRequest` plus the image's config into the runtime spec, with Docker's
defaults where the manifest is silent (what dockerd 20.10 writes into its own containers'
``config.json``):

* **process**: argv and env merged as moby's ``merge()`` does (a manifest ``entrypoint`` drops the
  image's CMD; env: ``PATH`` and ``HOSTNAME`` first, then the image's, then the manifest's, later
  keys replacing earlier ones); the user resolved against the rootfs's own ``/etc/passwd`` and
  ``/etc/group`` *inside* the rootfs (a symlinked ``/etc/passwd`` cannot point at the host's);
* **security**: Docker's 14 default capabilities, adjusted by ``capAdd``/``capDrop``; Docker's
  default seccomp filter built for that capability set (:mod:`seccomp`: namespaces and mounts
  need ``CAP_SYS_ADMIN``); masked and read-only ``/proc`` paths; a device allow-list; no
  privileged mode unless the manifest says so;
* **resources**: memory (swap capped at the same value), CPU quota over a 100 ms period, pids;
* **mounts**: ``/proc``, a fresh tmpfs ``/dev``, ``/dev/pts``, ``/dev/shm``, ``/dev/mqueue``,
  ``/sys`` read-only, then the manifest's binds, volumes and tmpfs mounts, parents before children;
  a read-only bind is read-only in its submounts too (better than Docker before Linux 5.12).

Pure apart from reading ``/etc/passwd`` and ``/etc/group`` in the rootfs, the host's mount table
(read-only binds on kernels before 5.12) and writing the bundle file. It must not run the runtime,
touch cgroups or networks: that is the runtime step's job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import errors, files, manifests, plans
from reconciler.backends.native import images, layers, mounts, seccomp

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHM_SIZE = 64 * 1024 * 1024
# The CPU limit is a quota of microseconds per period of 100 ms, as Docker's --cpus sets it.
CPU_PERIOD = 100_000

# Docker's default bounding/effective/permitted set (moby daemon/pkg/oci/caps/defaults.go).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip
ALL_CAPABILITIES = (
    *DEFAULT_CAPABILITIES,
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE",
    "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (type, major, minor) the container may use; everything else is denied, and /dev/net/tun
# (10:229) explicitly so, as Docker does.
ALLOWED_DEVICES = (("c", 1, 3), ("c", 1, 5), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1))

_MAX_LINKS = 40

# The first Linux with mount_setattr(2), which runc's recursive "rro" bind option needs.
RECURSIVE_READ_ONLY_SINCE = (5, 12)


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


@dataclasses.dataclass(frozen=True, slots=True)
class Environment:
    """Host-side facts the runtime spec needs but the request does not carry."""

    container_id: str
    rootfs: str
    # Named volume name → host directory holding its data.
    volume_paths: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Extra binds the engine provides (e.g. /etc/hosts, /etc/resolv.conf), destination → source.
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Secrets and configs, destination → their file on the container's tmpfs (:mod:`secret_files`).
    secret_files: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # ``ipc: shareable``: the host tmpfs that is its /dev/shm (:mod:`shared_memory`); None: its own.
    shm_path: str | None = None
    # A network namespace to join (``/run/netns/<name>``); None: a fresh, unconfigured one.
    netns_path: str | None = None
    cgroups_parent: str = "/reconciler"


# ---------------------------------------------------------------------------------------------
# Process: argv, env, user
# ---------------------------------------------------------------------------------------------


def process_args(spec: manifests.ContainerSpec, image: images.ImageConfig) -> list[str]:
    """moby's rule: a manifest entrypoint drops the image's CMD; argv = entrypoint + cmd."""
    if spec.entrypoint is not None:
        argv = list(spec.entrypoint) + list(spec.command or [])
    else:
        command = spec.command if spec.command is not None else list(image.cmd or [])
        argv = list(image.entrypoint or []) + list(command)
    if not argv:
        raise errors.RuntimeFailed("no command specified: the image has no CMD and the manifest sets none")
    return argv


def process_env(env: Mapping[str, str], image: images.ImageConfig, *, hostname: str) -> list[str]:
    """``PATH`` and ``HOSTNAME`` first, then the image's variables, then the manifest's (which win)."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    for item in image.env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(env)
    return [f"{key}={value}" for key, value in merged.items()]


def _open_in_root(rootfs: Path, path: str) -> Path | None:
    """``path`` resolved inside ``rootfs`` (symlinks re-rooted), or None when it does not exist."""
    for _ in range(_MAX_LINKS):
        parent_text, _, name = layers.normalise(path).rpartition("/")
        try:
            parent = layers.resolve_in_root(rootfs, parent_text)
        except errors.EngineError:
            return None
        candidate = parent / name
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            return None
        if not stat.S_ISLNK(info.st_mode):
            return candidate if stat.S_ISREG(info.st_mode) else None
        target = os.readlink(candidate)
        path = target if target.startswith("/") else f"{parent_text}/{target}"
    return None


def _table(rootfs: Path, path: str) -> list[list[str]]:
    found = _open_in_root(rootfs, path)
    if found is None:
        return []
    rows = []
    for line in found.read_text(encoding="utf-8", errors="replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(user: str, rootfs: Path) -> User:
    """``user[:group]`` (names or numbers) against the rootfs's passwd and group files.

    A numeric uid absent from passwd is allowed (gid then defaults to the uid's passwd entry or 0);
    a name that is not found is an error, as in Docker ("unable to find user").
    """
    name, _, group = (user or "0").partition(":")
    passwd = [row for row in _table(rootfs, "/etc/passwd") if len(row) >= 7]
    groups = [row for row in _table(rootfs, "/etc/group") if len(row) >= 3]
    entry = next((row for row in passwd if row[0] == name or (name.isdigit() and row[2] == name)), None)
    if entry is None and not name.isdigit():
        raise errors.RuntimeFailed(f"unable to find user {name}: no matching entries in passwd file")
    uid = int(name) if name.isdigit() else int(entry[2])  # type: ignore[index]
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    home = entry[5] if entry is not None else "/"
    if group:
        match = next((row for row in groups if row[0] == group or (group.isdigit() and row[2] == group)), None)
        if match is None and not group.isdigit():
            raise errors.RuntimeFailed(f"unable to find group {group}: no matching entries in group file")
        gid = int(group) if group.isdigit() else int(match[2])  # type: ignore[index]
    user_name = entry[0] if entry is not None else None
    supplementary = {
        int(row[2])
        for row in groups
        if user_name and row[2].isdigit() and len(row) > 3 and user_name in row[3].split(",")
    }
    return User(uid=uid, gid=gid, additional_gids=tuple(sorted(supplementary | {gid})), home=home or "/")


# ---------------------------------------------------------------------------------------------
# Capabilities, mounts, resources
# ---------------------------------------------------------------------------------------------


def capabilities(spec: manifests.ContainerSpec) -> list[str]:
    if spec.privileged:
        return list(ALL_CAPABILITIES)
    caps = list(ALL_CAPABILITIES) if "ALL" in spec.cap_add else list(DEFAULT_CAPABILITIES)
    caps += [cap for cap in spec.cap_add if cap != "ALL" and cap not in caps]
    if "ALL" in spec.cap_drop:
        caps = [cap for cap in caps if cap in spec.cap_add]
    return [cap for cap in caps if cap not in spec.cap_drop]


def _default_mounts(*, read_only_sys: bool) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro" if read_only_sys else "rw"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",  # noqa: S108 (the container's own /dev/shm)
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={SHM_SIZE}"]},
    ]  # fmt: skip


def _bind(destination: str, source: str, *, read_only: bool, recursive: bool) -> dict[str, Any]:
    # "ro" alone makes only the top of an rbind read-only: its submounts stay writable. "rro"
    # (mount_setattr with AT_RECURSIVE) covers them all.
    options = ["rbind", "rprivate"] + (["ro"] if read_only else []) + (["rro"] if read_only and recursive else [])
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def _read_only_binds(destination: str, source: str, *, kernel: str | None) -> list[dict[str, Any]]:
    """A read-only bind of ``source``, read-only all the way down (Docker: only from Linux 5.12).

    Without ``mount_setattr`` (before Linux 5.12) each mount under ``source`` gets a read-only
    bind of its own over the same path, deeper ones after their parents (sorted by the caller)."""
    release = seccomp.kernel_version(kernel or os.uname().release)
    if release >= RECURSIVE_READ_ONLY_SINCE:
        return [_bind(destination, source, read_only=True, recursive=True)]
    root = os.path.realpath(source)
    found = [_bind(destination, source, read_only=True, recursive=False)]
    for point in sorted(mounts.mount_points()):
        relative = os.path.relpath(point, root)
        if point != root and not relative.startswith(".."):
            found.append(_bind(f"{destination.rstrip('/')}/{relative}", point, read_only=True, recursive=False))
    return found


def _bind_mounts(destination: str, source: str, *, read_only: bool, kernel: str | None) -> list[dict[str, Any]]:
    if read_only:
        return _read_only_binds(destination, source, kernel=kernel)
    return [_bind(destination, source, read_only=False, recursive=False)]


def user_mounts(
    spec: manifests.ContainerSpec, environment: Environment, *, kernel: str | None = None
) -> list[dict[str, Any]]:
    """The manifest's mounts plus the engine's files, sorted parents first (Docker's sortMounts).

    ``kernel``: the host's release (``uname -r`` when None); it decides how binds are made
    read-only all the way down."""
    found: list[dict[str, Any]] = []
    for mount in spec.mounts:
        if isinstance(mount, manifests.BindMount):
            found += _bind_mounts(mount.target, mount.source, read_only=mount.read_only, kernel=kernel)
        elif isinstance(mount, manifests.VolumeMount):
            source = environment.volume_paths.get(mount.source)
            if source is None:
                raise errors.NotFound(f"volume {mount.source} not found")
            found += _bind_mounts(mount.target, source, read_only=mount.read_only, kernel=kernel)
        else:
            options = tmpfs_flags(mount.options)
            if mount.size is not None:
                options.append(f"size={mount.size}")
            if mount.mode is not None:
                options.append(f"mode={mount.mode:o}")
            found.append({"destination": mount.target, "type": "tmpfs", "source": "tmpfs", "options": options})
    targets = {m["destination"] for m in found}
    for destination, source in sorted(environment.files.items()):
        if destination not in targets:  # the user's own mount of that path wins
            found.append(_bind(destination, source, read_only=False, recursive=False))
    for destination, source in sorted(environment.secret_files.items()):  # the models keep their paths apart
        found.append({"destination": destination, "type": "bind", "source": source,
                      "options": ["bind", "rprivate", "ro", "nosuid", "nodev"]})  # fmt: skip
    return sorted(found, key=lambda m: len(Path(m["destination"]).parts))


def resources(limits: manifests.Resources, *, privileged: bool) -> dict[str, Any]:
    devices: list[dict[str, Any]] = [{"allow": privileged, "access": "rwm"}]
    if not privileged:
        devices += [
            {"allow": True, "type": t, "major": ma, "minor": mi, "access": "rwm"} for t, ma, mi in ALLOWED_DEVICES
        ]
        devices.append({"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    result: dict[str, Any] = {"devices": devices}
    if limits.memory:
        # Swap capped at the memory limit (Docker's default when only --memory is given is 2x;
        # we prefer a limit that means what it says).
        result["memory"] = {"limit": limits.memory, "swap": limits.memory}
    if limits.cpus:
        result["cpu"] = {"quota": int(limits.cpus * CPU_PERIOD), "period": CPU_PERIOD}
    if limits.pids:
        result["pids"] = {"limit": limits.pids}
    return result


# ---------------------------------------------------------------------------------------------
# The knobs real images need: ulimits, /dev/shm, sysctls, init, devices, security options, ...
# ---------------------------------------------------------------------------------------------

# Debian's tini package. The static build first: the other needs the C library of the image.
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/tini")
# Where Docker mounts its init (``docker run --init``), so that images and tools find it there too.
INIT_PATH = "/sbin/docker-init"
APPARMOR = Path("/sys/module/apparmor/parameters/enabled")
# RLIM_INFINITY, what a ulimit of -1 means.
UNLIMITED = 2**64 - 1


def tmpfs_flags(written: Sequence[str]) -> list[str]:
    """noexec, nosuid and nodev (Docker's defaults for a tmpfs), each lifted by its opposite written."""
    return [
        flag.removeprefix("no") if flag.removeprefix("no") in written else flag
        for flag in ("noexec", "nosuid", "nodev")
    ]


def init_binary() -> str:
    """The tini that runs as the container's pid 1 with ``init: true``."""
    for candidate in INIT_BINARIES:
        if os.path.isfile(candidate):
            return candidate
    raise errors.RuntimeFailed(
        f"init: true needs tini ({' or '.join(INIT_BINARIES)}): install Debian's tini package (apt-get install tini)"
    )


def _group_ids(names: Sequence[str], rootfs: Path) -> set[int]:
    """``groupAdd``: numbers as they are, names from the rootfs's own ``/etc/group`` (as Docker)."""
    groups = [row for row in _table(rootfs, "/etc/group") if len(row) >= 3 and row[2].isdigit()]
    found = set()
    for name in names:
        match = name if name.isdigit() else next((row[2] for row in groups if row[0] == name), None)
        if match is None:
            raise errors.RuntimeFailed(f"unable to find group {name}: no matching entries in group file")
        found.add(int(match))
    return found


def devices(spec: manifests.ContainerSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``linux.devices`` (the nodes the runtime makes in the container's ``/dev``, as the host's)
    and the cgroup rules that let the container use them and its ``deviceCgroupRules``."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for device in spec.devices:
        try:
            info = os.stat(device.source)
        except OSError as exc:
            raise errors.RuntimeFailed(f"device {device.source}: {exc.strerror}") from None
        if not (stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)):
            raise errors.RuntimeFailed(f"device {device.source} is not a character or block device")
        kind = "c" if stat.S_ISCHR(info.st_mode) else "b"
        numbers = {"major": os.major(info.st_rdev), "minor": os.minor(info.st_rdev)}
        nodes.append({"path": device.target or device.source, "type": kind, **numbers,
                      "fileMode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid})  # fmt: skip
        rules.append({"allow": True, "type": kind, **numbers, "access": device.permissions})
    for rule in spec.device_cgroup_rules:
        kind, pair, access = rule.split(" ")
        major, minor = pair.split(":")
        wildcards = {"major": major, "minor": minor}  # "*": the key left out is the runtime's "any"
        rules.append({"allow": True, "type": kind, **{k: int(v) for k, v in wildcards.items() if v != "*"},
                      "access": access})  # fmt: skip
    return nodes, rules


def apparmor_enabled() -> bool:
    """Whether the host's kernel enforces AppArmor; without it a profile is ignored, as by Docker."""
    try:
        return APPARMOR.read_text().strip() == "Y"
    except OSError:
        return False


def _security(config: dict[str, Any], spec: manifests.ContainerSpec) -> None:
    """``securityOpt``: no-new-privileges, the seccomp filter (none, or a profile file's) and the
    AppArmor profile."""
    process, linux = config["process"], config["linux"]
    for option in spec.security_opt:
        if option.startswith("no-new-privileges:"):
            process["noNewPrivileges"] = option.endswith(":true")
            continue
        key, _, value = option.partition("=")
        if key == "apparmor" and value != "unconfined" and apparmor_enabled():
            process["apparmorProfile"] = value
        elif key == "seccomp" and value == "unconfined":
            linux.pop("seccomp", None)
        elif key == "seccomp" and "seccomp" in linux:  # a privileged container has no filter at all
            try:
                document = json.loads(Path(value).read_text(encoding="utf-8"))
                linux["seccomp"] = seccomp.from_document(document, process["capabilities"]["bounding"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise errors.RuntimeFailed(f"seccomp profile {value}: not a readable profile ({exc})") from None


def _shm_from(config: dict[str, Any], source: str) -> None:
    """``/dev/shm`` bound from ``source`` on the host (the host's own, or a shareable container's)."""
    for mount in config["mounts"]:
        if mount["destination"] == "/dev/shm":  # noqa: S108 (the container's own)
            mount.update(type="bind", source=source, options=["rbind", "rprivate", "nosuid", "nodev", "noexec"])


def _namespaces(config: dict[str, Any], spec: manifests.ContainerSpec, environment: Environment) -> None:
    """``ipc``/``pid: host``: the host's namespace (no entry) and, for IPC, the host's ``/dev/shm``;
    ``ipc: shareable``: ``/dev/shm`` from the host tmpfs its peers bind too; a peer's namespaces
    (``container:NAME``) are joined at each start (:func:`with_peer_namespaces`)."""
    host = {kind for kind, mode in (("ipc", spec.ipc), ("pid", spec.pid)) if mode == "host"}
    linux = config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in host]
    if "ipc" in host or environment.shm_path:
        _shm_from(config, "/dev/shm" if "ipc" in host else str(environment.shm_path))  # noqa: S108 (Docker's)
        return
    for mount in config["mounts"]:
        if mount["destination"] == "/dev/shm" and spec.shm_size:  # noqa: S108 (the container's own)
            mount["options"] = [o for o in mount["options"] if not o.startswith("size=")] + [f"size={spec.shm_size}"]


def shared_namespaces(spec: manifests.ContainerSpec) -> dict[str, str]:
    """The namespaces the container joins from another: kind (``ipc``, ``pid``) → that container's name."""
    modes = {"ipc": spec.ipc or "", "pid": spec.pid or ""}
    return {kind: mode.removeprefix("container:") for kind, mode in modes.items() if mode.startswith("container:")}


def with_peer_namespaces(config: dict[str, Any], paths: Mapping[str, str], *, shm: str | None) -> dict[str, Any]:
    """``config`` joining the namespaces at ``paths`` (kind → ``/proc/<pid>/ns/<kind>``) and, with
    the IPC namespace, binding the peer's ``/dev/shm`` from ``shm`` (as Docker does)."""
    for namespace in config["linux"]["namespaces"]:
        if namespace["type"] in paths:
            namespace["path"] = paths[namespace["type"]]
    if shm is not None:
        _shm_from(config, shm)
    return config


def _cpu_and_memory(resources: dict[str, Any], spec: manifests.ContainerSpec) -> None:
    cpu = {"cpus": spec.cpuset, "shares": spec.cpu_shares}
    memory = {"reservation": spec.memory_reservation}
    for key, values in (("cpu", cpu), ("memory", memory)):
        given = {name: value for name, value in values.items() if value is not None}
        if given:
            resources[key] = resources.get(key, {}) | given


def with_knobs(config: dict[str, Any], spec: manifests.ContainerSpec, environment: Environment) -> dict[str, Any]:
    """``config`` with the manifest's knobs applied (what runs, limits, devices, security, namespaces)."""
    process, linux = config["process"], config["linux"]
    if spec.ulimits:
        process["rlimits"] = [
            {"type": f"RLIMIT_{name.upper()}", "soft": UNLIMITED if limit.soft == -1 else limit.soft,
             "hard": UNLIMITED if limit.hard == -1 else limit.hard}
            for name, limit in spec.ulimits.items()
        ]  # fmt: skip
    if spec.oom_score_adj is not None:
        process["oomScoreAdj"] = spec.oom_score_adj
    if spec.group_add:
        user = process["user"]
        user["additionalGids"] = sorted(
            set(user["additionalGids"]) | _group_ids(spec.group_add, Path(environment.rootfs))
        )
    if spec.init:
        process["args"] = [INIT_PATH, "--", *process["args"]]
        config["mounts"].append(_bind(INIT_PATH, init_binary(), read_only=True, recursive=False))
    if spec.sysctls:
        linux["sysctl"] = {**linux.get("sysctl", {}), **spec.sysctls}
    nodes, rules = devices(spec)
    if nodes:
        linux["devices"] = nodes
    linux["resources"]["devices"] = linux["resources"].get("devices", []) + rules  # after the denials: they win
    _cpu_and_memory(linux["resources"], spec)
    _security(config, spec)
    _namespaces(config, spec, environment)
    return config


# ---------------------------------------------------------------------------------------------
# The whole spec
# ---------------------------------------------------------------------------------------------


def build_config(
    request: plans.ContainerRequest, image: images.ImageConfig, environment: Environment
) -> dict[str, Any]:
    """The OCI runtime spec (``config.json``) for ``request`` on the given rootfs."""
    spec = request.spec
    hostname, domainname = spec.uts_names
    hostname = hostname or environment.container_id[:12]
    user = resolve_user(spec.user or image.user, Path(environment.rootfs))
    caps = capabilities(spec)
    host_network = spec.network_mode == "host"
    namespaces: list[dict[str, str]] = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if not host_network:
        namespace = {"type": "network"}
        if environment.netns_path:
            namespace["path"] = environment.netns_path
        namespaces.append(namespace)
    env = process_env(request.env, image, hostname=hostname)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={user.home}")
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources(spec.resources, privileged=spec.privileged),
        "cgroupsPath": f"{environment.cgroups_parent}/{environment.container_id}",
    }
    if not spec.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        linux["seccomp"] = seccomp.profile(caps)
    if not host_network:
        linux["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}
        if domainname:
            # The UTS namespace's domain name: runc 1.1 has no OCI field for it; Docker sets this sysctl too.
            linux["sysctl"]["kernel.domainname"] = domainname
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
            "args": process_args(spec, image),
            "env": env,
            "cwd": spec.working_dir or image.working_dir or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "oomScoreAdj": 0,
        },
        "root": {"path": environment.rootfs, "readonly": spec.read_only_rootfs},
        "hostname": hostname,
        "mounts": _default_mounts(read_only_sys=not spec.privileged) + user_mounts(spec, environment),
        "linux": linux,
    }
    if host_network:
        del config["hostname"]  # the host's UTS name stays visible, as with docker --network host
        namespaces[:] = [n for n in namespaces if n["type"] != "uts"]
    return with_knobs(config, spec, environment)


def exec_process(
    container_process: Mapping[str, Any], argv: Sequence[str], *, terminal: bool = False
) -> dict[str, Any]:
    """The OCI process of an exec into a running container, as containerd and Docker build it: the
    container's own (env, cwd, user and groups, capabilities, rlimits, no-new-privileges, AppArmor
    profile) running ``argv``, on a terminal when asked (then with ``TERM=xterm``, as Docker's -t)."""
    process = {**container_process, "args": list(argv), "terminal": terminal}
    if terminal:
        env = [item for item in process.get("env", []) if not str(item).startswith("TERM=")]
        process["env"] = [*env, "TERM=xterm"]
    return process


def with_resources(config: dict[str, Any], limits: manifests.Resources) -> dict[str, Any]:
    """``config`` (a written runtime spec) with new memory, CPU and pids limits; devices kept."""
    current = config.setdefault("linux", {}).setdefault("resources", {})
    # cpuset, CPU shares and the memory reservation are the manifest's knobs, not these limits.
    knobs = {key: {k: v for k, v in current.get(key, {}).items() if k in ("cpus", "shares", "reservation")}
             for key in ("memory", "cpu")}  # fmt: skip
    for key in ("memory", "cpu", "pids"):
        current.pop(key, None)
    current.update(resources(limits, privileged=False) | {"devices": current.get("devices", [])})
    for key, values in knobs.items():
        if values:
            current[key] = current.get(key, {}) | values
    return config


def live_resources(limits: manifests.Resources) -> dict[str, Any]:
    """The ``linux.resources`` document that changes a running container's limits in place.

    Every limit is given: an absent key would leave the old value in force, and -1 lifts a limit
    (the runtime's "unlimited")."""
    return {
        "memory": {"limit": limits.memory or -1, "swap": limits.memory or -1},
        "cpu": {"quota": int(limits.cpus * CPU_PERIOD) if limits.cpus else -1, "period": CPU_PERIOD},
        "pids": {"limit": limits.pids or -1},
    }


def write(bundle: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config.json`` into ``bundle`` atomically and durably, readable by root only."""
    target = bundle / "config.json"
    files.write_json(target, config, indent=1)
    return target


def stop_signal(spec: manifests.ContainerSpec, image: images.ImageConfig) -> str:
    """The manifest's stop signal, else the image's STOPSIGNAL, else SIGTERM (Docker's order)."""
    if spec.stop_signal:
        return spec.stop_signal
    if image.stop_signal:
        try:
            return manifests.parse_signal(image.stop_signal)
        except ValueError:
            pass  # an image with a nonsense STOPSIGNAL still stops, with the default
    return "SIGTERM"
