"""The executor: DAG order, bounded parallelism, failure isolation, and zero calls when converged."""

from __future__ import annotations

import threading

from reconciler import errors, executing, plans
from tests.unit.helpers import IMAGE, apply, load, new_engine, plan_for
from tests.unit.test_planner_golden import STACK

SOLO = f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: solo, stack: shop}}
spec: {{image: {IMAGE}}}
"""


def test_applying_twice_makes_zero_mutating_calls() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    before = len(engine.mutating_calls())
    outcome = executing.execute(plan_for(engine, load(STACK)), engine)
    assert outcome.results == ()
    assert len(engine.mutating_calls()) == before


def test_a_failed_step_skips_its_dependents_but_not_independent_steps() -> None:
    engine = new_engine()
    engine.fail("create_container", "db", errors.RuntimeFailed("boom", stderr="no space left"))
    desired = load(STACK + "---\n" + SOLO)
    results = {
        (plans.describe(r.step.action)[1], plans.describe(r.step.action)[0]): r
        for r in executing.execute(plan_for(engine, desired), engine).results
    }
    assert results[("container db", "create")].status == "failed"
    assert results[("container db", "create")].error == "boom: no space left"
    assert results[("container db", "start")].status == "skipped"
    assert results[("container web", "start")].status == "skipped"  # web depends on db
    assert results[("container solo", "start")].status == "done"
    assert results[("network backend", "create")].status == "done"
    assert set(engine.containers) == {"web", "solo"}  # web was created, never started
    assert engine.containers["web"].state == "created"


def test_a_failed_apply_leaves_what_ran_before_running() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    engine.registry.pop("127.0.0.1:5000/test/busybox:2")
    outcome = executing.execute(plan_for(engine, load(STACK.replace(IMAGE, "127.0.0.1:5000/test/busybox:2"))), engine)
    assert not outcome.ok
    assert {name: c.state for name, c in engine.containers.items()} == {"db": "running", "web": "running"}


def test_independent_steps_overlap_up_to_the_bound() -> None:
    engine = new_engine()
    active, peak, overlapped = 0, 0, []
    lock = threading.Lock()
    three_at_once = threading.Event()
    original = engine.create_container

    def create_once_three_overlap(request: plans.ContainerRequest) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 3:
                three_at_once.set()
        # Each create holds its worker until three are in at once: a serial walk never gets there
        # (the first create would give up waiting), a walk beyond the bound would show a peak of 4.
        in_time = three_at_once.wait(timeout=20)
        overlapped.append(in_time)
        if not in_time:
            three_at_once.set()  # the test fails; the other creates need not wait as long
        with lock:
            active -= 1
        return original(request)

    engine.create_container = create_once_three_overlap  # type: ignore[method-assign]
    text = "---\n".join(SOLO.replace("solo", f"c{i}") for i in range(8))
    outcome = executing.execute(plan_for(engine, load(text)), engine, parallelism=3)
    assert outcome.ok
    assert overlapped == [True] * 8
    assert peak == 3


def test_unexpected_backend_exceptions_become_failed_steps() -> None:
    engine = new_engine()
    engine.fail("create_container", "solo", ValueError("a bug"))
    outcome = executing.execute(plan_for(engine, load(SOLO)), engine)
    assert [r.status for r in outcome.results] == ["done", "failed", "skipped"]
    assert outcome.results[1].error == "ValueError: a bug"
    assert outcome.summary() == "1 done, 1 failed, 1 skipped of 3 steps"
