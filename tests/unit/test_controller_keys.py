"""The controller's keys for what it tracks: per-object error keys and per-stack digests.

(Moved unchanged from the former test_controller_plan_surgery.py, which now tests the planner's
options as test_planner_options.py.)
"""

from __future__ import annotations

from reconciler import controller, manifests, plans
from tests.unit.controller_support import container_yaml


def test_action_objects_name_the_manifest_object() -> None:
    request = plans.ContainerRequest(
        name="web.next", spec=manifests.container_spec_from_document({"image": "busybox"}), env={}, labels={}
    )
    assert controller.action_object(plans.CreateContainer(request)) == "container/web"
    assert controller.action_object(plans.RenameContainer("web.next", "web")) == "container/web"
    assert controller.action_object(plans.RemoveNetwork("backend")) == "network/backend"


def test_stack_digests_ignore_formatting_and_see_policy_edits() -> None:
    a = manifests.load_text(container_yaml("web"), "shop.yaml")
    b = manifests.load_text("# a comment\n" + container_yaml("web").replace("  image:", "  image:  "), "shop.yaml")
    c = manifests.load_text(container_yaml("web", extra="restart: {policy: always}\n"), "shop.yaml")
    assert controller.stack_digests(a) == controller.stack_digests(b)
    assert controller.stack_digests(a) != controller.stack_digests(c)
