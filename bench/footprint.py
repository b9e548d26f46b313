"""What a set of processes costs while idle: proportional memory (PSS) and CPU over a window.

Used by bench/native.py for the idle cost of a running stack: everything the project runs for it
(the daemon and its children, every per-container keeper, the DNS server: any host process whose
command line names the native engine's root) against what Docker runs for the same stack (dockerd,
containerd and the stack's containerd-shims). Processes inside a container (another PID
namespace) are the workload, not the keeper, and are never counted.

PSS is read from ``/proc/PID/smaps_rollup`` (shared pages divided among their users, so that a
sum over processes is meaningful); CPU from ``utime + stime`` in ``/proc/PID/stat`` at both ends
of the window. A process that exits inside the window is lost from the CPU sum (it undercounts);
one that appears inside it is counted from its start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOST_PID_NAMESPACE = os.readlink("/proc/self/ns/pid")


@dataclasses.dataclass
class Footprint:
    """The idle cost of a group of processes; ``parts`` splits the PSS by role (label → KiB, count),
    ``cpu_parts`` the CPU (label → percent of one core)."""

    pss_kib: int
    cpu_percent: float
    window: float
    parts: dict[str, tuple[int, int]]
    cpu_parts: dict[str, float]


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name (field 3 on), or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def cpu_ticks(pid: int) -> int | None:
    fields = stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])  # utime, stime


def pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def host_pids() -> list[int]:
    """Every process in the bench's own PID namespace (container processes are not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == HOST_PID_NAMESPACE:
                    found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(roots: Iterable[int]) -> set[int]:
    """``roots`` and every host process below them."""
    children: dict[int, list[int]] = {}
    for pid in host_pids():
        fields = stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found: set[int] = set()
    pending = [pid for pid in roots if stat_fields(pid) is not None]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def project_processes(root: Path, daemon_pid: int | None) -> dict[int, str]:
    """The processes the project runs for the native root, each with its role: ``controller`` (the
    daemon, and its children that are neither), ``dns``, or ``keeper`` (whatever else names the root)."""
    below_daemon = descendants([daemon_pid] if daemon_pid else [])
    needle = str(root)
    roles: dict[int, str] = {}
    for pid in host_pids():
        line = command_line(pid)
        if pid == os.getpid():
            continue
        if pid == daemon_pid:
            roles[pid] = "controller"
        elif needle in line and (".dns " in line or line.rstrip().endswith(".dns")):
            roles[pid] = "dns"
        elif needle in line:
            roles[pid] = "keeper"
        elif pid in below_daemon:
            roles[pid] = "controller"
    return roles


# The daemons behind the default socket: Debian's dockerd writes its pid here, and the containerd it
# starts writes its own under dockerd's exec root. Other dockerd on the host (tests' own, in network
# namespaces) are not the reference.
DOCKERD_PIDFILES = {"dockerd": Path("/var/run/docker.pid"),
                    "containerd": Path("/var/run/docker/containerd/containerd.pid")}  # fmt: skip


def docker_processes(container_pids: Iterable[int]) -> dict[int, str]:
    """dockerd and containerd of the default socket, and the shims holding the given containers
    (each container's parent); the system containerd when dockerd uses that one instead."""
    roles: dict[int, str] = {}
    for pid in container_pids:
        fields = stat_fields(pid)
        if fields is not None:
            roles[int(fields[1])] = "containerd-shim"
    for role, pidfile in DOCKERD_PIDFILES.items():
        with contextlib.suppress(OSError, ValueError):
            roles[int(pidfile.read_text().strip())] = role
    if "containerd" not in roles.values():
        with contextlib.suppress(OSError, ValueError):
            roles[int(Path("/run/containerd/containerd.pid").read_text().strip())] = "containerd"
    return roles


def measure(find: Callable[[], dict[int, str]], window: float) -> Footprint:
    """PSS at the start of the window, CPU over it; ``find`` is asked at both ends."""
    first = find()
    before = {pid: ticks for pid in first if (ticks := cpu_ticks(pid)) is not None}
    parts: dict[str, tuple[int, int]] = {}
    for pid, role in first.items():
        kib, count = parts.get(role, (0, 0))
        parts[role] = (kib + pss_kib(pid), count + 1)
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    used: dict[str, int] = {}
    for pid, role in find().items():
        ticks = cpu_ticks(pid)
        if ticks is not None:
            used[role] = used.get(role, 0) + ticks - before.get(pid, 0)
    scale = 100.0 / CLOCK_TICKS / elapsed
    return Footprint(
        pss_kib=sum(kib for kib, _ in parts.values()),
        cpu_percent=sum(used.values()) * scale,
        window=elapsed,
        parts=parts,
        cpu_parts={role: ticks * scale for role, ticks in used.items()},
    )
