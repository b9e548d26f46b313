"""Ctrl-C during apply and delete: no step starts after the interruption, the steps in flight
finish and are reported, a half-done recreate is completed or rolled back, the summary says
what was done and what was not, and the engine's state matches it (memory engine)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from reconciler import cli, executing, operations, planning, plans
from reconciler.backends import memory
from reconciler.cli import options
from tests.unit.helpers import IMAGE, apply, load, new_engine
from tests.unit.test_planner_golden import STACK

MANY = "".join(
    f"""---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: c{i}, stack: many}}
spec: {{image: {IMAGE}}}
"""
    for i in range(6)
)


def cancel_after(k: int) -> tuple[threading.Event, operations.OnResult]:
    """A token set once ``k`` steps have ended (0: set before anything runs)."""
    cancel = threading.Event()
    seen: list[executing.StepResult] = []
    if k == 0:
        cancel.set()

    def on_result(result: executing.StepResult) -> None:
        seen.append(result)
        if len(seen) >= k:
            cancel.set()

    return cancel, on_result


def done_names(outcome: executing.Outcome, kind: type) -> set[str]:
    done = [r.step.action for r in outcome.results if r.status == "done" and isinstance(r.step.action, kind)]
    return {a.request.name if isinstance(a, plans.CreateContainer) else a.name for a in done}  # type: ignore[attr-defined]


@pytest.mark.parametrize("k", [0, 1, 4, 9])
def test_an_interrupted_apply_starts_no_step_after_the_interruption(k: int) -> None:
    engine = new_engine()
    cancel, on_result = cancel_after(k)
    applied = operations.apply_desired(engine, load(MANY), planning.Options(), parallelism=1,
                                       on_result=on_result, cancel=cancel)  # fmt: skip
    outcome = applied.outcome
    assert len(outcome.results) == k and outcome.count("done") == k
    assert len(outcome.results) + len(outcome.not_started) == len(applied.plan.steps)
    assert outcome.interrupted and not outcome.ok
    assert f"{k} done, 0 failed, 0 skipped, {len(outcome.not_started)} not started" in outcome.summary()
    assert set(engine.containers) == done_names(outcome, plans.CreateContainer)
    running = {name for name, c in engine.containers.items() if c.state == "running"}
    assert running == done_names(outcome, plans.StartContainer)


def test_an_apply_the_interruption_did_not_catch_is_not_interrupted() -> None:
    engine = new_engine()
    applied = operations.apply_desired(engine, load(MANY), planning.Options(), parallelism=1,
                                       cancel=threading.Event())  # fmt: skip
    assert applied.outcome.ok and not applied.outcome.interrupted and "not started" not in applied.outcome.summary()


@pytest.mark.parametrize("k", [1, 3, 7])
def test_an_interrupted_delete_removes_only_what_it_reports(k: int) -> None:
    engine = new_engine()
    apply(engine, load(MANY))
    cancel, on_result = cancel_after(k)
    applied = operations.delete_stacks(engine, {"many"}, prune_volumes=False, parallelism=1,
                                       on_result=on_result, cancel=cancel)  # fmt: skip
    outcome = applied.outcome
    assert outcome.interrupted and outcome.count("done") == k
    removed = done_names(outcome, plans.RemoveContainer)
    assert set(engine.containers) == {f"c{i}" for i in range(6)} - removed
    stopped = done_names(outcome, plans.StopContainer)
    assert {n for n, c in engine.containers.items() if c.state != "running"} == stopped - removed


def recreate_interrupted_after(k: int) -> tuple[memory.MemoryEngine, operations.Applied]:
    engine = new_engine()
    apply(engine, load(STACK))
    cancel, on_result = cancel_after(k)
    applied = operations.apply_desired(engine, load(STACK.replace("FOO: a", "FOO: b")), planning.Options(),
                                       parallelism=1, on_result=on_result, cancel=cancel)  # fmt: skip
    return engine, applied


@pytest.mark.parametrize(("k", "how"), [(1, "kept running"), (2, "started again"), (3, "started again")])
def test_a_recreate_interrupted_before_the_new_container_was_ready_is_rolled_back(k: int, how: str) -> None:
    # 1: web.next created; 2: and web stopped; 3: and web.next started, not yet found ready
    engine, applied = recreate_interrupted_after(k)
    assert "web.next" not in engine.containers
    assert engine.containers["web"].state == "running"
    assert engine.containers["web"].request.env["FOO"] == "a"
    assert applied.recovered == [f"recreate of web rolled back: web.next removed, web {how}"]
    assert applied.rollbacks == []  # cut short, not failed: nothing is held back


@pytest.mark.parametrize("k", [4, 5])
def test_a_recreate_interrupted_after_the_new_container_was_ready_is_completed(k: int) -> None:
    engine, applied = recreate_interrupted_after(k)  # 4: web.next ready; 5: and web removed
    assert "web.next" not in engine.containers
    assert engine.containers["web"].state == "running"
    assert engine.containers["web"].request.env["FOO"] == "b"
    assert applied.recovered == ["recreate of web completed: the new container was ready and runs as web"]


def test_an_uninterrupted_recreate_settles_nothing() -> None:
    _, applied = recreate_interrupted_after(99)
    assert applied.outcome.ok and applied.recovered == []


def test_ctrl_c_during_apply_finishes_the_step_in_flight_and_exits_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: engine)
    create = engine.create_container

    def create_then_interrupt(request: plans.ContainerRequest) -> str:
        # A real SIGINT while the step is in flight; the handler runs on the main thread.
        os.kill(os.getpid(), signal.SIGINT)
        return create(request)

    monkeypatch.setattr(engine, "create_container", create_then_interrupt)
    (tmp_path / "many.yaml").write_text(MANY)
    assert cli.main(["apply", "-f", str(tmp_path / "many.yaml"), "--parallelism", "1"]) == 130
    captured = capsys.readouterr()
    assert "Interrupt received, finishing the steps in flight" in captured.err
    assert (
        "✓ 2. create container c0" in captured.out and "create container c1" not in captured.out.split("Applying:")[1]
    )
    assert "Interrupted: 2 done, 0 failed, 0 skipped, 11 not started of 13 steps." in captured.out
    assert set(engine.containers) == {"c0"}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_a_second_ctrl_c_exits_at_once_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.cli import apply as apply_command

    def exit_now(code: int) -> None:
        raise SystemExit(code)  # os._exit would end the test run itself

    monkeypatch.setattr(apply_command.os, "_exit", exit_now)
    with pytest.raises(SystemExit) as exited, apply_command.interruptible() as cancel:
        os.kill(os.getpid(), signal.SIGINT)
        assert cancel.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the second SIGINT did not exit")
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert "Interrupt received" in err and "Second interrupt: exiting now" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
