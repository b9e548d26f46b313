"""Restart policies and backoff on the memory engine with a fake clock: one semantics everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler import controller, engine
from reconciler.backends import memory
from tests.support.polling import eventually
from tests.unit.controller_support import IMAGE, Harness, container_yaml, wait_for_event_reader


def _restart_delays(harness: Harness, name: str, exits: int) -> list[float]:
    """Exit ``exits`` times with code 1; the delays after which the controller restarted it."""
    delays = []
    for _ in range(exits):
        harness.exit(name, 1)
        backoff = harness.row(name)["backoff"]
        assert isinstance(backoff, dict)
        wait = backoff["nextRestartIn"]
        if wait is None:
            break
        harness.advance(wait * 0.99)
        assert harness.engine.containers[name].state == "exited", "no restart before the backoff"
        harness.advance(wait * 0.01 + 1e-9)
        assert harness.engine.containers[name].state == "running"
        delays.append(wait)
    return delays


def test_on_failure_max_retries_3_restarts_exactly_3_times_with_growing_delays(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("job.yaml", container_yaml("job", extra="restart: {policy: on-failure, maxRetries: 3}\n"))
    harness.settle()
    assert harness.engine.containers["job"].state == "running"

    delays = _restart_delays(harness, "job", exits=4)

    assert delays == pytest.approx([0.1, 0.2, 0.4])
    assert harness.engine.containers["job"].state == "exited"
    harness.advance(3600)  # an hour later (resyncs included) it still stays exited
    assert harness.engine.containers["job"].state == "exited"
    starts = [call for call in harness.engine.mutating_calls() if call == ("start_container", "job")]
    assert len(starts) == 1 + 3
    row = harness.row("job")
    assert row["restarts"] == 3
    assert isinstance(row["backoff"], dict) and row["backoff"]["gaveUp"] is True
    assert len(harness.events("restart")) == 3 and len(harness.events("gave-up")) == 1


def test_always_keeps_restarting_with_the_configured_backoff(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    restart = "restart: {policy: always, backoff: {initial: 1s, factor: 3, max: 20s}}\n"
    harness.write("web.yaml", container_yaml("web", extra=restart))
    harness.settle()

    delays = _restart_delays(harness, "web", exits=6)

    assert delays == pytest.approx([1.0, 3.0, 9.0, 20.0, 20.0, 20.0])


def test_on_failure_does_not_restart_a_clean_exit_and_no_never_restarts(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("a.yaml", container_yaml("a", extra="restart: {policy: on-failure}\n"))
    harness.write("b.yaml", container_yaml("b"))
    harness.settle()
    harness.exit("a", 0)
    harness.exit("b", 1)
    harness.advance(120)
    assert harness.engine.containers["a"].state == "exited"
    assert harness.engine.containers["b"].state == "exited"


def test_a_container_that_ran_for_reset_after_starts_its_backoff_over(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    assert _restart_delays(harness, "web", exits=3) == pytest.approx([0.1, 0.2, 0.4])
    harness.advance(10.0)  # resetAfter (default 10 s) of running
    assert _restart_delays(harness, "web", exits=2) == pytest.approx([0.1, 0.2])


def test_docker_owned_restarts_are_left_to_the_engine(tmp_path: Path) -> None:
    harness = Harness(tmp_path, engine_restarts=True)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    harness.exit("web", 1)
    harness.advance(1.0)
    assert harness.engine.containers["web"].state == "exited", "Docker's own policy restarts this one"
    assert harness.row("web")["backoff"] is None


def test_an_exit_missed_while_the_controller_was_down_is_restarted_with_backoff(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    harness.engine.exit("web", 2)  # no event reaches the controller
    harness.advance(20.0)  # the resync finds it
    assert harness.engine.containers["web"].state == "exited"
    assert any("container web: exited (2), restart pending" in str(e["message"]) for e in harness.events("drift"))
    harness.advance(0.1)
    assert harness.engine.containers["web"].state == "running"


def test_a_restarted_controller_remembers_used_retries(tmp_path: Path) -> None:
    folder, state = tmp_path / "m", tmp_path / "state"
    folder.mkdir()
    first = Harness(folder, state_dir=state)
    first.write("job.yaml", container_yaml("job", extra="restart: {policy: on-failure, maxRetries: 2}\n"))
    first.settle()
    assert _restart_delays(first, "job", exits=3) == pytest.approx([0.1, 0.2])
    second = Harness(folder, state_dir=state, target=first.engine)
    second.settle()
    second.advance(120)
    assert first.engine.containers["job"].state == "exited"
    assert second.row("job")["restarts"] == 2


def test_an_exit_missed_after_a_restart_is_still_restarted(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    assert _restart_delays(harness, "web", exits=1) == pytest.approx([0.1])
    harness.engine.exit("web", 1)  # this exit's event is lost
    harness.advance(20.0)  # the resync sees it exited and schedules the restart with backoff
    harness.advance(0.2)
    assert harness.engine.containers["web"].state == "running"


def test_threaded_the_die_event_drives_the_restart(tmp_path: Path) -> None:
    """The real wiring: worker threads, the timer and the engine-event reader (real clock)."""
    harness = Harness(tmp_path)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always, backoff: {initial: 10ms}}\n"))
    ctl = controller.Controller(harness.engine, tmp_path, relist_interval=20.0, resync_interval=3600.0)
    ctl.start()
    try:
        eventually(lambda: "web" in harness.engine.containers, timeout=5.0, what="web created")
        wait_for_event_reader(ctl, harness.engine)
        harness.engine.exit("web", 1)
        eventually(lambda: harness.engine.containers["web"].state == "running", timeout=5.0, what="web restarted")
        kinds = lambda: [e["kind"] for e in ctl.events_since() if e["kind"] in ("exit", "restart")]  # noqa: E731
        eventually(lambda: kinds() == ["exit", "restart"], timeout=5.0, what="one exit, one restart")
    finally:
        ctl.stop()


class PreparingEngine(memory.MemoryEngine):
    """A memory engine that can prepare next runs, and records when it was asked to."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.prepared: list[str] = []

    def prepare_next_run(self, name: str) -> None:
        self.prepared.append(name)


def test_the_next_run_is_prepared_exactly_when_the_policy_will_restart(tmp_path: Path) -> None:
    target = PreparingEngine(images={IMAGE: "sha256:" + "ab" * 32})
    assert isinstance(target, engine.PreparesRuns)
    harness = Harness(tmp_path, target=target)
    target.clock = harness.clock.wall
    harness.write("a.yaml", container_yaml("always", extra="restart: {policy: always}\n"))
    harness.write("b.yaml", container_yaml("never"))
    harness.write("c.yaml", container_yaml("job", extra="restart: {policy: on-failure, maxRetries: 1}\n"))
    harness.write("d.yaml", container_yaml("clean", extra="restart: {policy: on-failure}\n"))
    harness.settle()

    harness.exit("always", 0)
    harness.exit("never", 1)
    harness.exit("clean", 0)
    harness.exit("job", 1)
    assert target.prepared == ["always", "job"], "asked at once, during the backoff"
    harness.advance(0.1)
    assert harness.engine.containers["job"].state == "running"
    harness.exit("job", 1)  # maxRetries reached: no restart, so nothing to prepare
    harness.advance(60)
    assert harness.engine.containers["job"].state == "exited"
    assert target.prepared == ["always", "job"]


def test_a_container_removed_while_its_restart_is_pending_is_created_again(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    harness.exit("web", 1)
    old_id = harness.engine.containers["web"].container_id
    harness.engine.remove_container("web")  # someone's `docker rm` before the backoff ran out
    harness.advance(0.1)
    assert harness.engine.containers["web"].state == "running"
    assert harness.engine.containers["web"].container_id != old_id
    assert not harness.events("error")


def test_the_backoff_counts_from_the_exit_the_engine_reports_not_from_its_delivery(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    container_id = harness.engine.containers["web"].container_id
    harness.engine.exit("web", 1)
    # The die event arrives 40 ms after the exit it reports: 60 ms of the 100 ms backoff remain.
    harness.controller.handle_event(engine.Event(harness.clock.now - 0.04, "die", "web", container_id, exit_code=1))
    harness.advance(0.059)
    assert harness.engine.containers["web"].state == "exited"
    harness.advance(0.002)
    assert harness.engine.containers["web"].state == "running"
