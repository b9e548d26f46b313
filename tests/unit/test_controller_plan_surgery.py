"""The controller's changes to a plan: dropped steps keep the DAG consistent."""

from __future__ import annotations

from reconciler import controller, manifests, planning, plans
from tests.unit.controller_support import container_yaml


def _plan() -> plans.Plan:
    request = plans.ContainerRequest(name="web.next", spec=manifests.ContainerSpec(image="busybox"), env={}, labels={})
    steps = (
        plans.Step(1, plans.CreateContainer(request), "spec changed"),
        plans.Step(2, plans.StopContainer("web", 10.0), "spec changed", (1,)),
        plans.Step(3, plans.StartContainer("web.next"), "spec changed", (2,)),
        plans.Step(4, plans.RemoveContainer("web"), "spec changed", (3,)),
        plans.Step(5, plans.RenameContainer("web.next", "web"), "spec changed", (4,)),
        plans.Step(6, plans.StartContainer("db"), "drift: exited (1)"),
        plans.Step(7, plans.StartContainer("app"), "not found", (6,)),
    )
    changes = (
        plans.Change("Container", "web", "shop", "recreate", "spec changed"),
        plans.Change("Container", "db", "shop", "start", "drift"),
    )
    return plans.Plan(steps, changes)


def test_cascading_drop_removes_every_step_of_a_container_and_their_dependents() -> None:
    plan = planning._without(_plan(), lambda s: planning.container_of(s.action) == "web", cascade=True)
    assert [s.number for s in plan.steps] == [6, 7]
    assert [c.name for c in plan.changes] == ["db"]


def test_a_non_cascading_drop_only_unhooks_the_dependents() -> None:
    plan = planning._without(_plan(), lambda s: s.number == 6, cascade=False)
    assert [s.number for s in plan.steps] == [1, 2, 3, 4, 5, 7]
    assert next(s for s in plan.steps if s.number == 7).after == ()


def test_action_names_map_staged_containers_to_their_manifest_name() -> None:
    steps = _plan().steps
    assert {planning.container_of(s.action) for s in steps[:5]} == {"web"}
    assert controller.action_object(plans.RemoveNetwork("backend")) == "network/backend"


def test_stack_digests_ignore_formatting_and_see_policy_edits() -> None:
    a = manifests.load_text(container_yaml("web"), "shop.yaml")
    b = manifests.load_text("# a comment\n" + container_yaml("web").replace("  image:", "  image:  "), "shop.yaml")
    c = manifests.load_text(container_yaml("web", extra="restart: {policy: always}\n"), "shop.yaml")
    assert controller.stack_digests(a) == controller.stack_digests(b)
    assert controller.stack_digests(a) != controller.stack_digests(c)
