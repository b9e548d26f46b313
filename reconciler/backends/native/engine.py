"""The native engine (the embedded default): no daemon, the project's own container-creation path.

A container's life on this engine, under ``<root>`` (``--root``, default ``/var/lib/reconciler``):

* **create**: the image comes from :mod:`images` (pulled, verified, unpacked into overlay
  snapshots); a fresh 64-hex id; ``containers/<id>/`` gets the overlay rootfs (image layers
  read-only, a per-container upper dir), ``hostname``/``hosts``/``resolv.conf`` files, and the OCI
  ``config.json`` from :mod:`bundles`; ``container.json`` records the request (labels included).
* **start**: a :mod:`supervisor` process is spawned detached; it runs ``runc create`` with the
  container's stdio, reports the init pid, and this engine then runs ``runc start``. The
  supervisor writes the logs (json-file) and, when the init exits, ``exit.json``.
* **observe / events**: state comes from the files and from the supervisor's liveness (pid and
  start time, so a reused pid is not mistaken for it); ``events`` waits on the supervisors'
  pidfds, so a ``die`` event arrives as soon as the process exits, not at a poll tick.
* **stop / remove**: the stop signal, the timeout, then SIGKILL to every process; remove deletes
  the runtime state, unmounts the rootfs and removes the directory (named volumes stay).
* **volumes**: the ``local`` driver, ``volumes/<name>/_data``, labels in ``volume.json``.

* **networks**: bridges, veths, addresses and namespaces in :mod:`networks`, forwarding and
  published ports in :mod:`firewall`, names in :mod:`dns` (a server per network that never
  forwards); a bridge-mode container that names no network joins the implicit ``default`` one,
  as Docker's join its default bridge.

Restart policies and health checks are the controller's job (``reconcile watch``). The engine
only makes its restarts quick: when it reports the ``die`` of a container whose restart policy will
start it again, it **prepares the next run** in the background during the controller's backoff
(the previous run's runtime state deleted, a new supervisor with ``runtime create`` done, the
init waiting for ``runtime start``; see :mod:`supervisor`), and ``start_container`` then only runs
``runtime start``. Nothing of the container's runs before that start; a prepared run nobody starts
within ``PREPARED_TTL`` removes itself, and a stop, an update or a remove discards it first.

Like every backend, this module must not import the planner, the controller or the CLI. State
files are root-only (0600 files in 0700 directories).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import posixpath
import secrets
import select
import shutil
import signal as signals
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import engine, errors, manifests, observed, plans
from reconciler.backends.native import bundles, firewall, images, layers, mounts, networks, runtime

SUPERVISOR_START_TIMEOUT = 30.0
# A prepared next run (see `_prepare`) that nobody starts within this many seconds goes away; the
# backoffs it serves are the first ones (100 ms, 200 ms, ... Docker's), long ones need no help.
PREPARED_TTL = 3.0
KILL_GRACE = 5.0
# Containers in bridge mode that name no network join this one, as Docker's join its default
# bridge. It carries no owner labels, so the planner never sees or prunes it.
DEFAULT_NETWORK = "default"


def _write_json(path: Path, value: Mapping[str, Any], *, durable: bool = True) -> None:
    """Atomically (a temporary file renamed over it), root-only; ``durable`` fsyncs it first."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle, sort_keys=True)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)


def _image_volumes(
    request: plans.ContainerRequest,
    image: images.Image,
    directory: Path,
    rootfs: Path,
    volume_paths: Mapping[str, str],
) -> plans.ContainerRequest:
    """What Docker does with volumes at create: an empty named volume mounted over a directory of
    the image gets that directory's content (copy-up); each path of the image's ``Volumes`` that
    no mount covers gets an anonymous volume (under the container's directory: it goes with the
    container, as ``docker rm -v``), filled the same way. Anonymous volumes enter the request as
    bind mounts of that directory, so ``volumesFrom`` of this container shares them too."""
    spec = request.spec
    for mount in spec.mounts:
        if isinstance(mount, manifests.VolumeMount):
            _copy_up(rootfs, mount.target, Path(volume_paths[mount.source]))
    taken = {mount.target for mount in spec.mounts}
    anonymous: list[manifests.BindMount] = []
    for declared in image.config.volumes:
        target = posixpath.normpath("/" + declared.lstrip("/"))
        if target == "/" or target in taken:
            continue
        taken.add(target)
        data = directory / "volumes" / hashlib.sha256(target.encode()).hexdigest()[:16]
        data.mkdir(mode=0o755, parents=True)
        _copy_up(rootfs, target, data)
        anonymous.append(manifests.BindMount.model_validate({"type": "bind", "source": str(data), "target": target}))
    if not anonymous:
        return request
    return dataclasses.replace(request, spec=spec.model_copy(update={"mounts": [*spec.mounts, *anonymous]}))


def _copy_up(rootfs: Path, target: str, volume: Path) -> None:
    """Copy the image's directory at ``target`` into ``volume`` if the volume is empty (Docker's
    copy-up): contents, modes, owners, times and xattrs; symlinks copied as links, never followed;
    device nodes, FIFOs and sockets skipped (reading one could block or never end)."""
    if any(volume.iterdir()):
        return
    try:
        # Resolved inside the rootfs: an image's symlink on the way cannot lead out of it.
        source = layers.resolve_in_root(rootfs, target.lstrip("/"))
    except layers.LayerError:
        return  # nothing at that path in the image
    if not source.is_dir() or source.is_symlink():
        return

    def special(folder: str, names: list[str]) -> set[str]:
        kinds = (stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK)
        return {n for n in names if not any(k(os.lstat(os.path.join(folder, n)).st_mode) for k in kinds)}

    shutil.copytree(source, volume, symlinks=True, ignore=special, dirs_exist_ok=True)
    # shutil keeps modes and times but not owners: a second walk (links not followed) sets them.
    top = os.lstat(source)
    os.chown(volume, top.st_uid, top.st_gid)
    os.chmod(volume, stat.S_IMODE(top.st_mode))
    for folder, folders, files in os.walk(source):
        relative = os.path.relpath(folder, source)
        for name in [*folders, *files]:
            copied = volume / relative / name
            if os.path.lexists(copied):
                info = os.lstat(os.path.join(folder, name))
                os.lchown(copied, info.st_uid, info.st_gid)
                if not stat.S_ISLNK(info.st_mode):  # chown clears set-id bits: the mode again
                    os.chmod(copied, stat.S_IMODE(info.st_mode))


def _rotated_since(path: Path, inode: int, position: int) -> bytes:
    """What a follower of ``path`` missed while the log rotated under it: the rest of the file it
    was reading (now ``container.log.N``, found by its inode), then the newer rotated files whole.
    Files rotated out of ``maxFiles`` meanwhile are gone, as with Docker's json-file driver; when
    the one being read is among them, every rotated file left is read whole."""
    rotated: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        with contextlib.suppress(FileNotFoundError):
            if candidate.suffix[1:].isdigit():
                rotated.append((candidate.stat().st_ino, candidate))
    rotated.sort(key=lambda item: -int(item[1].suffix[1:]))  # oldest first
    inodes = [number for number, _ in rotated]
    start = inodes.index(inode) if inode in inodes else 0
    missed: list[bytes] = []
    for number, older in rotated[start:]:
        with contextlib.suppress(FileNotFoundError), older.open("rb") as handle:
            if number == inode:
                handle.seek(position)  # what came before was read already
            missed.append(handle.read())
    return b"".join(missed)


def _rotation(spec: Mapping[str, Any]) -> dict[str, int | None]:
    """The json-file rotation the supervisor applies, from the stored spec's ``logging``."""
    logging = spec.get("logging") or {}
    max_size = logging.get("maxSize")
    return {"max_size": int(max_size) if max_size else None, "max_files": int(logging.get("maxFiles") or 1)}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: with the pid, it identifies a process across pid reuse."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after its closing ")".
    fields = text[text.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _signal_number(name: str) -> int:
    return int(getattr(signals, name, signals.SIGTERM))


def _helper_environment() -> dict[str, str]:
    """The environment of the supervisor and DNS processes, started with ``python -S``.

    -S skips the site-packages scan at start (tens of ms per container), so .pth files are not
    read either: an editable install's import hook would be missing. The folder holding this
    package therefore goes first on PYTHONPATH, then everything this process can import from.
    """
    package_parent = str(Path(__file__).resolve().parents[3])
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([package_parent, *sys.path])}


def _dns_server_alive(directory: Path) -> bool:
    try:
        pid = int((directory / "dns.pid").read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    # The pid file could be stale and the pid reused: check it is our server for this network.
    return b"reconciler.backends.native.dns" in command and str(directory).encode() in command


def _stop_dns_server(directory: Path) -> None:
    if _dns_server_alive(directory):
        pid = int((directory / "dns.pid").read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signals.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and _dns_server_alive(directory):
            time.sleep(0.02)


def _new_container_id() -> str:
    # As Docker: 32 random bytes, never an all-digit short id (it is the default hostname).
    while True:
        container_id = secrets.token_hex(32)
        if not container_id[:12].isdigit():
            return container_id


@dataclasses.dataclass(slots=True)
class _Record:
    """``container.json``: what was asked for, and the engine's bookkeeping."""

    container_id: str
    directory: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.data.get("labels", {}))

    @property
    def spec(self) -> manifests.ContainerSpec:
        return manifests.ContainerSpec.model_validate(self.data["spec"])

    def save(self) -> None:
        _write_json(self.directory / "container.json", self.data)


class NativeEngine:
    """The embedded engine over a state directory (``--root``, default ``/var/lib/reconciler``)."""

    name = "native"

    def __init__(
        self, root: Path, *, runtime_binary: str = runtime.DEFAULT_RUNTIME, prepare_restarts: bool = False
    ) -> None:
        self.root = root
        self.runtime_binary = runtime_binary
        # Only the controller restarts containers, so only its engine prepares next runs: a CLI
        # reading events (``reconcile events``) must not start runtime work as a side effect.
        self.prepare_restarts = prepare_restarts
        self._images: images.ImageStore | None = None
        self._runtime: runtime.Runtime | None = None
        self._lock = threading.RLock()
        self.networks = networks.Networks(root / "networks")

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def image_store(self) -> images.ImageStore:
        # Created lazily: `reconcile validate` and `plan` of a stack without containers need no store.
        if self._images is None:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._images = images.ImageStore(self.root)
        return self._images

    @property
    def runtime(self) -> runtime.Runtime:
        if self._runtime is None:
            self._runtime = runtime.Runtime(runtime.ensure_state_dir(self.root / "runtime"), binary=self.runtime_binary)
        return self._runtime

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One mutation at a time per root, across threads and processes (CLI and controller)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.root / ".engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _records(self) -> list[_Record]:
        base = self.root / "containers"
        if not base.is_dir():
            return []
        found = []
        for directory in sorted(base.iterdir()):
            data = _read_json(directory / "container.json")
            if data is not None and "name" in data:
                found.append(_Record(directory.name, directory, data))
        return found

    def _find(self, name: str) -> _Record | None:
        return next((record for record in self._records() if record.name == name), None)

    def _get(self, name: str) -> _Record:
        record = self._find(name)
        if record is None:
            raise errors.NotFound(f"container {name} not found")
        return record

    def _supervisor_alive(self, record: _Record) -> bool:
        info = _read_json(record.directory / "supervisor.pid.json")
        if info is None:
            return False
        return _process_start_time(int(info["pid"])) == info.get("start_time")

    def _state(self, record: _Record) -> tuple[observed.ContainerState, dict[str, Any] | None]:
        exit_info = _read_json(record.directory / "exit.json")
        if exit_info is not None:
            return "exited", exit_info
        if record.data.get("started_at") is None:
            return "created", None
        if self._supervisor_alive(record):
            return "running", None
        # The supervisor died without writing an exit status (killed, host crash): dead, as Docker says.
        return "dead", None

    # -- observe ----------------------------------------------------------------------------------

    def observe(self, *, images: Sequence[str] = (), stacks: Collection[str] | None = None) -> observed.Observed:
        local: dict[str, str | None] = {}
        for ref in images:
            image = self.image_store.get(ref)
            local[ref] = image.id if image is not None else None
        containers = {}
        for record in self._records():
            if observed.LABEL_KIND not in record.labels:
                continue
            state, exit_info = self._state(record)
            spec = record.spec
            limits = record.data.get("resources", {})
            containers[record.name] = observed.ObservedContainer(
                name=record.name,
                labels=record.labels,
                container_id=record.container_id,
                image=spec.image,
                image_id=str(record.data.get("image_id", "")),
                state=state,
                exit_code=None if exit_info is None else int(exit_info["exit_code"]),
                started_at=record.data.get("started_at"),
                finished_at=None if exit_info is None else float(exit_info["finished_at"]),
                restart_count=int(record.data.get("restart_count", 0)),
                oom_killed=bool(exit_info and exit_info.get("oom_killed")),
                resources=observed.ObservedResources(
                    memory=limits.get("memory"), cpus=limits.get("cpus"), pids=limits.get("pids")
                ),
                networks=tuple(sorted(a["network"] for a in record.data.get("attachments", []))),
                volumes=tuple(sorted(m.source for m in spec.mounts if isinstance(m, manifests.VolumeMount))),
            )
        owned_networks = {
            network.name: observed.ObservedNetwork(
                name=network.name,
                labels=dict(network.labels),
                network_id=network.bridge,
                subnet=network.subnet,
                gateway=network.gateway,
            )
            for network in self.networks.all()
            if observed.LABEL_KIND in network.labels
        }
        return observed.Observed(containers=containers, networks=owned_networks, volumes=self._volumes(), images=local)

    def _volumes(self) -> dict[str, observed.ObservedVolume]:
        found: dict[str, observed.ObservedVolume] = {}
        base = self.root / "volumes"
        if not base.is_dir():
            return found
        for entry in sorted(base.iterdir()):
            record = _read_json(entry / "volume.json")
            if record is None:
                continue
            labels = record.get("labels", {})
            if observed.LABEL_KIND in labels:
                found[entry.name] = observed.ObservedVolume(
                    name=entry.name, labels=labels, mountpoint=str(entry / "_data")
                )
        return found

    # -- images -----------------------------------------------------------------------------------

    def pull_image(self, image: str, *, policy: engine.PullPolicy = "IfNotPresent") -> str:
        return self.image_store.pull(image, policy=policy).id

    # -- volumes ----------------------------------------------------------------------------------

    def create_volume(self, request: plans.VolumeRequest) -> None:
        if request.spec.options:
            raise errors.RuntimeFailed(f"volume {request.name}: the local driver takes no options yet")
        with self._exclusive():
            self._create_volume(request.name, dict(request.labels))

    def _create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        directory = self.root / "volumes" / name
        record_path = directory / "volume.json"
        existing = _read_json(record_path)
        if existing is not None:
            owner = existing.get("labels", {})
            if all(owner.get(k) == labels.get(k) for k in observed.OWNER_LABELS):
                return
            raise errors.Conflict(f"volume {name} exists and is owned by someone else")
        (directory / "_data").mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        _write_json(record_path, {"name": name, "labels": dict(labels)})

    def remove_volume(self, name: str) -> None:
        with self._exclusive():
            users = sorted(
                record.name
                for record in self._records()
                if any(isinstance(m, manifests.VolumeMount) and m.source == name for m in record.spec.mounts)
            )
            if users and (self.root / "volumes" / name).exists():
                raise errors.RuntimeFailed(f"volume {name} is in use by {', '.join(users)}")
            shutil.rmtree(self.root / "volumes" / name, ignore_errors=True)

    # -- networks ---------------------------------------------------------------------------------

    def create_network(self, request: plans.NetworkRequest) -> None:
        with self._exclusive():
            existing = self.networks.get(request.name)
            if existing is not None:
                if all(existing.labels.get(k) == request.labels.get(k) for k in observed.OWNER_LABELS):
                    self._ensure_network_services(existing)
                    return
                raise errors.Conflict(f"network {request.name} exists and is owned by someone else")
            self._create_network(request.name, request.spec, dict(request.labels))

    def _create_network(self, name: str, spec: manifests.NetworkSpec, labels: Mapping[str, str]) -> networks.Network:
        network = self.networks.create(name, subnet=spec.subnet, gateway=spec.gateway,
                                       internal=spec.internal, labels=labels)  # fmt: skip
        self._ensure_network_services(network)
        return network

    def _ensure_network_services(self, network: networks.Network) -> None:
        """Firewall rules and the DNS server of a network (again after a reboot or a dockerd restart)."""
        firewall.add_network(network.name, bridge=network.bridge, subnet=network.subnet, internal=network.internal)
        directory = self.root / "networks" / network.name
        if not (directory / "dns.json").exists():
            _write_json(directory / "dns.json", {})
        if _dns_server_alive(directory):
            return
        with contextlib.suppress(FileNotFoundError):
            (directory / "dns.pid").unlink()
        server = subprocess.Popen(
            [sys.executable, "-S", "-m", "reconciler.backends.native.dns", str(directory), network.gateway],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd="/",
            env=_helper_environment(),
        )  # fmt: skip
        # The server outlives this process; while we live, a thread reaps it if it exits first.
        threading.Thread(target=server.wait, daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _dns_server_alive(directory):
            time.sleep(0.02)
        if not _dns_server_alive(directory):
            raise errors.RuntimeFailed(f"network {network.name}: its DNS server did not start on {network.gateway}:53")

    def remove_network(self, name: str) -> None:
        with self._exclusive():
            network = self.networks.get(name)
            if network is None:
                return
            users = sorted(
                r.name for r in self._records() if name in {a["network"] for a in r.data.get("attachments", [])}
            )
            if users:
                raise errors.RuntimeFailed(f"network {name} is in use by {', '.join(users)}")
            _stop_dns_server(self.root / "networks" / name)
            firewall.remove_owner(name)
            self.networks.remove(name)

    def _refresh_dns(self, network_names: Sequence[str]) -> None:
        """Rewrite the name tables of these networks from the containers attached to them."""
        records = self._records()
        for network_name in network_names:
            table: dict[str, list[str]] = {}
            for record in records:
                for attachment in record.data.get("attachments", []):
                    if attachment["network"] != network_name:
                        continue
                    for alias in [record.name, record.container_id[:12], f"{record.name}.{network_name}",
                                  *attachment.get("aliases", [])]:  # fmt: skip
                        table.setdefault(alias.lower(), []).append(attachment["address"])
            directory = self.root / "networks" / network_name
            if directory.is_dir():
                _write_json(directory / "dns.json", table)

    # -- containers -------------------------------------------------------------------------------

    def create_container(self, request: plans.ContainerRequest) -> str:
        spec = request.spec
        with self._exclusive():
            existing = self._find(request.name)
            if existing is not None:
                if all(existing.labels.get(k) == request.labels.get(k) for k in observed.OWNER_LABELS):
                    return existing.container_id
                raise errors.Conflict(f"container {request.name} exists and is owned by someone else")
            if spec.ports and spec.network_mode != "bridge":
                raise errors.RuntimeFailed(f"container {request.name}: ports need networkMode bridge")
            self._check_ports(request)
            if spec.volumes_from:
                # The inherited mounts become this container's own: its bundle, its record (observe
                # reports the volumes it uses) and, through the record, later volumesFrom of it.
                spec = spec.model_copy(update={"mounts": [*spec.mounts, *self._inherited_mounts(request)]})
                request = dataclasses.replace(request, spec=spec)
            image = self.image_store.get(spec.image)
            if image is None:
                raise errors.NotFound(f"image {spec.image} is not present (pull it first)")
            volume_paths: dict[str, str] = {}
            for mount in spec.mounts:
                if isinstance(mount, manifests.VolumeMount):
                    directory = self.root / "volumes" / mount.source
                    if not (directory / "volume.json").exists():
                        if not mount.external:
                            raise errors.NotFound(f"volume {mount.source} not found")
                        self._create_volume(mount.source, {})
                    volume_paths[mount.source] = str(directory / "_data")
            container_id = _new_container_id()
            directory = self.root / "containers" / container_id
            directory.mkdir(mode=0o700, parents=True)
            try:
                return self._prepare(request, image, directory, container_id, volume_paths)
            except BaseException:
                self._discard(directory, container_id)
                raise

    def _inherited_mounts(self, request: plans.ContainerRequest) -> list[manifests.VolumeMount | manifests.BindMount]:
        """What ``volumesFrom`` brings, as Docker does it: the named-volume and bind mounts of each
        source container (what it inherited itself included), same targets and modes; tmpfs mounts
        stay private. The container's own mount of a path wins, then the first source naming it."""
        taken = {mount.target for mount in request.spec.mounts}
        inherited: list[manifests.VolumeMount | manifests.BindMount] = []
        for source_name in request.spec.volumes_from:
            source = self._find(source_name)
            if source is None:
                raise errors.NotFound(f"container {request.name}: volumesFrom {source_name}: no such container")
            for mount in source.spec.mounts:
                if isinstance(mount, manifests.VolumeMount | manifests.BindMount) and mount.target not in taken:
                    taken.add(mount.target)
                    inherited.append(mount)
        return inherited

    def _prepare(
        self,
        request: plans.ContainerRequest,
        image: images.Image,
        directory: Path,
        container_id: str,
        volume_paths: Mapping[str, str],
    ) -> str:
        spec = request.spec
        rootfs = self.image_store.rootfs_mount(image, directory)
        mounts.mount(rootfs)
        hostname = spec.hostname or container_id[:12]
        attachments, netns = self._connect(request, container_id, directory)
        addresses = "".join(f"{a.address}\t{hostname}\n" for a in attachments[:1])
        if attachments:
            # The network's own DNS server on its gateway; it never forwards (see `dns`).
            resolv = f"nameserver {attachments[0].gateway}\noptions ndots:0\n"
        else:
            resolv = "# reconciler: no network, no DNS\n"
        files = {
            "/etc/hostname": (directory / "hostname", f"{hostname}\n"),
            "/etc/hosts": (
                directory / "hosts",
                f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{addresses}",
            ),
            "/etc/resolv.conf": (directory / "resolv.conf", resolv),
        }
        for path, text in files.values():
            path.write_text(text, encoding="utf-8")
            os.chmod(path, 0o644)
        rootfs_path = Path(rootfs.target)
        for target in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
            # The mount points must exist in the rootfs (engine-notes §3.3, read-only rootfs).
            parent = layers.resolve_in_root(rootfs_path, "etc", create=True)
            point = parent / Path(target).name
            if not point.exists() and not point.is_symlink():
                point.touch(mode=0o644)
        if spec.working_dir:
            layers.resolve_in_root(rootfs_path, spec.working_dir.lstrip("/"), create=True)
        request = _image_volumes(request, image, directory, rootfs_path, volume_paths)
        spec = request.spec
        environment = bundles.Environment(
            container_id=container_id,
            rootfs=str(rootfs_path),
            volume_paths=volume_paths,
            files={target: str(path) for target, (path, _) in files.items()},
            netns_path=netns,
        )
        config = bundles.build_config(request, image.config, environment)
        bundles.write(directory, config)
        record = _Record(container_id, directory, {
            "name": request.name,
            "id": container_id,
            "labels": dict(request.labels),
            "spec": spec.model_dump(mode="json", by_alias=True),
            "env": dict(request.env),
            "image_id": image.id,
            "created_at": time.time(),
            "started_at": None,
            "restart_count": 0,
            "stop_signal": bundles.stop_signal(spec, image.config),
            "resources": {"memory": spec.resources.memory, "cpus": spec.resources.cpus, "pids": spec.resources.pids},
            "cgroups_path": config["linux"]["cgroupsPath"],
            "attachments": [dataclasses.asdict(a) for a in attachments],
        })  # fmt: skip
        record.save()
        self._refresh_dns([a.network for a in attachments])
        return container_id

    def _check_ports(self, request: plans.ContainerRequest) -> None:
        """A host port taken by another container of ours, or by any process, fails the create."""
        taken = {
            (str(port.get("hostIP") or "0.0.0.0"), int(port["hostPort"]), str(port.get("protocol", "tcp"))): r.name  # noqa: S104
            for r in self._records()
            for port in r.data["spec"].get("ports", [])
            if port.get("hostPort")
        }
        for port in request.spec.ports:
            if port.host_port is None:
                continue
            ip = port.host_ip or "0.0.0.0"  # noqa: S104
            for (other_ip, other_port, protocol), owner in taken.items():
                same_address = ip == other_ip or "0.0.0.0" in (ip, other_ip)  # noqa: S104
                if other_port == port.host_port and protocol == port.protocol and same_address:
                    raise errors.Conflict(f"host port {port.host_port}/{port.protocol} is already published by {owner}")
            kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind((ip, port.host_port))
                except OSError as exc:
                    raise errors.RuntimeFailed(
                        f"host port {ip}:{port.host_port}/{port.protocol} is already in use ({exc.strerror})"
                    ) from None

    def _connect(
        self, request: plans.ContainerRequest, container_id: str, directory: Path
    ) -> tuple[list[networks.Attachment], str | None]:
        """The container's network namespace: joined, host, or its own with veths and ports."""
        spec = request.spec
        if spec.network_mode == "host":
            return [], None
        if spec.network_mode.startswith("container:"):
            peer = self._get(spec.network_mode.removeprefix("container:"))
            return [], networks.netns_path(peer.container_id)
        wanted: list[tuple[str, str | None, list[str]]] = []
        if spec.network_mode == "bridge":
            if spec.networks:
                wanted = [(n.name, n.ipv4_address, list(n.aliases)) for n in spec.networks]
            else:
                if self.networks.get(DEFAULT_NETWORK) is None:
                    self._create_network(DEFAULT_NETWORK, manifests.NetworkSpec(), {})
                wanted = [(DEFAULT_NETWORK, None, [])]
        for name, _, _ in wanted:
            network = self.networks.get(name)
            if network is None:
                raise errors.NotFound(f"network {name} not found")
            self._ensure_network_services(network)
        attachments = self.networks.attach(container_id, wanted)
        if attachments:
            first = attachments[0]
            bridge = networks.bridge_name(first.network)
            for port in spec.ports:
                firewall.publish(container_id, bridge=bridge, host_ip=port.host_ip, host_port=port.host_port or 0,
                                 address=first.address, container_port=port.container_port,
                                 protocol=port.protocol)  # fmt: skip
        return attachments, networks.netns_path(container_id)

    def _discard(self, directory: Path, container_id: str) -> None:
        """Undo a create or finish a remove: runtime state, network, rootfs mount, directory."""
        self._drop_prepared(directory, container_id)
        with contextlib.suppress(errors.EngineError):
            self.runtime.delete(container_id, force=True)
        record = _read_json(directory / "container.json") or {}
        attachments = record.get("attachments", [])
        firewall.remove_owner(container_id)
        self.networks.detach(container_id, [a["host_veth"] for a in attachments])
        # A create that failed half-way may have veths the record does not list yet.
        self.networks.detach(container_id, [f"rcv{container_id[:9]}{n}" for n in range(8)])
        rootfs = directory / "rootfs"
        if mounts.is_mounted(rootfs):
            mounts.unmount(rootfs, detach=True)
        shutil.rmtree(directory, ignore_errors=True)
        # runc leaves the (empty) container directory in the cgroup v2 tree of a hybrid host.
        with contextlib.suppress(OSError):
            os.rmdir(Path("/sys/fs/cgroup/unified/reconciler") / container_id)

    def start_container(self, name: str) -> None:
        with self._exclusive():
            record = self._get(name)
            state, _ = self._state(record)
            if state == "running":
                return
            rootfs = record.directory / "rootfs"
            if not mounts.is_mounted(rootfs):  # after a host reboot
                image = self.image_store.get(str(record.data["image_id"]))
                if image is None:
                    raise errors.NotFound(f"container {name}: its image {record.data['image_id'][:19]} is gone")
                mounts.mount(self.image_store.rootfs_mount(image, record.directory))
            with contextlib.suppress(FileNotFoundError):
                (record.directory / "stopping").unlink()
            if self._start_prepared(record):
                return
            # A restart keeps what survives the exit (rootfs mount, network namespace, veths, ports,
            # config.json): only the runtime's record of the previous run goes, and that while the
            # supervisor's interpreter starts (it waits for the go before `runtime create`).
            restart = record.data.get("started_at") is not None
            process, sync, go = self._spawn_supervisor(record)
            try:
                if restart:
                    self.runtime.delete(record.container_id, force=True)
                for leftover in ("exit.json", "supervisor.pid.json", "init.pid"):
                    with contextlib.suppress(FileNotFoundError):
                        (record.directory / leftover).unlink()
                os.write(go, b"go\n")
            except BaseException:
                os.close(go)  # end of file: the supervisor exits without a trace
                os.close(sync)
                process.wait(timeout=SUPERVISOR_START_TIMEOUT)
                raise
            os.close(go)
            self._await_supervisor(record, process, sync)
            if restart:
                record.data["restart_count"] = int(record.data.get("restart_count", 0)) + 1
            self.runtime.start(record.container_id)
            record.data["started_at"] = time.time()
            record.save()

    def _drop_prepared(self, directory: Path, container_id: str) -> None:
        """Discard a prepared next run (caller holds the lock): its supervisor first (else it would
        give up on its own later), then its init with the runtime state."""
        if not (directory / "prepared.json").exists():
            return
        _kill_supervisor(directory / "prepared.json")
        with contextlib.suppress(FileNotFoundError):
            (directory / "prepared.json").unlink()
        with contextlib.suppress(errors.EngineError):
            self.runtime.delete(container_id, force=True)

    def _start_prepared(self, record: _Record) -> bool:
        """Start the prepared next run, if there is one (caller holds the lock): `runtime start`."""
        prepared = _read_json(record.directory / "prepared.json")
        if prepared is None:
            return False
        if _process_start_time(int(prepared["pid"])) != prepared.get("start_time"):
            self._drop_prepared(record.directory, record.container_id)
            return False
        # The old exit goes first: once started, an exit at once writes the new one.
        for leftover in ("exit.json", "supervisor.pid.json"):
            with contextlib.suppress(FileNotFoundError):
                (record.directory / leftover).unlink()
        # From this rename on, the supervisor is the run's ordinary one (it gives up only under
        # our lock, and only while prepared.json is there).
        os.replace(record.directory / "prepared.json", record.directory / "supervisor.pid.json")
        try:
            self.runtime.start(record.container_id)
        except errors.RuntimeFailed:
            _kill_supervisor(record.directory / "supervisor.pid.json")
            with contextlib.suppress(FileNotFoundError):
                (record.directory / "supervisor.pid.json").unlink()
            return False  # the ordinary path deletes the runtime state and creates the run anew
        record.data["restart_count"] = int(record.data.get("restart_count", 0)) + 1
        record.data["started_at"] = time.time()
        record.save()
        return True

    def _prepare_next_run(self, container_id: str) -> None:
        """The next run of an exited container, up to `runtime create`, in the background.

        Best effort: any failure leaves the container as it was, and the start goes the ordinary way.
        """
        directory = self.root / "containers" / container_id
        with contextlib.suppress(errors.EngineError, OSError, ValueError, KeyError), self._exclusive():
            data = _read_json(directory / "container.json")
            if data is None or "name" not in data:
                return
            record = _Record(container_id, directory, data)
            if self._state(record)[0] != "exited" or (directory / "prepared.json").exists():
                return
            if (directory / "stopping").exists() or not mounts.is_mounted(directory / "rootfs"):
                return
            process, sync, go = self._spawn_supervisor(record, prepared=True)
            try:
                self.runtime.delete(container_id, force=True)
                os.write(go, b"go\n")
            except BaseException:
                os.close(go)
                os.close(sync)
                process.wait(timeout=SUPERVISOR_START_TIMEOUT)
                raise
            os.close(go)
            self._await_supervisor(record, process, sync, prepared=True)

    def _prepare_after_exit(self, container_id: str, exit_code: int | None) -> None:
        """Prepare the next run (in a thread) if the container's restart policy will want one."""
        if not self.prepare_restarts:
            return
        data = _read_json(self.root / "containers" / container_id / "container.json")
        if data is None or observed.LABEL_KIND not in data.get("labels", {}):
            return
        restart = data.get("spec", {}).get("restart") or {}
        policy = restart.get("policy", "no")
        if policy == "on-failure":
            retries = restart.get("maxRetries")
            if exit_code in (0, None) or (retries is not None and int(data.get("restart_count", 0)) >= int(retries)):
                return
        elif policy not in ("always", "unless-stopped"):
            return
        threading.Thread(target=self._prepare_next_run, args=(container_id,), daemon=True).start()

    def _spawn_supervisor(self, record: _Record, *, prepared: bool = False) -> tuple[subprocess.Popen[bytes], int, int]:
        """The supervisor, started: its process, the read end of its report pipe, and the write end
        of the pipe it waits on for the go (a line) before ``runtime create``."""
        runtime_log = record.directory / "runtime.log"
        _write_json(record.directory / "supervisor.json", {
            "create": self.runtime.create_argv(
                record.container_id, bundle=record.directory, pid_file=record.directory / "init.pid",
                log_file=runtime_log,
            ),
            "cgroups_path": record.data.get("cgroups_path", ""),
            "runtime_log": str(runtime_log),
            "log": _rotation(record.data.get("spec") or {}),
            **({"prepared": {"ttl": PREPARED_TTL, "lock": str(self.root / ".engine.lock")}} if prepared else {}),
        }, durable=False)  # fmt: skip
        sync_read, sync_write = os.pipe()
        go_read, go_write = os.pipe()
        try:
            process = subprocess.Popen(
                # -S: no site-packages scan at start (the package comes in through PYTHONPATH).
                [sys.executable, "-S", "-m", "reconciler.backends.native.supervisor", "--sync-fd", str(sync_write),
                 "--go-fd", str(go_read), str(record.directory)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(sync_write, go_read), start_new_session=True, close_fds=True,
                cwd="/", env=_helper_environment(),
            )  # fmt: skip
        except BaseException:
            for fd in (sync_read, go_write):
                os.close(fd)
            raise
        finally:
            os.close(sync_write)
            os.close(go_read)
        return process, sync_read, go_write

    def _await_supervisor(
        self, record: _Record, process: subprocess.Popen[bytes], sync_read: int, *, prepared: bool = False
    ) -> None:
        """Its report: ``created <init pid>`` (the init waits for ``runtime start``) or the error."""
        with os.fdopen(sync_read, "r", encoding="utf-8") as sync:
            ready, _, _ = select.select([sync], [], [], SUPERVISOR_START_TIMEOUT)
            line = sync.readline().strip() if ready else ""
        if not line.startswith("created "):
            with contextlib.suppress(ProcessLookupError):
                if not line:
                    process.kill()
            process.wait(timeout=5)
            message = line.removeprefix("error ").strip() or "the supervisor did not report in time"
            raise errors.RuntimeFailed(f"starting container {record.name}", stderr=message)
        if not prepared:  # a prepared run's supervisor wrote prepared.json itself
            # Not fsynced: it describes a process, which a host crash takes with it anyway.
            _write_json(record.directory / "supervisor.pid.json", {
                "pid": process.pid, "start_time": _process_start_time(process.pid),
                "init_pid": int(line.split()[1]),
            }, durable=False)  # fmt: skip
        # The supervisor lives on after this process exits; a thread reaps it if we outlive it,
        # so it never lingers as a zombie of ours.
        threading.Thread(target=process.wait, daemon=True).start()

    def _wait_exit(self, record: _Record, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (record.directory / "exit.json").exists():
                return True
            if not self._supervisor_alive(record):
                return (record.directory / "exit.json").exists()
            time.sleep(0.02)
        return (record.directory / "exit.json").exists()

    def stop_container(self, name: str, *, timeout: float | None = None) -> None:
        # No engine lock while waiting: stopping changes no file of ours (the supervisor writes
        # exit.json), and holding it would serialise every stop of an apply behind the slowest.
        record = self._get(name)
        self._stop(record, record.spec.stop_timeout if timeout is None else timeout)

    def _stop(self, record: _Record, timeout: float) -> None:
        state, _ = self._state(record)
        if state != "running":
            return
        signal_name = str(record.data.get("stop_signal", "SIGTERM"))
        # A stopped container's next run is not prepared: it stays stopped until asked to start.
        (record.directory / "stopping").touch(mode=0o600)
        self.runtime.kill(record.container_id, signal_name)
        if self._wait_exit(record, timeout):
            return
        self.runtime.kill(record.container_id, "SIGKILL", all_processes=True)
        if not self._wait_exit(record, KILL_GRACE):
            raise errors.RuntimeFailed(f"container {record.name} did not exit after SIGKILL")

    def remove_container(self, name: str) -> None:
        record = self._find(name)
        if record is None:
            return
        self._stop(record, 0.0)
        with self._exclusive():
            record = self._find(name)
            if record is None:
                return
            self._stop(record, 0.0)  # started again meanwhile: kill it now, under the lock
            self._discard(record.directory, record.container_id)
            self._refresh_dns([a["network"] for a in record.data.get("attachments", [])])

    def rename_container(self, name: str, new_name: str) -> None:
        with self._exclusive():
            record = self._get(name)
            if self._find(new_name) is not None:
                raise errors.Conflict(f"container {new_name} already exists")
            record.data["name"] = new_name
            record.save()
            self._refresh_dns([a["network"] for a in record.data.get("attachments", [])])

    def update_container(self, name: str, resources: manifests.Resources) -> None:
        with self._exclusive():
            record = self._get(name)
            # -1 lifts a limit (runc's "unlimited"); absent keys would leave the old value in force.
            document = {
                "memory": {"limit": resources.memory or -1, "swap": resources.memory or -1},
                "cpu": {"quota": int(resources.cpus * 100_000) if resources.cpus else -1, "period": 100_000},
                "pids": {"limit": resources.pids or -1},
            }
            if self._state(record)[0] == "running":
                self.runtime.update(record.container_id, document)
            self._drop_prepared(record.directory, record.container_id)  # made with the old limits
            config_path = record.directory / "config.json"
            config = _read_json(config_path) or {}
            limits = config.setdefault("linux", {}).setdefault("resources", {})
            for key in ("memory", "cpu", "pids"):
                limits.pop(key, None)
            limits.update(bundles.resources(resources, privileged=False) | {"devices": limits.get("devices", [])})
            _write_json(config_path, config)
            record.data["resources"] = {"memory": resources.memory, "cpus": resources.cpus, "pids": resources.pids}
            record.save()

    # -- inspection -------------------------------------------------------------------------------

    def stats(self, name: str) -> engine.Stats:
        record = self._get(name)
        if self._state(record)[0] != "running":
            raise errors.RuntimeFailed(f"container {name} is not running")
        data = self.runtime.stats(record.container_id)
        memory = data.get("memory") or {}
        usage = int((memory.get("usage") or {}).get("usage") or 0)
        details = memory.get("raw") or {}
        # Page cache is not "in use" (as docker stats: inactive_file on cgroup v2, cache on v1).
        cache = details.get("total_inactive_file", details.get("inactive_file", memory.get("cache", 0)))
        limit = (record.data.get("resources") or {}).get("memory")
        return engine.Stats(
            cpu_seconds=int(((data.get("cpu") or {}).get("usage") or {}).get("total") or 0) / 1e9,
            memory_bytes=max(0, usage - int(cache or 0)),
            memory_limit=int(limit) if limit else None,
            pids=int((data.get("pids") or {}).get("current") or 0),
        )

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[engine.LogLine]:
        record = self._get(name)
        path = record.directory / "container.log"
        # The rotated files first, oldest first (container.log.N ... .1), then the current one.
        numbered = [p for p in record.directory.glob("container.log.*") if p.suffix[1:].isdigit()]
        raw = b"".join(older.read_bytes() for older in sorted(numbered, key=lambda p: -int(p.suffix[1:])))
        position, inode = 0, 0
        with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
            current = handle.read()
            current = current[: current.rfind(b"\n") + 1]  # a line being written is read when whole
            position, inode = len(current), os.fstat(handle.fileno()).st_ino
            raw += current
        lines = [_log_line(line) for line in raw.splitlines() if line.strip()]
        yield from (lines[-tail:] if tail else lines)
        while follow:
            exited = self._state(record)[0] != "running"  # looked at before the last read
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                if exited:
                    return
                time.sleep(0.1)
                continue
            with handle:
                # The inode of the file actually opened: a rotation between a stat and an open
                # would otherwise have us read the new file from the old one's position.
                info = os.fstat(handle.fileno())
                missed = b""
                if inode and info.st_ino != inode:
                    missed, position = _rotated_since(path, inode, position), 0
                elif info.st_size < position:  # truncated in place (one file only)
                    position = 0
                inode = info.st_ino
                handle.seek(position)
                fresh = handle.read()
            complete = fresh[: fresh.rfind(b"\n") + 1]
            position += len(complete)
            for line in (missed + complete).splitlines():
                if line.strip():
                    yield _log_line(line)
            if exited and not missed and not complete:
                return
            time.sleep(0.1)

    def exec(self, name: str, argv: Sequence[str], *, timeout: float | None = None) -> engine.ExecResult:
        record = self._get(name)
        if self._state(record)[0] != "running":
            raise errors.RuntimeFailed(f"container {name} is not running")
        config = _read_json(record.directory / "config.json") or {}
        process = config.get("process", {})
        user = process.get("user", {})
        done = self.runtime.exec(
            record.container_id,
            list(argv),
            env=list(process.get("env", [])),
            cwd=process.get("cwd"),
            user=f"{user.get('uid', 0)}:{user.get('gid', 0)}",
            timeout=timeout,
        )
        return engine.ExecResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)

    def events(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        """``start`` and ``die`` events, from the supervisors' pidfds (no polling of exit files).

        A ``die`` is stamped with the exit's own time, and when the container's restart policy
        will want it started again, its next run is prepared in the background (module docstring).
        """
        watched: dict[str, tuple[int, str, str]] = {}  # container id -> (pidfd, name, supervisor key)
        seen_running: set[str] = set()
        # Supervisors already watched through a pidfd ("pid:start time"): a run seen while its start
        # was being recorded has an older key, and its exit must not be reported a second time.
        reported: set[str] = set()
        first_scan = True
        try:
            while not stop.is_set():
                for record in self._records():
                    key = f"{record.container_id}:{record.data.get('started_at')}"
                    if record.container_id in watched or key in seen_running:
                        continue
                    info = _read_json(record.directory / "supervisor.pid.json")
                    if info is None:
                        continue
                    # One run, one supervisor: whichever way a run was reported, never twice.
                    run = f"{info['pid']}:{info.get('start_time')}"
                    if not self._supervisor_alive(record):
                        # Started and already gone between two scans (a crash at start): the exit
                        # file tells. Exits from before this stream began are history, not events.
                        exit_info = _read_json(record.directory / "exit.json")
                        if exit_info is None or record.data.get("started_at") is None:
                            continue
                        seen_running.add(key)
                        if not first_scan and run not in reported:
                            reported.add(run)
                            yield engine.Event(time=float(record.data["started_at"]), action="start",
                                               name=record.name, container_id=record.container_id)  # fmt: skip
                            self._prepare_after_exit(record.container_id, exit_info.get("exit_code"))
                            yield _die_event(record.name, record.container_id, exit_info)
                        continue
                    if run in reported:
                        seen_running.add(key)
                        continue
                    try:
                        pidfd = os.pidfd_open(int(info["pid"]))
                    except OSError:
                        continue
                    watched[record.container_id] = (pidfd, record.name, key)
                    seen_running.add(key)
                    reported.add(run)
                    yield engine.Event(time=time.time(), action="start", name=record.name,
                                       container_id=record.container_id)  # fmt: skip
                first_scan = False
                fds = {pidfd: container_id for container_id, (pidfd, _, _) in watched.items()}
                ready: list[int] = []
                if fds:
                    ready, _, _ = select.select(list(fds), [], [], 0.25)
                else:
                    stop.wait(0.25)
                for fd in ready:
                    container_id = fds[fd]
                    _, name, _ = watched.pop(container_id)
                    os.close(fd)
                    exit_info = _read_json(self.root / "containers" / container_id / "exit.json") or {}
                    self._prepare_after_exit(container_id, exit_info.get("exit_code"))
                    yield _die_event(name, container_id, exit_info)
        finally:
            for pidfd, _, _ in watched.values():
                os.close(pidfd)

    def close(self) -> None:
        return None


def _kill_supervisor(pid_file: Path) -> None:
    """SIGKILL the supervisor a pid file names (if it is still that process) and wait for its end."""
    info = _read_json(pid_file)
    if info is None:
        return
    pid = int(info["pid"])
    if _process_start_time(pid) != info.get("start_time"):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signals.SIGKILL)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        # Gone, or a zombie of ours (the thread that waits for it reaps it).
        if fields[0] == "Z" or fields[19] != info.get("start_time"):
            return
        time.sleep(0.005)


def _die_event(name: str, container_id: str, exit_info: Mapping[str, Any]) -> engine.Event:
    """A ``die`` event stamped with the exit's own time (the supervisor's), not its delivery's:
    the controller counts the restart backoff from it."""
    code, finished = exit_info.get("exit_code"), exit_info.get("finished_at")
    return engine.Event(time=time.time() if finished is None else float(finished), action="die", name=name,
                        container_id=container_id, exit_code=None if code is None else int(code))  # fmt: skip


def _log_line(raw: bytes) -> engine.LogLine:
    try:
        entry = json.loads(raw)
        text = str(entry.get("log", "")).rstrip("\n")
        if entry.get("stream") == "stderr":
            return engine.LogLine(stream="stderr", time=0.0, text=text)
        return engine.LogLine(stream="stdout", time=0.0, text=text)
    except (ValueError, AttributeError):
        return engine.LogLine(stream="stdout", time=0.0, text=raw.decode(errors="replace"))
