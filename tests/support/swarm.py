"""A real two-node Docker Swarm on this machine, for the swarm engine's integration tests.

:func:`running` starts two extra ``dockerd`` instances, each in a network namespace of its own
(``<name>-m`` for the manager, ``<name>-w`` for the worker) with its own data-root, exec-root,
pidfile, cgroup parent and unix socket (in a root-only folder), links the namespaces by a veth pair
on a /24 no route of this machine uses, makes the first a swarm manager and joins the second as a
worker (labelled with its dockerd's address, :data:`DAEMON_LABEL`), loads the test images into both (``docker import``: the nodes have no way out), serves
busybox from a ``docker-registry`` on 127.0.0.1:5000 inside the manager's namespace (the pulls an
engine makes on the manager are real ones) and yields a :class:`Swarm`. When the ``with`` ends, everything goes, found by its name: the nodes leave,
each dockerd is stopped by its pid, whatever is left in the namespaces and under the cgroup parents
is killed by pid, mounts under the node folders are unmounted, namespaces, links and folders are
removed.

Names: every swarm is ``rsw`` + 6 hex digits (the *family*), and everything it owns is derived
from that name alone, so a run killed half-way is removed by the next start (:func:`remove_leftovers`):
its owner file names the pid (and start time) of the test session that built it, and a swarm
whose owner is gone is taken down; a swarm of a session still running is left alone.

Why these choices: each dockerd runs through ``nsenter --net`` (not ``ip netns exec``, whose fresh
``/sys`` hides the cgroup mounts dockerd needs) with a UTS namespace named after the node, so
Swarm's ``node.hostname`` tells the nodes apart; their mounts are in this machine's mount
namespace, under the node's folders, which is why the teardown unmounts there. iptables stays on
(a network namespace has its own tables, and overlay networks need them).
``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`` makes a node use the image it holds instead of trying a
registry it cannot reach; each daemon reads an empty config file of its own (not the host's
``daemon.json``: no registry mirrors). This kernel has no IPVS (``CONFIG_IP_VS`` unset): services
with a virtual IP start, but the VIP and the routing mesh depend on IPVS to carry traffic, so tests
reach tasks by ``endpoint_mode: dnsrr`` names or ``tasks.<service>`` and publish ports in
``mode: host``.

This module only builds and removes the swarm; it never touches the host's own dockerd (it never
talks to ``/var/run/docker.sock``) nor anything outside its family's names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import docker
import docker.errors
import pytest

from scripts import demo_image
from tests import support
from tests.support import polling

FAMILY = "rsw"
NAME_PATTERN = re.compile(rf"^{FAMILY}[0-9a-f]{{6}}$")
STATE_BASE = Path("/var/lib/reconciler-tests/swarm")
RUN_BASE = Path("/run/reconciler-swarm")
CGROUP_BASE = Path("/sys/fs/cgroup")
# The images every node holds: busybox (as the other suites load it), and two tags for the update
# scenarios: "healthy" holds /healthy, "unhealthy" does not (a health check ``test -e /healthy``).
BUSYBOX = demo_image.DEFAULT_REFERENCE
# BUSYBOX's registry, served inside the manager's namespace (see _start_registry).
REGISTRY = BUSYBOX.split("/", 1)[0]
HEALTHY = "reconciler-test/swarm-busybox:healthy"
UNHEALTHY = "reconciler-test/swarm-busybox:unhealthy"
ROLES = ("m", "w")


@dataclasses.dataclass(frozen=True)
class Node:
    """One dockerd of the swarm: where its files are and how to reach it."""

    swarm: str
    role: str  # "m" (manager) or "w" (worker)
    address: str

    @property
    def netns(self) -> str:
        return f"{self.swarm}-{self.role}"

    @property
    def link(self) -> str:
        """The node's end of the veth pair (an interface name: 15 characters at most)."""
        return f"{self.swarm}{self.role}"

    @property
    def run_dir(self) -> Path:
        return RUN_BASE / self.swarm / self.role

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def data_root(self) -> Path:
        return STATE_BASE / self.swarm / self.role / "data"

    @property
    def log(self) -> Path:
        return STATE_BASE / self.swarm / self.role / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.netns}"

    def client(self, timeout: int = 120) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=timeout)


@dataclasses.dataclass(frozen=True)
class Swarm:
    """A built swarm: its name, its two nodes, the subnet between them, how long it took to build."""

    name: str
    manager: Node
    worker: Node
    subnet: str
    startup_seconds: float

    @property
    def nodes(self) -> tuple[Node, Node]:
        return (self.manager, self.worker)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


# -- subnet ---------------------------------------------------------------------------------------


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network a route or an address of this machine's own namespace covers."""
    found: list[ipaddress.IPv4Network] = []
    routes = json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        with contextlib.suppress(ValueError):  # "default" and the like are no network
            found.append(ipaddress.IPv4Network(route.get("dst", ""), strict=False))
    for link in json.loads(_run("ip", "-j", "-4", "addr").stdout or "[]"):
        for info in link.get("addr_info", ()):
            with contextlib.suppress(ValueError, KeyError):
                found.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return found


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no route or address here overlaps, and clear of Swarm's own overlay pool
    start (10.0.0.0/16), Docker's bridge (172.17/16) and the CI's 10.89.0/24 and 192.0.2/24."""
    used = _networks_in_use()
    for _ in range(200):
        candidate = ipaddress.IPv4Network(f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24")
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise AssertionError(f"no free 10.200-249.x.0/24 subnet: the routes here cover {used}")


# -- ownership ------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/PID/stat), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_record() -> str:
    return f"{os.getpid()} {_start_time(os.getpid())}"


def _owner_alive(name: str) -> bool:
    try:
        pid_text, started = (RUN_BASE / name / "owner").read_text().split()
    except (OSError, ValueError):
        return False
    return _start_time(int(pid_text)) == started


def _family_names() -> set[str]:
    """Every swarm name of the family something of this machine still carries."""
    names: set[str] = set()
    for netns in _run("ip", "netns", "list", check=False).stdout.split("\n"):
        stem = netns.split(" ", 1)[0].rsplit("-", 1)[0]
        if NAME_PATTERN.match(stem):
            names.add(stem)
    for base in (RUN_BASE, STATE_BASE):
        if base.is_dir():
            names.update(entry.name for entry in base.iterdir() if NAME_PATTERN.match(entry.name))
    for link in json.loads(_run("ip", "-j", "link").stdout or "[]"):
        stem = str(link.get("ifname", ""))[:-1]
        if NAME_PATTERN.match(stem):
            names.add(stem)
    return names


def remove_leftovers() -> list[str]:
    """Take down every swarm of the family whose test session is gone; returns their names."""
    removed = []
    for name in sorted(_family_names()):
        if not _owner_alive(name):
            take_down(name)
            removed.append(name)
    return removed


# -- taking down ----------------------------------------------------------------------------------


def _pid_from(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _kill_and_wait(pids: Sequence[int], what: str, *, grace: float) -> None:
    """SIGTERM each pid, wait ``grace`` seconds for them to go, then SIGKILL the rest."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(AssertionError):
        polling.eventually(lambda: not any(alive(pid) for pid in pids), timeout=grace, interval=0.1, what=what)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    polling.eventually(lambda: not any(alive(pid) for pid in pids), timeout=30, interval=0.1, what=what)


def _leave(node: Node) -> None:
    """The node leaves the swarm (best effort: a node that does not answer is stopped anyway)."""
    if not _answers(node):
        return
    with (
        contextlib.suppress(docker.errors.DockerException, OSError),
        contextlib.closing(node.client(timeout=20)) as client,
    ):
        client.swarm.leave(force=True)


def _cgroup_dirs(node: Node) -> list[Path]:
    """The node's cgroup parent in every controller hierarchy, deepest folders first."""
    found: list[Path] = []
    for hierarchy in CGROUP_BASE.iterdir() if CGROUP_BASE.is_dir() else ():
        parent = hierarchy / node.netns
        if parent.is_dir():
            found.extend(sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)))
            found.append(parent)
    return found


def _cgroup_pids(node: Node) -> list[int]:
    pids: set[int] = set()
    for folder in _cgroup_dirs(node):
        with contextlib.suppress(OSError):
            pids.update(int(line) for line in (folder / "cgroup.procs").read_text().split())
    return sorted(pids)


def _stop_node(node: Node) -> None:
    """Stop the node's dockerd by its pid, then kill by pid whatever still runs in its namespace or
    its cgroups (containerd, shims, the tasks' processes), and remove its cgroups."""
    pid = _pid_from(node.pidfile)
    if pid is not None and alive(pid):
        _kill_and_wait([pid], f"dockerd {pid} of {node.netns} to stop", grace=60)
    for _ in range(3):
        listed = _run("ip", "netns", "pids", node.netns, check=False).stdout.split()
        pids = sorted({int(p) for p in listed} | set(_cgroup_pids(node)))
        if not pids:
            break
        _kill_and_wait(pids, f"the processes left in {node.netns}", grace=5)
    for folder in _cgroup_dirs(node):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _unmount_under(folders: Sequence[Path]) -> None:
    """Unmount (deepest first) every mount of this namespace under ``folders``."""
    roots = [str(folder) + "/" for folder in folders]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any((point + "/").startswith(root) for root in roots):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        _run("umount", "--lazy", point, check=False)


def take_down(name: str) -> None:
    """Remove every trace of swarm ``name``, whatever state a run left it in."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{name!r} is not a swarm of the {FAMILY} family")
    nodes = [Node(name, role, "") for role in ROLES]
    for node in reversed(nodes):  # the worker leaves first: the manager then has no quorum to lose
        _leave(node)
    for node in reversed(nodes):
        _stop_node(node)
    _unmount_under([RUN_BASE / name, STATE_BASE / name])
    for node in nodes:
        _run("ip", "netns", "delete", node.netns, check=False)
        _run("ip", "link", "delete", node.link, check=False)  # a pair made but not yet moved
    for folder in (RUN_BASE / name, STATE_BASE / name):
        shutil.rmtree(folder, ignore_errors=True)
    leftover = [n for n in _family_names() if n == name]
    if leftover or any(node.netns in _run("ip", "netns", "list").stdout.split() for node in nodes):
        raise AssertionError(f"swarm {name} could not be removed completely (see ip netns, {RUN_BASE}, {STATE_BASE})")


# -- building -------------------------------------------------------------------------------------


def _rootfs(*, healthy: bool) -> bytes:
    """The busybox root (``scripts/demo_image``), with an empty ``/healthy`` when ``healthy``."""
    buffer = io.BytesIO(demo_image.busybox_layer())
    if healthy:
        with tarfile.open(fileobj=buffer, mode="a", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("healthy")
            info.mode, info.mtime = 0o644, demo_image.MTIME
            tar.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


def _load_images(node: Node) -> None:
    """Import the test images into the node (``docker import``: the node pulls nothing)."""
    roots = {BUSYBOX: _rootfs(healthy=False), HEALTHY: _rootfs(healthy=True), UNHEALTHY: _rootfs(healthy=False)}
    with contextlib.closing(node.client()) as client:
        for reference, rootfs in roots.items():
            repository, tag = reference.rsplit(":", 1)
            client.api.import_image_from_data(
                rootfs, repository=repository, tag=tag, changes=["ENV PATH=/bin", 'CMD ["sh"]']
            )


def _make_namespaces(name: str, subnet: ipaddress.IPv4Network) -> tuple[Node, Node]:
    """Two namespaces with loopback up, linked by a veth pair holding the subnet's .1 and .2."""
    hosts = list(subnet.hosts())
    manager, worker = Node(name, "m", str(hosts[0])), Node(name, "w", str(hosts[1]))
    _run("ip", "link", "add", manager.link, "type", "veth", "peer", "name", worker.link)
    for node in (manager, worker):
        _run("ip", "netns", "add", node.netns)
        _run("ip", "link", "set", node.link, "netns", node.netns)
        inside = ("ip", "-n", node.netns)
        _run(*inside, "link", "set", "lo", "up")
        _run(*inside, "addr", "add", f"{node.address}/{subnet.prefixlen}", "dev", node.link)
        _run(*inside, "link", "set", node.link, "up")
    return manager, worker


def _dockerd_argv(node: Node, dockerd: str) -> list[str]:
    config = node.run_dir / "daemon.json"
    config.write_text("{}\n")  # not the host's /etc/docker/daemon.json: no mirrors, no options
    return [
        # Its own network namespace, and a UTS namespace named after the node (Swarm's node.hostname).
        "nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--uts", "--",
        "sh", "-c", 'hostname "$0" && exec "$@"', node.netns, dockerd,
        "--config-file", str(config),
        "--data-root", str(node.data_root),
        "--exec-root", str(node.exec_root),
        "--pidfile", str(node.pidfile),
        "--host", node.url,
        "--cgroup-parent", node.cgroup_parent,
        "--bridge", "none",  # swarm tasks use overlays and docker_gwbridge, not docker0
    ]  # fmt: skip


def _answers(node: Node) -> bool:
    # Connect by hand first: the docker SDK leaks its socket when the connect itself fails. Then
    # a fixed, old API version, since ``version="auto"`` asks the daemon at construction.
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            probe.connect(str(node.socket))
    except OSError:
        return False
    client = docker.APIClient(base_url=node.url, version="1.24", timeout=5)
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):
        return False
    finally:
        client.close()


def _start_node(node: Node, dockerd: str, processes: list[subprocess.Popen[bytes]]) -> None:
    """Start the node's dockerd in its namespace, in a session of its own, and wait until it answers;
    ``processes`` gets its process (the caller reaps it once the swarm is taken down)."""
    node.run_dir.mkdir(parents=True, mode=0o700)
    node.data_root.mkdir(parents=True)
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith(("DOCKER_", "HTTP", "NO_PROXY"))}
    environment["DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"] = "1"
    with node.log.open("ab") as sink:
        process = subprocess.Popen(
            _dockerd_argv(node, dockerd), stdout=sink, stderr=sink, stdin=subprocess.DEVNULL,
            env=environment, start_new_session=True,
        )  # fmt: skip
    processes.append(process)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd of {node.netns} exited ({process.returncode}):\n{_log_tail(node)}")
        return _answers(node)

    try:
        polling.eventually(up, timeout=90, interval=0.1, what=f"dockerd of {node.netns} to answer")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_log_tail(node)}") from None


def _log_tail(node: Node) -> str:
    with contextlib.suppress(OSError):
        return node.log.read_text(errors="replace")[-3000:]
    return "(no log)"


def in_namespace(node: Node, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the node's network namespace (this machine's files, the node's network)."""
    command = ["nsenter", f"--net=/run/netns/{node.netns}", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _start_registry(manager: Node, processes: list[subprocess.Popen[bytes]]) -> None:
    """``docker-registry`` on 127.0.0.1:5000 in the manager's namespace, holding BUSYBOX: the
    engine's pulls on the manager are real pulls, and an unknown tag is a registry's "not found"."""
    binary = support.require_binary("docker-registry", "docker-registry")
    skopeo = support.require_binary("skopeo", "skopeo")
    folder = STATE_BASE / manager.swarm / "registry"
    (folder / "data").mkdir(parents=True)
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
        "http": {"addr": REGISTRY},
    }
    (folder / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    with (folder / "registry.log").open("ab") as sink:
        command = ["nsenter", f"--net=/run/netns/{manager.netns}", binary, "serve", str(folder / "config.yml")]
        processes.append(subprocess.Popen(command, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL))
    probe = f"import urllib.request; urllib.request.urlopen('http://{REGISTRY}/v2/', timeout=2).close()"
    polling.eventually(
        lambda: in_namespace(manager, sys.executable, "-c", probe).returncode == 0,
        timeout=30, interval=0.2, what=f"docker-registry on {REGISTRY} in {manager.netns}",
    )  # fmt: skip
    archive = demo_image.write_tarball(folder / "busybox.tar", BUSYBOX)
    copied = in_namespace(
        manager, skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
        f"oci-archive:{archive}", f"docker://{BUSYBOX}",
    )  # fmt: skip
    if copied.returncode != 0:
        raise AssertionError(f"skopeo copy of the busybox image to {REGISTRY} failed: {copied.stderr.strip()}")


def _ready_nodes(manager: Node) -> int:
    with contextlib.closing(manager.client(timeout=20)) as client:
        nodes = client.nodes.list()
    return sum(1 for node in nodes if node.attrs["Status"]["State"] == "ready")


def _form_swarm(manager: Node, worker: Node) -> None:
    """``swarm init`` on the manager, ``swarm join`` of the worker; wait until both are Ready."""
    with contextlib.closing(manager.client()) as client:
        client.swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:2377")
        client.swarm.reload()
        token = client.swarm.attrs["JoinTokens"]["Worker"]
    with contextlib.closing(worker.client()) as client:
        client.swarm.join(
            remote_addrs=[f"{manager.address}:2377"], join_token=token,
            advertise_addr=worker.address, listen_addr=f"{worker.address}:2377",
        )  # fmt: skip
    polling.eventually(lambda: _ready_nodes(manager) == 2, timeout=60, interval=0.2, what="both nodes Ready")
    with contextlib.closing(manager.client()) as client:
        set_daemon_label(client, worker, worker.url)


# The node label that names a node's own dockerd to the swarm engine (``SwarmEngine`` reaches a
# worker's copies of a volume there); written here, not imported, as an operator would type it.
DAEMON_LABEL = "reconciler.docker-host"


def set_daemon_label(manager: docker.DockerClient, node: Node, url: str | None) -> None:
    """Label ``node`` with the address of its dockerd (None: take the label away)."""
    found = next(n for n in manager.nodes.list() if n.attrs["Description"]["Hostname"] == node.netns)
    labels = {k: v for k, v in (found.attrs["Spec"].get("Labels") or {}).items() if k != DAEMON_LABEL}
    found.update({**found.attrs["Spec"], "Labels": labels | ({DAEMON_LABEL: url} if url else {})})


def _claim(name: str) -> None:
    """Write the owner file first: a concurrent session's leftover sweep must see the swarm is taken."""
    folder = RUN_BASE / name
    folder.mkdir(parents=True, mode=0o700)
    (folder / "owner").write_text(_owner_record())


@contextlib.contextmanager
def running() -> Iterator[Swarm]:
    """Build a two-node swarm (after removing dead runs' leftovers); take it down when done."""
    support.require_root()
    dockerd = support.require_binary("dockerd", "docker.io")
    for binary, package in (("ip", "iproute2"), ("containerd", "containerd"), ("runc", "runc")):
        support.require_binary(binary, package)
    remove_leftovers()
    started = time.monotonic()
    name = f"{FAMILY}{secrets.token_hex(3)}"
    _claim(name)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subnet = free_subnet()
        manager, worker = _make_namespaces(name, subnet)
        for node in (manager, worker):
            _start_node(node, dockerd, processes)
        _form_swarm(manager, worker)
        _start_registry(manager, processes)
        for node in (manager, worker):
            _load_images(node)
        yield Swarm(name, manager, worker, str(subnet), time.monotonic() - started)
    finally:
        take_down(name)
        for process in processes:
            process.wait(timeout=60)  # stopped by take_down: this only reaps it


# -- a test's objects -----------------------------------------------------------------------------


def task_containers(client: docker.DockerClient, prefix: str) -> list[str]:
    found = client.api.containers(all=True, filters={"label": "com.docker.swarm.service.name"})
    return [c["Id"] for c in found if c["Labels"]["com.docker.swarm.service.name"].startswith(prefix)]


def remove_named(swarm: Swarm, prefix: str) -> None:
    """Remove the services, networks, secrets, configs and volumes whose names start with ``prefix``
    (a test's own unique prefix), on the manager and on both nodes; wait until the services' task
    containers are gone, since a network or volume in use cannot go."""
    clients = [node.client() for node in swarm.nodes]
    manager = clients[0]
    try:
        for service in manager.api.services(filters={"name": prefix}):
            if service["Spec"]["Name"].startswith(prefix):
                with contextlib.suppress(docker.errors.NotFound):
                    manager.api.remove_service(service["ID"])
        polling.eventually(
            lambda: not any(task_containers(client, prefix) for client in clients), timeout=90, interval=0.2,
            what=f"the task containers of services {prefix}* to go",
        )  # fmt: skip
        _remove_swarm_objects(manager, prefix)
        for client in clients:
            for volume in client.api.volumes(filters={"name": prefix}).get("Volumes") or ():
                if volume["Name"].startswith(prefix):
                    with contextlib.suppress(docker.errors.APIError):
                        client.api.remove_volume(volume["Name"], force=True)
    finally:
        for client in clients:
            client.close()


def _remove_swarm_objects(manager: docker.DockerClient, prefix: str) -> None:
    for network in manager.api.networks(names=[prefix]):
        if network["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.APIError):
                manager.api.remove_network(network["Id"])
    for secret in manager.api.secrets(filters={"name": prefix}):
        if secret["Spec"]["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.APIError):
                manager.api.remove_secret(secret["ID"])
    for config in manager.api.configs(filters={"name": prefix}):
        if config["Spec"]["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.APIError):
                manager.api.remove_config(config["ID"])
