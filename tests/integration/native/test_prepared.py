"""Prepared next runs: while a die event is read, the engine readies the restart of a container
whose policy wants one, and ``start_container`` then only runs ``runtime start``.

Only outcomes are asserted (which process runs the new run, what is left after a give-up, a
remove or a stop), never how fast: speed is measured in bench/controller.py --engine native.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends.native import engine as native_engine
from tests.contract import suite


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s")


@contextlib.contextmanager
def reading_events(engine: native_engine.NativeEngine) -> Iterator[list[str]]:
    """The engine's event stream read in a thread, as the controller does (it triggers prepares)."""
    stop = threading.Event()
    actions: list[str] = []

    def listen() -> None:
        for event in engine.events(stop=stop):
            actions.append(f"{event.action} {event.name}")

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # the stream's first scan is over: the exits that follow are news
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


def create(engine: native_engine.NativeEngine, image: str, name: str, command: str, restart: str) -> Path:
    engine.pull_image(image)
    request = suite.container_request(name, image, command=["sh", "-c", command], networkMode="none",
                                      restart={"policy": restart})  # fmt: skip
    container_id = engine.create_container(request)
    return engine.root / "containers" / container_id


@pytest.fixture(autouse=True)
def preparing(engine: native_engine.NativeEngine) -> None:
    """The controller's engine prepares next runs (``reconcile watch`` opens it so)."""
    engine.prepare_restarts = True


def start_until_prepared(engine: native_engine.NativeEngine, name: str, directory: Path) -> dict[str, Any]:
    """Start a container whose command exits, and wait for the engine to prepare its next run."""
    engine.start_container(name)
    wait_for((directory / "prepared.json").exists, "a prepared next run after the exit")
    prepared = native_engine._read_json(directory / "prepared.json")
    assert prepared is not None
    return prepared


@pytest.mark.integration
def test_a_restart_starts_the_prepared_run(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    name = f"{prefix}crash"
    directory = create(engine, image, name, "echo run; sleep 0.3; exit 3", "always")
    with reading_events(engine):
        prepared = start_until_prepared(engine, name, directory)
        assert alive(int(prepared["pid"])) and alive(int(prepared["init_pid"]))
        container = engine.observe().containers[name]
        assert container.state == "exited" and container.exit_code == 3  # nothing of the new run ran
        assert (directory / "container.log").read_text().count('"run\\n"') == 1

        engine.start_container(name)

        running = native_engine._read_json(directory / "supervisor.pid.json")
        assert running is not None and running["pid"] == prepared["pid"]
        assert not (directory / "prepared.json").exists()
        assert engine.observe().containers[name].restart_count == 1
        wait_for(lambda: (directory / "container.log").read_text().count('"run\\n"') == 2, "the new run's output")
        wait_for((directory / "exit.json").exists, "the new run's exit")
        assert engine.observe().containers[name].exit_code == 3


@pytest.mark.integration
def test_a_prepared_run_nobody_starts_goes_away_and_the_exit_stays(
    engine: native_engine.NativeEngine, image: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native_engine, "PREPARED_TTL", 0.5)
    name = f"{prefix}idle"
    directory = create(engine, image, name, "exit 4", "always")
    with reading_events(engine):
        prepared = start_until_prepared(engine, name, directory)
        wait_for(lambda: not alive(int(prepared["pid"])), "the prepared run's supervisor giving up")
    assert not (directory / "prepared.json").exists()
    assert not alive(int(prepared["init_pid"]))
    container = engine.observe().containers[name]
    assert container.state == "exited" and container.exit_code == 4
    engine.start_container(name)  # the ordinary way still works
    wait_for(lambda: engine.observe().containers[name].restart_count == 1, "the restart")


@pytest.mark.integration
def test_removing_a_container_with_a_prepared_run_leaves_no_process(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    name = f"{prefix}gone"
    directory = create(engine, image, name, "exit 1", "on-failure")
    with reading_events(engine):
        prepared = start_until_prepared(engine, name, directory)
        engine.remove_container(name)
    assert not alive(int(prepared["pid"])) and not alive(int(prepared["init_pid"]))
    assert not directory.exists()
    assert engine.runtime.state(directory.name) is None


@pytest.mark.integration
def test_no_prepared_run_after_a_stop_a_clean_on_failure_exit_or_policy_no(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    cases = {
        f"{prefix}stopped": ("trap 'exit 0' TERM; sleep 30 & wait", "always"),
        f"{prefix}clean": ("exit 0", "on-failure"),
        f"{prefix}never": ("exit 1", "no"),
    }
    directories = {name: create(engine, image, name, command, policy) for name, (command, policy) in cases.items()}
    with reading_events(engine) as actions:
        for name in cases:
            engine.start_container(name)
        engine.stop_container(f"{prefix}stopped", timeout=5)
        wait_for(lambda: all(f"die {name}" in actions for name in cases), "the three die events")
        time.sleep(0.5)  # a prepare would have begun by now (it starts with the die event)
        assert not any((directory / "prepared.json").exists() for directory in directories.values())


@pytest.mark.integration
def test_an_engine_not_serving_the_controller_prepares_nothing(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    """``reconcile events`` without a daemon reads the same events: no runtime work may follow."""
    engine.prepare_restarts = False
    name = f"{prefix}cli"
    directory = create(engine, image, name, "exit 1", "always")
    with reading_events(engine) as actions:
        engine.start_container(name)
        wait_for(lambda: f"die {name}" in actions, "the die event")
        time.sleep(0.5)  # a prepare would have begun by now (it starts with the die event)
    assert not (directory / "prepared.json").exists()
