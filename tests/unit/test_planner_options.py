"""The planner's options as inputs to its decisions: scope, gates and restarts owned elsewhere."""

from __future__ import annotations

import textwrap
from collections.abc import Collection

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import manifests, planning, plans
from tests.unit.helpers import IMAGE, apply, load, new_engine, plan_for
from tests.unit.test_convergence_property import stacks
from tests.unit.test_planner_golden import STACK

Verdict = planning.Verdict


def steps_of(plan: plans.Plan) -> list[str]:
    return plan.render().split("Steps:\n", 1)[1].split("\n\n", 1)[0].splitlines() if plan.steps else []


def test_decisions_are_typed_verdicts_with_reasons_and_diffs() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    engine.stop_container("db")
    decisions = planning.decide(load(STACK.replace("FOO: a", "FOO: b")), engine.observe(images=[IMAGE]))
    assert decisions["db"] == planning.Decision(Verdict.START, "drift: exited (137), restart policy always")
    assert decisions["web"].verdict is Verdict.RECREATE
    assert [change.render() for change in decisions["web"].diff] == [
        "~ env.FOO: (sha256:ca978112…) → (sha256:3e23e816…)"
    ]


def test_containers_on_a_recreated_network_are_recreated_stop_first() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    changed = load(STACK.replace("10.231.5.0/24", "10.231.6.0/24").replace("memory: 64Mi", "memory: 128Mi"))
    decisions = planning.decide(changed, engine.observe(images=[IMAGE]))
    assert {name: d.verdict for name, d in decisions.items()} == {
        "db": Verdict.RECREATE_STOP_FIRST,  # the network wins over an update in place
        "web": Verdict.RECREATE_STOP_FIRST,
    }


def test_a_gated_container_gets_no_steps_and_its_dependents_start_waits_too() -> None:
    plan = plan_for(new_engine(), load(STACK), gates={"db": "waiting for cache to be healthy"})
    assert plan.render() == textwrap.dedent(
        f"""\
        Plan: 3 to create (4 steps).

          + network backend (shop): create, not found
          + volume data (shop): create, not found
          + container web (shop): create, not found

        Steps:
          1. create network backend: not found
          2. create volume data: not found
          3. pull image {IMAGE}: not present locally
          4. create container web: not found  (after 1, 3)

        Note: container db is held (waiting for cache to be healthy): create, start left for a later pass
        Note: container web: start held, it waits for a held step"""
    )


def test_gating_a_dependent_leaves_what_it_depends_on_alone() -> None:
    plan = plan_for(new_engine(), load(STACK), gates={"web": "waiting for db to be healthy"})
    assert {planning.container_of(step.action) for step in plan.steps} == {None, "db"}
    assert [change.name for change in plan.changes if change.kind == "Container"] == ["db"]
    assert plan.notes == ("container web is held (waiting for db to be healthy): create, start left for a later pass",)


def test_a_gated_recreate_holds_all_its_steps_its_staged_name_included() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    # A leftover web.next (an apply that died) is web's too: it stays until web may go ahead.
    engine.create_container(planning.container_request(load(STACK).containers["web"], name="web.next"))
    plan = plan_for(engine, load(STACK.replace("FOO: a", "FOO: b")), gates={"web": "waiting for db to be healthy"})
    assert plan.converged
    assert plan.changes == ()
    assert plan.notes == (
        "container web is held (waiting for db to be healthy): stop, remove, create, start, await, rename left "
        "for a later pass",
    )


def test_restarts_owned_elsewhere_get_no_start_and_nothing_waits_for_one() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    engine.stop_container("db")
    engine.stop_container("web")
    plan = plan_for(engine, load(STACK), restarts_elsewhere=frozenset({"db"}))
    assert steps_of(plan) == ["  1. start container web: drift: exited (137), restart policy always"]
    assert [change.name for change in plan.changes] == ["web"]
    assert plan.notes == (
        "container db is not started: drift: exited (137), restart policy always; the restart manager restarts it",
    )


def test_restarts_owned_elsewhere_do_not_hold_a_recreate() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    engine.stop_container("web")
    plan = plan_for(engine, load(STACK.replace("FOO: a", "FOO: b")), restarts_elsewhere=frozenset({"web"}))
    assert [(change.name, change.change) for change in plan.changes] == [("web", "recreate")]
    assert len(plan.steps) == 6


def test_scope_limits_pruning_to_the_stacks_named() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    other = f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: solo, stack: other}}\nspec: {{image: {IMAGE}}}\n"
    apply(engine, load(other, "other.yaml"))
    nothing = load("---\n")
    plan = plan_for(engine, nothing, scope=frozenset({"other"}))
    assert [(change.name, change.change) for change in plan.changes] == [("solo", "remove")]
    everything = plan_for(engine, nothing, scope=frozenset({"shop", "other"}), prune_volumes=True)
    assert {change.name for change in everything.changes} == {"solo", "db", "web", "backend", "data"}


def test_staged_names_map_to_their_manifest_name() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    changed = load(STACK.replace("FOO: a", "FOO: b"))
    plan = plan_for(engine, changed)
    assert plan.steps[0].action == plans.CreateContainer(
        planning.container_request(changed.containers["web"], name="web.next")
    )
    assert {planning.container_of(step.action) for step in plan.steps} == {"web"}
    assert planning.container_of(plans.RemoveNetwork("backend")) is None
    assert planning.container_of(plans.PullImage(IMAGE, "IfNotPresent")) is None


def held_recreates(desired: manifests.Desired, full: plans.Plan, gates: Collection[str]) -> set[str]:
    """``gates`` plus the containers ``full`` recreates that depend, transitively, on a gated one."""
    recreated = {change.name for change in full.changes if change.kind == "Container" and change.change == "recreate"}
    blocked, held = set(gates), set(gates)
    changed = True
    while changed:
        changed = False
        for name, container in desired.containers.items():
            if name not in blocked and blocked & set(manifests.container_dependencies(container)):
                blocked.add(name)
                held |= {name} & recreated
                changed = True
    return held


def without_held(full: plans.Plan, gates: Collection[str]) -> list[tuple[plans.Action, str, tuple[plans.Action, ...]]]:
    """The oracle: ``full`` minus the held containers' steps and every step after one of them."""
    dropped: set[int] = set()
    for step in full.steps:  # steps only wait for earlier ones, so one pass sees every chain
        if planning.container_of(step.action) in gates or dropped & set(step.after):
            dropped.add(step.number)
    actions = {step.number: step.action for step in full.steps}
    return [
        (step.action, step.reason, tuple(actions[a] for a in step.after))
        for step in full.steps
        if step.number not in dropped
    ]


@settings(max_examples=60, deadline=None)
@given(first=stacks(), second=stacks(), gated=st.sets(st.sampled_from([f"c{i}" for i in range(6)]), max_size=3))
def test_gates_leave_out_exactly_the_steps_that_would_wait_for_a_gated_container(
    first: str, second: str, gated: set[str]
) -> None:
    engine = new_engine()
    if load(first or "---\n").stacks:
        apply(engine, load(first))
    desired = load(second or "---\n")
    options = {"scope": frozenset({"prop"})}
    held = plan_for(engine, desired, gates=dict.fromkeys(gated, "waiting"), **options)
    assert [step.number for step in held.steps] == list(range(1, len(held.steps) + 1))
    actions = {step.number: step.action for step in held.steps}
    got = [(step.action, step.reason, tuple(actions[a] for a in step.after)) for step in held.steps]
    full = plan_for(engine, desired, **options)
    assert got == without_held(full, held_recreates(desired, full, gated))


def test_a_recreate_that_waits_for_a_gated_dependency_is_held_whole_and_the_old_one_keeps_running() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    changed = load(STACK.replace("FOO: a", "FOO: b"))  # web (which depends on db) changes
    plan = plan_for(engine, changed, gates={"db": "waiting for cache to be healthy"})
    assert plan.steps == ()  # neither web.next created nor web stopped: web keeps serving
    assert plan.notes == ("container web is held (waiting for db, which is held): create, stop, start, await, remove, "
                          "rename left for a later pass",)  # fmt: skip
