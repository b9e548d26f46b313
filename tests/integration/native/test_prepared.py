"""Prepared next runs: asked for after a die event (as the controller does when its restart policy
will start the container again), the engine readies the next run, and ``start_container`` then
only runs ``runtime start``.

Only outcomes are asserted (which process runs the new run, what is left after a give-up, a
remove, a stop or an update), never how fast: speed is measured in bench/controller.py --engine
native.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import manifests, presence
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import events, prepared, records
from tests.contract import suite
from tests.support.polling import eventually


@contextlib.contextmanager
def restarting(engine: native_engine.NativeEngine, names: Collection[str] = ()) -> Iterator[list[str]]:
    """The engine's event stream read in a thread, as the controller reads it; after the ``die``
    of a container in ``names`` (those its restart policy would start again), the next run is
    asked for, as the controller asks right after it schedules a restart. Meanwhile this test is
    the root's controller (``presence``), so the containers' own restarters stand aside."""
    with presence.announced(engine.root, None), _listening(engine, names) as actions:
        yield actions


@contextlib.contextmanager
def _listening(engine: native_engine.NativeEngine, names: Collection[str]) -> Iterator[list[str]]:
    stop = threading.Event()
    stream = events.EventStream(engine.records)
    actions: list[str] = []

    def listen() -> None:
        for event in stream.read(stop=stop):
            actions.append(f"{event.action} {event.name}")
            if event.action == "die" and event.name in names:
                engine.prepare_next_run(event.name)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert stream.first_scan_done.wait(timeout=20), "the event stream's first scan"
    try:
        yield actions
    finally:
        stop.set()
        listener.join(timeout=5)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def runs_logged(directory: Path) -> int:
    """How many runs wrote their ``run`` line into the container's log (conmon's k8s-file lines)."""
    return (directory / "container.log").read_text().count(" stdout F run\n")


def preparing(name: str) -> bool:
    """Whether the engine's background preparation of ``name``'s next run is under way."""
    return any(thread.name == prepared.thread_name(name) for thread in threading.enumerate())


def create(engine: native_engine.NativeEngine, image: str, name: str, command: str, restart: str) -> Path:
    engine.pull_image(image)
    request = suite.container_request(name, image, command=["sh", "-c", command], networkMode="none",
                                      restart={"policy": restart})  # fmt: skip
    container_id = engine.create_container(request)
    return engine.root / "containers" / container_id


def start_until_prepared(engine: native_engine.NativeEngine, name: str, directory: Path) -> dict[str, Any]:
    """Start a container whose command exits, and wait for its next run to be prepared."""
    engine.start_container(name)
    return eventually(lambda: records.read_json(directory / records.PREPARED), what="a prepared next run")


@pytest.mark.integration
def test_a_restart_starts_the_prepared_run(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    name = f"{prefix}crash"
    directory = create(engine, image, name, "echo run; sleep 0.3; exit 3", "always")
    with restarting(engine, {name}):
        before = start_until_prepared(engine, name, directory)
        assert alive(int(before["pid"])) and alive(int(before["init_pid"]))
        container = engine.observe().containers[name]
        assert container.state == "exited" and container.exit_code == 3  # nothing of the new run ran
        assert runs_logged(directory) == 1

        engine.start_container(name)

        running = records.read_json(directory / records.SUPERVISOR)
        assert running is not None and running["pid"] == before["pid"]
        assert not (directory / records.PREPARED).exists()
        assert engine.observe().containers[name].restart_count == 1
        eventually(lambda: runs_logged(directory) == 2, what="the new run")
        eventually(lambda: records.exit_of(engine.records.get(name)) is not None, what="the new run's exit")
        assert engine.observe().containers[name].exit_code == 3


@pytest.mark.integration
def test_a_prepared_run_nobody_starts_goes_away_and_the_exit_stays(
    engine: native_engine.NativeEngine, image: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's collector of remains discards it on an observe once ``PREPARED_TTL`` passed."""
    monkeypatch.setattr(prepared, "PREPARED_TTL", 0.5)
    name = f"{prefix}idle"
    directory = create(engine, image, name, "exit 4", "always")
    with restarting(engine, {name}):
        before = start_until_prepared(engine, name, directory)
        assert alive(int(before["pid"])), "a prepared run is discarded only once its time is up"

        def discarded() -> bool:
            engine.observe()
            return not alive(int(before["pid"]))

        eventually(discarded, what="the prepared run discarded once its time was up")
    assert not (directory / records.PREPARED).exists()
    assert not alive(int(before["init_pid"]))
    container = engine.observe().containers[name]
    assert container.state == "exited" and container.exit_code == 4
    engine.start_container(name)  # the ordinary way still works
    eventually(lambda: engine.observe().containers[name].restart_count == 1, what="the restart")


@pytest.mark.integration
def test_removing_a_container_with_a_prepared_run_leaves_no_process(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    name = f"{prefix}gone"
    directory = create(engine, image, name, "exit 1", "on-failure")
    with restarting(engine, {name}):
        before = start_until_prepared(engine, name, directory)
        engine.remove_container(name)
    assert not alive(int(before["pid"])) and not alive(int(before["init_pid"]))
    assert not directory.exists()
    assert engine.runtime.state(directory.name) is None


@pytest.mark.integration
def test_a_stop_or_an_update_discards_a_prepared_run(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    stopped, updated = f"{prefix}stopped", f"{prefix}updated"
    directories = {name: create(engine, image, name, "exit 1", "always") for name in (stopped, updated)}
    with restarting(engine, {stopped, updated}):
        before = {name: start_until_prepared(engine, name, directory) for name, directory in directories.items()}
        engine.stop_container(stopped, timeout=5)
        engine.update_container(updated, manifests.Resources(pids=60))
    for name, directory in directories.items():
        assert not (directory / records.PREPARED).exists(), name
        assert not alive(int(before[name]["pid"])) and not alive(int(before[name]["init_pid"])), name
        assert engine.observe().containers[name].exit_code == 1, name
    engine.start_container(updated)  # the ordinary way, with the new limits
    eventually(lambda: engine.observe().containers[updated].restart_count == 1, what="the restart")
    config = records.read_json(directories[updated] / "config.json")
    assert config is not None and config["linux"]["resources"]["pids"] == {"limit": 60}


@pytest.mark.integration
def test_nothing_is_prepared_for_a_stopped_container(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    """A stop means "stay stopped until asked to start": a request for a next run (a restart the
    controller scheduled before it saw the stop) does not prepare one."""
    name = f"{prefix}stopped"
    directory = create(engine, image, name, "trap 'exit 0' TERM; sleep 30 & wait", "always")
    with restarting(engine) as actions:
        engine.start_container(name)
        engine.stop_container(name, timeout=5)
        eventually(lambda: f"die {name}" in actions, what="the die event")
        engine.prepare_next_run(name)
        eventually(lambda: not preparing(name), what="the end of the preparation's thread")
    assert not (directory / records.PREPARED).exists()


@pytest.mark.integration
def test_reading_events_prepares_nothing(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    """``reconcile events`` reads the same events as the controller: no runtime work may follow
    from reading them, whatever the container's restart policy."""
    name = f"{prefix}cli"
    directory = create(engine, image, name, "exit 1", "always")
    with restarting(engine) as actions:
        engine.start_container(name)
        eventually(lambda: f"die {name}" in actions, what="the die event")
        assert not preparing(name)
    assert not preparing(name)
    assert not (directory / records.PREPARED).exists()
