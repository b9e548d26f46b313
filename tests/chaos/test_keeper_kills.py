"""kill -9 of a container's keeper (conmon) and of its restarter (conmon's exit command), with no
controller running: the next ``reconcile apply`` finds what they left, takes it away and
converges, and the container's run is whole (one keeper, the one its pid file names; the runtime
says ``running`` with the recorded init, the only process of the container's cgroup).

The restarter's kill points are deterministic: a copy of the restarter (the real module, run as
conmon's exit command runs it) gets SIGKILL from itself at a point of its start: ``spawned``
(conmon waits for the go), ``created`` (the run is created, ``runtime start`` not yet run),
``started`` (the run started, the record not yet saved). The ``backoff`` point is the real
restarter, started by conmon, killed by the test while it waits out the backoff.

Docker's behaviour matched: when containerd's shim dies, the container's processes are killed and
its exit recorded as 137 (128 + SIGKILL); the restart policy then applies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import records
from tests.chaos import leftovers
from tests.chaos.conftest import REPO, cli, load_busybox, run
from tests.chaos.stacks import KEEPER
from tests.support import images
from tests.support.polling import eventually

# The restarter's own command line (not the exit command's shell, whose script names it too).
RESTARTER = b"\0-m\0reconciler.backends.native.restarter\0"

# The restarter's own start, killed by itself at POINT (see the module docstring); its backoff is
# skipped (the ``backoff`` point is the real one's).
KILLED_RESTARTER = """
import os, signal, sys
from pathlib import Path
from reconciler import restarts
from reconciler.backends.native import records, restarter, runtime, supervision

point = sys.argv[4]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
restarts.restart_delay = lambda *args, **kwargs: 0.0
spawn, runtime_start, save = supervision._spawn, runtime.Runtime.start, records.Record.save
started = []
def spawned(*args):
    done = spawn(*args)
    if point == "spawned":
        die()
    return done
def start(self, container_id):
    if point == "created":
        die()
    runtime_start(self, container_id)
    started.append(container_id)
def saved(self):
    if point == "started" and started:
        die()
    save(self)
supervision._spawn, runtime.Runtime.start, records.Record.save = spawned, start, saved
restarter.restart_after_exit(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
"""


def manifest(path: Path, name: str, restart: str) -> Path:
    path.write_text(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}, stack: {name}s}}\n"
        f"spec: {{image: '{images.LOCAL_BUSYBOX}', command: [sleep, '3600'], networkMode: none, stopTimeout: 0s,"
        f" restart: {restart}}}\n"
    )
    return path


def keepers_of(directory: Path) -> list[int]:
    """conmon processes keeping the container directory (its bundle)."""
    found = []
    needle = str(directory).encode() + b"\0"
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        argv = leftovers.read_file(f"/proc/{pid}/cmdline")
        if argv.split(b"\0", 1)[0].endswith(KEEPER) and b"\0--bundle\0" + needle in argv:
            found.append(int(pid))
    return found


def restarters_of(root: Path, container_id: str) -> list[int]:
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        argv = leftovers.read_file(f"/proc/{pid}/cmdline")
        if RESTARTER in argv and str(root).encode() in argv and container_id.encode() in argv:
            found.append(int(pid))
    return found


def gone(pid: int) -> bool:
    """The process ended (a zombie nobody reaped yet counts as ended)."""
    stat = leftovers.read_file(f"/proc/{pid}/stat")
    return not stat or stat.rsplit(b")", 1)[1].split()[0] == b"Z"


def cgroup_members(container_id: str) -> set[int]:
    """Processes in the container's cgroup, in any hierarchy."""
    members: set[int] = set()
    for folder in leftovers.cgroup_dirs(container_id):
        members |= {int(pid) for pid in leftovers.read_file(str(folder / "cgroup.procs")).split()}
    return members


def whole_run(root: Path, name: str) -> str:
    """What is wrong with the container's current run ("" when it is whole; see the module docstring)."""
    engine = native_engine.NativeEngine(root)
    record = engine.records.get(name)
    keeper = records.read_json(record.directory / records.SUPERVISOR) or {}
    state = engine.runtime.state(record.container_id) or {}
    init = int((record.directory / "init.pid").read_text()) if (record.directory / "init.pid").exists() else None
    problems = []
    if keepers_of(record.directory) != [keeper.get("pid")]:
        problems.append(f"keepers {keepers_of(record.directory)}, the pid file names {keeper.get('pid')}")
    if state.get("status") != "running" or state.get("pid") != init or keeper.get("init_pid") != init:
        problems.append(f"runtime {state.get('status')} pid {state.get('pid')}, init.pid {init}, {keeper}")
    if cgroup_members(record.container_id) != {init}:
        problems.append(f"cgroup members {sorted(cgroup_members(record.container_id))}, init {init}")
    return "; ".join(problems)


def converged(root: Path, path: Path, name: str) -> str:
    """Empty once ``status`` says running and the run is whole, else what is wrong (for the message)."""
    report = json.loads(run(cli(root, "status", "-f", str(path), "-o", "json")).stdout)
    (container,) = [o for o in report["objects"] if o["kind"] == "Container"]
    if container["state"] != "running":
        return f"status says {container['state']}"
    return whole_run(root, name)


def crash(engine: native_engine.NativeEngine, name: str) -> int:
    """The container's init killed from outside (a crash); its restart count before."""
    before = engine.observe().containers[name].restart_count
    os.kill(int((engine.records.get(name).directory / "init.pid").read_text()), signal.SIGKILL)
    eventually(lambda: engine.observe().containers[name].state != "running", what=f"{name} exited")
    return before


def settle(root: Path, path: Path, name: str) -> None:
    """The next run: ``apply`` converges (a restarter started by a recorded exit may get there first)."""
    run(cli(root, "apply", "-f", str(path)))
    problem = ""

    def whole() -> bool:
        nonlocal problem
        problem = converged(root, path, name)
        return not problem

    try:
        eventually(whole, timeout=30, interval=0.3, what=f"{name} running whole")
    except AssertionError as failure:
        raise AssertionError(f"{failure}: {problem}") from None


@pytest.fixture
def loaded_root(root: Path, tmp_path: Path) -> Path:
    load_busybox(root, tmp_path)
    return root


def finish(root: Path, name: str, traces: leftovers.Traces) -> None:
    """``delete`` leaves nothing: neither on the host nor among conmon's exit folders on /run."""
    run(cli(root, "delete", "--stack", f"{name}s"))
    left = traces.settled()
    assert not left, leftovers.describe(left)
    exits = [str(records.keeper_folder(i)) for i in sorted(traces.ids) if records.keeper_folder(i).exists()]
    assert not exits, exits


@pytest.mark.integration
@pytest.mark.parametrize("point", ["backoff", "spawned", "created", "started"])
def test_kill_9_of_the_restarter_at_each_point_leaves_nothing_the_next_apply_does_not_take(
    loaded_root: Path, traces: leftovers.Traces, prefix: str, tmp_path: Path, point: str
) -> None:
    root, name = loaded_root, f"{prefix}r"
    path = manifest(tmp_path / "s.yaml", name, "{policy: always, backoff: {initial: 2s}}")
    run(cli(root, "apply", "-f", str(path)))
    traces.note()
    engine = native_engine.NativeEngine(root)
    container_id = engine.records.get(name).container_id
    crash(engine, name)
    # conmon's exit command starts the real restarter: killed in its backoff (the backoff point),
    # else replaced by the copy that kills itself at the point.
    restarter = eventually(lambda: restarters_of(root, container_id), what="the restarter conmon started")
    for pid in restarter:
        os.kill(pid, signal.SIGKILL)
    if point != "backoff":
        argv = [sys.executable, "-c", KILLED_RESTARTER, str(root), name, container_id, point]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr[-2000:])
    traces.note()
    settle(root, path, name)
    finish(root, name, traces)


@pytest.mark.integration
@pytest.mark.parametrize("policy", ["always", "no"])
def test_kill_9_of_a_running_containers_keeper_kills_its_run_and_records_137(
    loaded_root: Path, traces: leftovers.Traces, prefix: str, tmp_path: Path, policy: str
) -> None:
    """As containerd does when a shim dies: the run's processes go, its exit is 137, the restart
    policy applies (the next apply starts an ``always`` container; a ``no`` one stays exited)."""
    root, name = loaded_root, f"{prefix}k{policy}"
    path = manifest(tmp_path / "s.yaml", name, f"{{policy: '{policy}', backoff: {{initial: 100ms}}}}")
    run(cli(root, "apply", "-f", str(path)))
    traces.note()
    engine = native_engine.NativeEngine(root)
    record = engine.records.get(name)
    keeper = records.read_json(record.directory / records.SUPERVISOR)
    assert keeper is not None
    init = int(keeper["init_pid"])
    os.kill(int(keeper["pid"]), signal.SIGKILL)
    # Reaped, not only ended: until then its pid and start time say it lives.
    eventually(lambda: not Path(f"/proc/{keeper['pid']}").exists(), what="the keeper reaped")
    status = json.loads(run(cli(root, "status", "-f", str(path), "-o", "json")).stdout)
    (container,) = [o for o in status["objects"] if o["kind"] == "Container"]
    if policy == "no":
        assert container["state"] == "exited" and container["exitCode"] == 137, container
        eventually(lambda: gone(init), what="the keeperless run's init killed")
        eventually(lambda: not cgroup_members(record.container_id), what="the run's cgroup empty")
        run(cli(root, "apply", "-f", str(path)))
        assert engine.observe().containers[name].state == "exited"
    else:
        settle(root, path, name)
        assert gone(init)
    finish(root, name, traces)
