"""Each native run is kept by conmon: what the engine relies on it for, end to end (runc, a real
memory cgroup): the keeper named by the pid file is conmon, an OOM kill is reported as Docker
reports it (137 and ``oom_killed``), and conmon's exit files on ``/run`` go with the container."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import records
from tests.contract import suite
from tests.support import images
from tests.support.polling import eventually

# A shell variable of 64 MiB in a container limited to 16 MiB (the host has no swap to spill to).
HOG = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived"


def exited(engine: native_engine.NativeEngine, name: str) -> bool:
    return engine.observe().containers[name].state == "exited"


@pytest.mark.integration
def test_an_oom_kill_is_exit_137_with_oom_killed(loaded: Path, engine: native_engine.NativeEngine, prefix: str) -> None:
    name = f"{prefix}hog"
    engine.create_container(suite.container_request(
        name, images.LOCAL_BUSYBOX, command=["sh", "-c", HOG], networkMode="none", resources={"memory": "16Mi"},
    ))  # fmt: skip
    engine.start_container(name)
    keeper = records.read_json(engine.records.get(name).directory / records.SUPERVISOR)
    assert keeper is not None
    assert Path(f"/proc/{keeper['pid']}/comm").read_text().strip() == "conmon"
    eventually(lambda: exited(engine, name), what=f"{name} killed")
    container = engine.observe().containers[name]
    assert container.exit_code == 137 and container.oom_killed, container
    assert "survived" not in [line.text for line in engine.logs(name)]


@pytest.mark.integration
def test_a_plain_exit_is_not_an_oom_kill_and_removal_leaves_nothing_on_run(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str
) -> None:
    name = f"{prefix}plain"
    container_id = engine.create_container(suite.container_request(
        name, images.LOCAL_BUSYBOX, command=["sleep", "300"], networkMode="none",
    ))  # fmt: skip
    engine.start_container(name)
    engine.runtime.kill(container_id, "SIGKILL")  # from outside: PID 1 ignores signals sent from within
    eventually(lambda: exited(engine, name), what=f"{name} exiting")
    container = engine.observe().containers[name]
    assert container.exit_code == 137 and not container.oom_killed, container
    # The lasting copy beside the record; the one on /run is removed by the exit command.
    directory = engine.records.get(name).directory
    assert (directory / container_id).read_text() == "137"
    eventually(lambda: not records.keeper_folder(container_id).exists(), what="the copy on /run removed")
    engine.start_container(name)  # a new run: its folder on /run again, until it is recorded
    assert records.keeper_folder(container_id).exists()
    engine.runtime.kill(container_id, "SIGKILL")
    eventually(lambda: engine.observe().containers[name].restart_count == 1 and exited(engine, name),
               what="the second run's exit")  # fmt: skip
    engine.remove_container(name)
    assert not records.keeper_folder(container_id).exists()
    assert not directory.exists()


@pytest.mark.integration
def test_removing_a_running_container_leaves_nothing_on_run(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str
) -> None:
    name = f"{prefix}running"
    container_id = engine.create_container(suite.container_request(
        name, images.LOCAL_BUSYBOX, command=["sleep", "300"], networkMode="none", stopTimeout="0s",
    ))  # fmt: skip
    engine.start_container(name)
    keeper = records.read_json(engine.records.get(name).directory / records.SUPERVISOR)
    assert keeper is not None and records.keeper_folder(container_id).exists()
    engine.remove_container(name)
    eventually(lambda: not Path(f"/proc/{keeper['pid']}").exists(), what="the keeper's end")
    assert not records.keeper_folder(container_id).exists()
