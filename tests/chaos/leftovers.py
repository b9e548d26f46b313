"""What a native root may leave on the host, found by name and id: the chaos suite's leak detector.

:class:`Traces` remembers every container id seen under a root (directories under
``containers/`` and ``runtime/``, noted while an apply runs and right after each kill, before
anything could clean them) and every bridge of its networks. :meth:`Traces.found` lists what is
still on the host for them: processes whose command line names the root (keepers, DNS
servers, runc), processes in a container's cgroup, mounts under the root, network namespaces,
veths and bridges, iptables rules tagged with an owner of the root (``rc:<id>``/``rc:<bridge>``,
see ``reconciler/backends/native/firewall.py``), cgroups, and state directories.
:meth:`Traces.settled` is the same once the root's processes ended (helpers that end by
themselves, within a bound, are not strays). :meth:`Traces.sweep` removes all of that by the same names and ids, so a failed trial never
leaks into the next test. :func:`store_problems` checks an image store: every blob hashes to
its name, every partial download is a prefix of a correct blob, every recorded image is whole.

Nothing here matches a broad pattern: every probe names the root, an id or a bridge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler.backends.native import networks, snapshots
from tests.support import polling

_ID = re.compile(r"^[0-9a-f]{64}$")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "reconciler"
# How long a helper of the root may take to end by itself after the command that made it returned.
SETTLE = 10.0


def cgroup_dirs(container_id: str) -> list[Path]:
    """The container's cgroup in every hierarchy (v1 controllers, and the v2 tree of a hybrid host)."""
    found = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        path = hierarchy / CGROUP_PARENT / container_id
        if path.is_dir():
            found.append(path)
    direct = CGROUP_ROOT / CGROUP_PARENT / container_id
    if direct.is_dir() and direct not in found:
        found.append(direct)
    return found


def _mount_points(under: Path) -> list[str]:
    prefix = str(under).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # octal escapes (\040) of spaces
        if point.startswith(prefix) or point == str(under):
            points.append(point)
    return points


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _iptables_rules() -> list[tuple[str, str]]:
    rules = []
    for table in ("filter", "nat"):
        done = subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=True)
        rules += [(table, line) for line in done.stdout.splitlines()]
    return rules


def _owners_in(line: str) -> set[str]:
    return {token.strip('"')[3:] for token in line.split() if token.strip('"').startswith("rc:")}


@dataclasses.dataclass
class Traces:
    """Container ids and bridges ever seen under one native root."""

    root: Path
    ids: set[str] = dataclasses.field(default_factory=set)
    bridges: set[str] = dataclasses.field(default_factory=set)

    def note(self) -> None:
        """Remember the ids and bridges present now (cheap: directory listings)."""
        for folder in ("containers", "runtime"):
            with contextlib.suppress(OSError):
                self.ids |= {entry for entry in os.listdir(self.root / folder) if _ID.match(entry)}
        with contextlib.suppress(OSError):
            for entry in os.listdir(self.root / "networks"):
                self.bridges.add(networks.bridge_name(entry, self.root / "networks"))
                with contextlib.suppress(OSError, ValueError, KeyError):
                    data = json.loads((self.root / "networks" / entry / "network.json").read_text())
                    self.bridges.add(str(data["bridge"]))
        self.bridges.add(networks.bridge_name("default", self.root / "networks"))

    def processes(self, keep: frozenset[str] = frozenset()) -> dict[int, str]:
        """Processes of the root: its path on their command line, or in a container's cgroup.
        With ``keep`` (running containers' ids), their keepers (conmon), processes and the networks'
        DNS servers are not counted."""
        needle = str(self.root).encode()
        kept = [container_id.encode() for container_id in keep]
        cgroups = {f"/{CGROUP_PARENT}/{container_id}".encode() for container_id in self.ids - keep}
        found = {}
        for pid in _pids():
            if pid == os.getpid():
                continue
            command = read_file(f"/proc/{pid}/cmdline")
            membership = read_file(f"/proc/{pid}/cgroup")
            in_cgroup = any(line.split(b":", 2)[-1] in cgroups for line in membership.splitlines())
            allowed = any(i in command for i in kept) or (bool(keep) and b"/networks/" in command)
            if (needle in command and not allowed) or in_cgroup:
                found[pid] = command.replace(b"\0", b" ").decode(errors="replace").strip()
        return found

    def rules(self) -> list[str]:
        owners = self.ids | self.bridges
        return [f"{table}: {line}" for table, line in _iptables_rules() if _owners_in(line) & owners]

    def links(self) -> list[str]:
        names = os.listdir("/sys/class/net")
        veths = {f"rcv{container_id[:9]}" for container_id in self.ids}
        return sorted(name for name in names if name in self.bridges or name[:12] in veths)

    def namespaces(self) -> list[str]:
        return sorted(
            name
            for container_id in self.ids
            if (networks.NETNS_DIR / (name := networks.netns_name(container_id))).exists()
        )

    def state(self, keep: Iterable[str] = ()) -> list[str]:
        """Container and runtime state directories of ids not in ``keep``."""
        kept = set(keep)
        left = []
        for folder in ("containers", "runtime"):
            with contextlib.suppress(OSError):
                left += [f"{folder}/{e}" for e in sorted(os.listdir(self.root / folder)) if e not in kept]
        return left

    def found(self, keep: Iterable[str] = ()) -> dict[str, list[str]]:
        """Everything of this root still on the host, by kind. ``keep`` are the ids of containers
        that should exist (the running ones): their processes, rootfs mounts, network, cgroups and
        state are allowed, and so are the networks' bridges, rules and DNS servers."""
        kept = set(keep)
        self.note()
        gone = Traces(self.root, self.ids - kept, set() if kept else self.bridges)
        allowed_mounts = {str(self.root / "containers" / i / "rootfs") for i in kept}
        report = {
            "processes": [f"{pid}: {cmd}" for pid, cmd in sorted(self.processes(frozenset(kept)).items())],
            "mounts": [os.path.relpath(p, self.root) for p in _mount_points(self.root) if p not in allowed_mounts],
            "netns": gone.namespaces(),
            "links": gone.links(),
            "iptables": gone.rules(),
            "cgroups": [str(p) for i in sorted(gone.ids) for p in cgroup_dirs(i)],
            "state": self.state(kept),
        }
        return {kind: items for kind, items in report.items() if items}

    def settled(self, keep: Iterable[str] = (), *, timeout: float = SETTLE) -> dict[str, list[str]]:
        """:meth:`found`, once the root's processes are gone or ``timeout`` passed: helpers that
        end by themselves (a restarter told its container went away) are not strays, but one
        still running after the bound is."""
        last: dict[str, list[str]] = {}

        def quiet() -> bool:
            nonlocal last
            last = self.found(keep)
            return "processes" not in last

        with contextlib.suppress(AssertionError):
            polling.eventually(quiet, timeout=timeout, interval=0.2, what="the root's processes to end")
        return last

    def sweep(self) -> None:
        """Remove everything :meth:`found` would report, by name and id (the test's own cleanup)."""
        self.note()
        for container_id in sorted(self.ids):
            for path in cgroup_dirs(container_id):
                for member in read_file(str(path / "cgroup.procs")).split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(member), signal.SIGKILL)
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for point in sorted(_mount_points(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for name in self.namespaces():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        for link in self.links():
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
        owners = self.ids | self.bridges
        for table, line in _iptables_rules():
            if line.startswith("-A ") and _owners_in(line) & owners:
                spec = [part.strip('"') for part in line.split()[1:]]
                subprocess.run(["iptables", "-w", "5", "-t", table, "-D", *spec], capture_output=True, check=False)
        for container_id in sorted(self.ids):
            for path in cgroup_dirs(container_id):
                with contextlib.suppress(OSError):
                    path.rmdir()


def describe(found: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{kind}: {', '.join(items[:6])}{' …' if len(items) > 6 else ''}" for kind, items in found.items())


def store_problems(root: Path) -> list[str]:
    """What is wrong in the image store under ``root`` (empty when it verifies)."""
    problems = []
    blobs = root / "content" / "blobs" / "sha256"
    names = sorted(os.listdir(blobs)) if blobs.is_dir() else []
    for name in names:
        if hashlib.sha256((blobs / name).read_bytes()).hexdigest() != name:
            problems.append(f"blob {name[:12]} does not hash to its name")
    index = root / "images.json"
    data = json.loads(index.read_text()) if index.exists() else {"images": {}}
    snapshotter = snapshots.Snapshotter(root / "snapshots")
    for image_id, record in data.get("images", {}).items():
        for blob in [image_id, *record.get("blobs", []), *(layer["digest"] for layer in record.get("layers", []))]:
            if blob.split(":", 1)[1] not in names:
                problems.append(f"image {image_id[7:19]} lacks blob {blob[7:19]}")
        for layer in record.get("layers", []):
            snapshot = snapshotter.get(layer["chain_id"])
            if snapshot is None or not snapshotter.path(snapshot).is_dir():
                problems.append(f"image {image_id[7:19]} lacks snapshot {layer['chain_id'][7:19]}")
    return problems


def partial_problems(root: Path, blobs: Mapping[str, bytes]) -> list[str]:
    """Partial downloads that are not a prefix of the true blob (``blobs``: digest → bytes)."""
    ingest = root / "content" / "ingest"
    problems = []
    for partial in sorted(ingest.glob("*.partial")) if ingest.is_dir() else []:
        truth = blobs.get("sha256:" + partial.name.removesuffix(".partial"))
        data = partial.read_bytes()
        if truth is None or not truth.startswith(data):
            problems.append(f"partial download {partial.name[:12]} is not a prefix of the blob it names")
    return problems


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
