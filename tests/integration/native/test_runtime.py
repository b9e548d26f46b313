"""The native engine runs real containers: runc, overlayfs and conmon as each run's keeper."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import engine as contract
from reconciler import errors, manifests
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import events, records
from tests.contract import suite
from tests.support.polling import eventually


def run(engine: native_engine.NativeEngine, image: str, name: str, command: str, **spec: object) -> None:
    engine.pull_image(image)
    engine.create_container(suite.container_request(name, image, command=["sh", "-c", command], **spec))
    engine.start_container(name)


def wait_exited(engine: native_engine.NativeEngine, name: str) -> int | None:
    container = eventually(
        lambda: (c := engine.observe().containers[name]).state == "exited" and c, what=f"{name} exiting"
    )
    return container.exit_code


@contextlib.contextmanager
def reading_events(
    engine: native_engine.NativeEngine, prefix: str
) -> Iterator[tuple[events.EventStream, list[contract.Event]]]:
    """The engine's event stream read in a thread, from the end of its first scan on (what
    happens after that is news, not history); the events of this test's containers."""
    stop = threading.Event()
    stream = events.EventStream(engine.records)
    received: list[contract.Event] = []

    def listen() -> None:
        for event in stream.read(stop=stop):
            if event.name.startswith(prefix):
                received.append(event)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert stream.first_scan_done.wait(timeout=20), "the event stream's first scan"
    try:
        yield stream, received
    finally:
        stop.set()
        listener.join(timeout=5)


@pytest.mark.integration
@pytest.mark.parametrize(("command", "code"), [("exit 0", 0), ("exit 3", 3), ("/nonexistent-in-script", 127)])
def test_exit_codes(engine: native_engine.NativeEngine, image: str, prefix: str, command: str, code: int) -> None:
    # Signal exits (128+N) are covered by the stop tests: a PID 1 without a handler ignores every
    # signal but SIGKILL, so only a kill from outside can end it by signal.
    run(engine, image, f"{prefix}x", command)
    assert wait_exited(engine, f"{prefix}x") == code


@pytest.mark.integration
def test_logs_env_user_and_workdir(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    run(engine, image, f"{prefix}env", "echo out $CONTRACT $GREETING; echo err >&2; pwd; id -u; exit 0",
        workingDir="/srv/app", user="1000:1000")  # fmt: skip
    assert wait_exited(engine, f"{prefix}env") == 0
    lines = [(line.stream, line.text) for line in engine.logs(f"{prefix}env")]
    assert ("stdout", "out yes hello") in lines  # the manifest's env and the image's
    assert ("stderr", "err") in lines
    assert ("stdout", "/srv/app") in lines
    assert ("stdout", "1000") in lines


@pytest.mark.integration
def test_stop_uses_the_signal_then_kills(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    # A container that exits on the stop signal ends with its own code: it was not killed.
    run(engine, image, f"{prefix}trap", "trap 'exit 42' TERM; while true; do sleep 0.1; done", stopSignal="SIGTERM")
    engine.stop_container(f"{prefix}trap", timeout=30)
    assert engine.observe().containers[f"{prefix}trap"].exit_code == 42
    # One that only notes the signal got it first, then SIGKILL (137) once the timeout was over.
    ready = "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.1; done"
    run(engine, image, f"{prefix}stubborn", ready, stopSignal="SIGTERM")
    eventually(lambda: "ready" in [line.text for line in engine.logs(f"{prefix}stubborn")], what="the trap set")
    engine.stop_container(f"{prefix}stubborn", timeout=2)
    assert engine.observe().containers[f"{prefix}stubborn"].exit_code == 137
    assert [line.text for line in engine.logs(f"{prefix}stubborn")] == ["ready", "got-term"]


@pytest.mark.integration
def test_named_volume_survives_the_container(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    from reconciler import plans

    engine.create_volume(
        plans.VolumeRequest(f"{prefix}data", manifests.VolumeSpec(), suite.labels("contract", "Volume"))
    )
    mounts_spec = [{"type": "volume", "source": f"{prefix}data", "target": "/data"}]
    run(engine, image, f"{prefix}w", "echo kept > /data/file", mounts=mounts_spec)
    wait_exited(engine, f"{prefix}w")
    engine.remove_container(f"{prefix}w")
    run(engine, image, f"{prefix}r", "cat /data/file", mounts=mounts_spec)
    wait_exited(engine, f"{prefix}r")
    assert [line.text for line in engine.logs(f"{prefix}r")] == ["kept"]
    with pytest.raises(errors.RuntimeFailed, match="in use"):
        engine.remove_volume(f"{prefix}data")


@pytest.mark.integration
def test_volumes_from_shares_volumes_and_binds_but_not_tmpfs(
    engine: native_engine.NativeEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    """As Docker's ``--volumes-from``: named volumes and binds (modes kept, transitively), never
    tmpfs; the container's own mount of a path wins; observe reports the volumes it now uses."""
    from reconciler import plans

    engine.create_volume(
        plans.VolumeRequest(f"{prefix}seed", manifests.VolumeSpec(), suite.labels("contract", "Volume"))
    )
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from the host\n")
    run(engine, image, f"{prefix}seed", "echo seeded > /data/file; echo private > /scratch/file", mounts=[
        {"type": "volume", "source": f"{prefix}seed", "target": "/data"},
        {"type": "bind", "source": str(shared), "target": "/host", "readOnly": True},
        {"type": "tmpfs", "target": "/scratch"},
    ])  # fmt: skip
    wait_exited(engine, f"{prefix}seed")
    run(engine, image, f"{prefix}middle", "true", volumesFrom=[f"{prefix}seed"])
    wait_exited(engine, f"{prefix}middle")
    reader = (
        "cat /data/file /host/note; [ -e /scratch/file ] && echo tmpfs-leaked || echo no-tmpfs; "
        "touch /host/x 2>/dev/null && echo writable || echo read-only"
    )
    run(engine, image, f"{prefix}reader", reader, volumesFrom=[f"{prefix}middle"])  # inherited twice over
    assert wait_exited(engine, f"{prefix}reader") == 0
    assert [line.text for line in engine.logs(f"{prefix}reader")] == [
        "seeded",
        "from the host",
        "no-tmpfs",
        "read-only",
    ]
    assert engine.observe().containers[f"{prefix}reader"].volumes == (f"{prefix}seed",)

    run(engine, image, f"{prefix}own", "ls /data | wc -l", volumesFrom=[f"{prefix}seed"],
        mounts=[{"type": "tmpfs", "target": "/data"}])  # fmt: skip
    wait_exited(engine, f"{prefix}own")
    assert [line.text for line in engine.logs(f"{prefix}own")] == ["0"], "the container's own /data must win"
    with pytest.raises(errors.NotFound, match="volumesFrom"):
        engine.create_container(suite.container_request(f"{prefix}orphan", image, volumesFrom=[f"{prefix}nobody"]))


@pytest.mark.integration
def test_logs_rotate_at_max_size_and_read_back_in_order(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    """conmon's rotation (k8s-file, one file): the log never outgrows maxSize × maxFiles, ``logs``
    reads the newest lines in order, and a follower keeps every line across rotations."""
    count = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); {pause}done"
    engine.pull_image(image)
    name, followed_name = f"{prefix}chatty", f"{prefix}followed"
    engine.create_container(suite.container_request(
        name, image, command=["sh", "-c", count.format(pause="")], logging={"maxSize": "2Ki", "maxFiles": 2},
    ))  # fmt: skip
    # About four rotations, far enough apart (a line each 10 ms) for a follower that looks every
    # 100 ms, even on a loaded host: it holds the file it reads, so it only loses a file that came
    # and went between two of its looks.
    engine.create_container(suite.container_request(
        followed_name, image, command=["sh", "-c", "sleep 1; " + count.format(pause="usleep 10000; ")],
        logging={"maxSize": "4Ki", "maxFiles": 1},
    ))  # fmt: skip
    engine.start_container(followed_name)
    followed: list[str] = []
    follower = threading.Thread(target=lambda: followed.extend(x.text for x in engine.logs(followed_name, follow=True)))
    follower.start()
    engine.start_container(name)
    wait_exited(engine, name)

    directory = next(p.parent for p in engine.root.glob("containers/*/container.json") if f'"{name}"' in p.read_text())
    assert sorted(p.name for p in directory.glob("container.log*")) == ["container.log"]
    assert (directory / "container.log").stat().st_size <= 2 * 2048
    kept = [line.text for line in engine.logs(name)]
    assert kept == [f"line-{i}" for i in range(400 - len(kept), 400)], "the newest lines, in order"
    assert 1 < len(kept) < 400, len(kept)
    assert [line.text for line in engine.logs(name, tail=2)] == ["line-398", "line-399"]

    wait_exited(engine, followed_name)
    follower.join(timeout=20)
    assert not follower.is_alive()
    assert followed == [f"line-{i}" for i in range(400)], "a follower must not lose lines at a rotation"
    followed_log = next(p for p in engine.root.glob("containers/*/container.log") if p.parent != directory)
    assert followed_log.stat().st_size <= 4096 and len(list(engine.logs(followed_name))) < 400, "it rotated"


@pytest.mark.integration
def test_logs_read_json_file_lines_of_an_older_keeper_and_long_lines_whole(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    """A container logged by the Python keeper before conmon has json-file lines (and rotated
    files): they are read first, then conmon's; a line longer than conmon's buffer (its parts,
    ``P``) reads back as one line."""
    name = f"{prefix}long"
    engine.pull_image(image)
    engine.create_container(suite.container_request(
        name, image, command=["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' x; echo; echo done"],
    ))  # fmt: skip
    directory = engine.records.get(name).directory
    (directory / "container.log.1").write_text('{"log":"old-1\\n","stream":"stdout","time":"2020-01-01T00:00:00Z"}\n')
    (directory / "container.log").write_text('{"log":"old-2\\n","stream":"stderr","time":"2020-01-01T00:00:01Z"}\n')
    engine.start_container(name)
    wait_exited(engine, name)
    lines = [(line.stream, line.text) for line in engine.logs(name)]
    assert lines == [("stdout", "old-1"), ("stderr", "old-2"), ("stdout", "x" * 20000), ("stdout", "done")]
    assert " stdout P " in (directory / "container.log").read_text(), "conmon split the long line"


@pytest.mark.integration
def test_read_only_rootfs_and_tmpfs(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    run(engine, image, f"{prefix}ro", "touch /x 2>/dev/null && exit 1; touch /tmp/ok && exit 0",
        readOnlyRootfs=True, mounts=[{"type": "tmpfs", "target": "/tmp"}])  # fmt: skip
    assert wait_exited(engine, f"{prefix}ro") == 0


@pytest.mark.integration
def test_die_events_arrive_when_the_process_exits(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    with reading_events(engine, prefix) as (_, received):
        run(engine, image, f"{prefix}die", "sleep 0.5; exit 7")
        eventually(lambda: any(event.action == "die" for event in received), what="the die event")
    actions = [(event.action, event.exit_code) for event in received]
    assert ("start", None) in actions and ("die", 7) in actions


def die_events(received: list[contract.Event], count: int) -> list[contract.Event]:
    """The die events received, once there are ``count`` of them (nothing before)."""
    found = [event for event in received if event.action == "die"]
    return found if len(found) >= count else []


@pytest.mark.integration
@pytest.mark.parametrize("slow_start", [False, True])
def test_a_container_that_exits_at_once_gets_start_and_die_events_stamped_with_its_exit(
    engine: native_engine.NativeEngine, image: str, prefix: str, slow_start: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its keeper is gone before the stream's next scan: the pidfd comes too late, the exit file tells.
    # With a slow `runtime start`, a scan sees the keeper before the start is recorded: still
    # one start and one die per run.
    name = f"{prefix}flash"
    with reading_events(engine, prefix) as (stream, received):
        if slow_start:
            start = engine.runtime.start

            def slow(container_id: str) -> None:
                scans = stream.scans
                # A whole scan while the keeper runs and its start is not recorded yet.
                eventually(lambda: stream.scans >= scans + 2, what="a scan during the start")
                start(container_id)

            monkeypatch.setattr(engine.runtime, "start", slow)
        for run_number in (1, 2):
            before = time.time()
            if run_number == 1:
                run(engine, image, name, "exit 3")
            else:
                engine.start_container(name)  # a restart: the same container, a new run
            dies = eventually(functools.partial(die_events, received, run_number), what=f"the die of run {run_number}")
            assert len(dies) == run_number, received
            exit_info = records.exit_of(engine.records.get(name))
            assert dies[-1].exit_code == 3 and exit_info is not None
            assert dies[-1].time == exit_info["finished_at"] and dies[-1].time >= before
    assert [event.action for event in received] == ["start", "die", "start", "die"]


@pytest.mark.integration
def test_a_new_engine_process_sees_running_and_exited_containers(root: Path, engine: native_engine.NativeEngine,
                                                                  image: str, prefix: str) -> None:  # fmt: skip
    run(engine, image, f"{prefix}live", "sleep 1; exit 5")
    later = native_engine.NativeEngine(root)  # as after a restart of the CLI or controller
    assert later.observe().containers[f"{prefix}live"].state == "running"
    assert wait_exited(later, f"{prefix}live") == 5


@pytest.mark.integration
def test_update_in_place_changes_the_cgroup(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    run(engine, image, f"{prefix}lim", "sleep 30", resources={"memory": "64Mi", "pids": 50})
    container = engine.observe().containers[f"{prefix}lim"]
    cgroup = Path("/sys/fs/cgroup/memory/reconciler") / container.container_id / "memory.limit_in_bytes"
    assert int(cgroup.read_text()) == 64 * 2**20
    engine.update_container(f"{prefix}lim", manifests.Resources(memory=128 * 2**20, pids=60))
    assert int(cgroup.read_text()) == 128 * 2**20
    after = engine.observe().containers[f"{prefix}lim"]
    assert after.container_id == container.container_id and after.resources.memory == 128 * 2**20


@pytest.mark.integration
def test_bad_command_fails_clearly(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    engine.pull_image(image)
    engine.create_container(suite.container_request(f"{prefix}bad", image, command=["/nonexistent"]))
    with pytest.raises(errors.RuntimeFailed, match="nonexistent"):
        engine.start_container(f"{prefix}bad")
    assert engine.observe().containers[f"{prefix}bad"].exit_code == 127


@pytest.mark.integration
def test_seccomp_and_capabilities_are_on_by_default(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    run(engine, image, f"{prefix}sec", "sleep 30")
    status = engine.exec(f"{prefix}sec", ["cat", "/proc/self/status"]).stdout.decode()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Seccomp"].strip() == "2"  # filter mode
    assert fields["CapEff"].strip() == "00000000a80425fb"  # Docker's 14 default capabilities
