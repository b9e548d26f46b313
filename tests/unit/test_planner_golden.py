"""Planner golden tests: given desired and observed state, the rendered plan is exactly this."""

from __future__ import annotations

import textwrap

import pytest

from reconciler import errors, planning, plans
from tests.unit.helpers import IMAGE, apply, load, new_engine, plan_for

STACK = f"""\
apiVersion: reconciler/v1
kind: Network
metadata: {{name: backend, stack: shop}}
spec: {{subnet: 10.231.5.0/24}}
---
apiVersion: reconciler/v1
kind: Volume
metadata: {{name: data, stack: shop}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: db, stack: shop}}
spec:
  image: {IMAGE}
  networks: [{{name: backend}}]
  mounts: [{{type: volume, source: data, target: /data}}]
  resources: {{memory: 64Mi}}
  restart: {{policy: always}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: web, stack: shop}}
spec:
  image: {IMAGE}
  env: {{FOO: a}}
  ports: [{{containerPort: 80, hostPort: 8080}}]
  networks: [{{name: backend}}]
  dependsOn: [db]
  restart: {{policy: always}}
  minReadySeconds: 0
"""


def expect(plan_text: str, golden: str) -> None:
    assert plan_text == textwrap.dedent(golden).rstrip("\n")


def test_cold_plan_orders_networks_volumes_images_then_dependencies() -> None:
    engine = new_engine()
    expect(
        plan_for(engine, load(STACK)).render(),
        f"""\
        Plan: 4 to create (7 steps).

          + network backend (shop): create, not found
          + volume data (shop): create, not found
          + container db (shop): create, not found
          + container web (shop): create, not found

        Steps:
          1. create network backend: not found
          2. create volume data: not found
          3. pull image {IMAGE}: not present locally
          4. create container db: not found  (after 1, 2, 3)
          5. start container db: not found  (after 4)
          6. create container web: not found  (after 1, 3)
          7. start container web: not found  (after 5, 6)
        """,
    )


def test_second_plan_is_empty() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    plan = plan_for(engine, load(STACK))
    assert plan.converged
    expect(plan.render(), "No changes: everything is as the manifests say.")


def test_env_change_recreates_only_that_container_stop_first_for_its_fixed_host_port() -> None:
    # web publishes host port 8080: on an engine that cannot hand a port over, the old one stops
    # first, and the new one must be ready before the old one is removed.
    engine = new_engine()
    apply(engine, load(STACK))
    expect(
        plan_for(engine, load(STACK.replace("FOO: a", "FOO: b"))).render(),
        """\
        Plan: 1 to recreate (6 steps).

          ± container web (shop): recreate, spec changed: env.FOO
              ~ env.FOO: (sha256:ca978112…) → (sha256:3e23e816…)

        Steps:
          1. create container web.next: spec changed: env.FOO
          2. stop container web: spec changed: env.FOO  (after 1)
          3. start container web.next: spec changed: env.FOO  (after 2)
          4. await container web.next ready: spec changed: env.FOO  (after 3)
          5. remove container web: spec changed: env.FOO  (after 4)
          6. rename container web.next → web: spec changed: env.FOO  (after 5)
        """,
    )


def test_env_change_recreates_start_first_where_the_engine_hands_the_port_over() -> None:
    # The old container is stopped only once the new one is ready: it serves meanwhile.
    engine = new_engine()
    apply(engine, load(STACK))
    expect(
        plan_for(engine, load(STACK.replace("FOO: a", "FOO: b")), hand_over_ports=True).render(),
        """\
        Plan: 1 to recreate (6 steps).

          ± container web (shop): recreate, spec changed: env.FOO
              ~ env.FOO: (sha256:ca978112…) → (sha256:3e23e816…)

        Steps:
          1. create container web.next: spec changed: env.FOO
          2. start container web.next: spec changed: env.FOO  (after 1)
          3. await container web.next ready: spec changed: env.FOO  (after 2)
          4. stop container web: spec changed: env.FOO  (after 3)
          5. remove container web: spec changed: env.FOO  (after 4)
          6. rename container web.next → web: spec changed: env.FOO  (after 5)
        """,
    )


def test_several_field_changes_are_each_listed() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    changed = STACK.replace("FOO: a", "FOO: a, BAR: x").replace("hostPort: 8080", "hostPort: 8081")
    text = plan_for(engine, load(changed)).render()
    assert "recreate, spec changed: env.BAR, ports[0].hostPort" in text
    assert "+ env.BAR: (sha256:2d711642…)" in text  # env values show as digests
    assert "~ ports[0].hostPort: 8080 → 8081" in text


def test_memory_change_is_an_update_in_place() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    expect(
        plan_for(engine, load(STACK.replace("memory: 64Mi", "memory: 128Mi"))).render(),
        """\
        Plan: 1 to update in place (1 step).

          ~ container db (shop): update, resources changed: update in place
              ~ resources.memory: "64Mi" → "128Mi"

        Steps:
          1. update container db: resources changed: update in place
        """,
    )


def test_image_moved_recreates() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    engine.registry[IMAGE] = "sha256:" + "9" * 64
    engine.pull_image(IMAGE, policy="Always")
    text = plan_for(engine, load(STACK)).render()
    assert "± container db (shop): recreate, image changed" in text
    assert "± container web (shop): recreate, image changed" in text


def test_removed_objects_are_pruned_but_volumes_kept() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    only_network = STACK.split("---", maxsplit=1)[0]
    expect(
        plan_for(engine, load(only_network)).render(),
        """\
        Plan: 2 to remove (4 steps).

          - container db (shop): remove, orphan (not in the files given: removed)
          - container web (shop): remove, orphan (not in the files given: removed)

        Steps:
          1. stop container db: orphan (not in the files given: removed)
          2. remove container db: orphan (not in the files given: removed)  (after 1)
          3. stop container web: orphan (not in the files given: removed)
          4. remove container web: orphan (not in the files given: removed)  (after 3)

        Note: volume data (stack shop) is not in the manifests and is kept: volumes hold data; pass --prune-volumes to remove it
        """,
    )


def test_prune_volumes_removes_after_the_containers_using_them() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    plan = plan_for(engine, load(STACK.split("---", maxsplit=1)[0]), prune_volumes=True)
    assert plan.render().splitlines()[-1] == (
        "  5. remove volume data: orphan (not in the files given: removed, --prune-volumes)  (after 2)"
    )


def test_no_prune_keeps_orphans_with_a_note() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    plan = plan_for(engine, load(STACK.split("---", maxsplit=1)[0]), prune=False)
    assert plan.converged
    assert "container db is not in the manifests; kept because of --no-prune" in plan.notes


def test_pruning_is_scoped_to_the_stacks_applied() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    other = load(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: solo, stack: other}}\nspec: {{image: {IMAGE}}}\n"
    )
    plan = plan_for(engine, other)
    assert [c.name for c in plan.changes] == ["solo"]


def test_stopped_container_is_drift_and_is_started() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    engine.stop_container("web")
    expect(
        plan_for(engine, load(STACK)).render(),
        """\
        Plan: 1 to start (1 step).

          > container web (shop): start, drift: exited (137), restart policy always

        Steps:
          1. start container web: drift: exited (137), restart policy always
        """,
    )


def test_completed_one_shot_job_is_left_alone() -> None:
    engine = new_engine()
    job = f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: job}}\nspec: {{image: {IMAGE}}}\n"
    apply(engine, load(job))
    engine.exit("job", 0)
    assert plan_for(engine, load(job)).converged


def test_removed_container_is_recreated() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    engine.remove_container("web")
    plan = plan_for(engine, load(STACK))
    assert [(c.name, c.change, c.reason) for c in plan.changes] == [("web", "create", "not found")]


def test_network_change_recreates_it_and_its_containers_stop_first() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    text = plan_for(engine, load(STACK.replace("10.231.5.0/24", "10.231.6.0/24"))).render()
    lines = text.splitlines()
    assert "  ± network backend (shop): recreate, spec changed" in lines
    steps = [line.strip() for line in lines[lines.index("Steps:") + 1 :]]
    assert steps[:4] == [
        "1. stop container db: network backend is recreated",
        "2. remove container db: network backend is recreated  (after 1)",
        "3. stop container web: network backend is recreated",
        "4. remove container web: network backend is recreated  (after 3)",
    ]
    assert steps[4] == "5. remove network backend: spec changed  (after 2, 4)"
    assert steps[5] == "6. create network backend: spec changed  (after 5)"


def test_volume_spec_change_is_refused() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    changed = STACK.replace(
        "metadata: {name: data, stack: shop}",
        "metadata: {name: data, stack: shop}\nspec: {options: {type: tmpfs}}",
    )
    with pytest.raises(errors.PlanError, match="volume data: its spec changed"):
        plan_for(engine, load(changed))


def test_same_name_in_another_stack_is_a_conflict_naming_both() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    thief = (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: web, stack: other}}\nspec: {{image: {IMAGE}}}\n"
    )
    with pytest.raises(errors.PlanError, match="stack 'other' .* belongs to stack 'shop'"):
        plan_for(engine, load(thief))


def test_leftover_staged_container_is_removed_before_reuse() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    # A previous apply died after creating web.next: it is an orphan and must go first.
    engine.create_container(planning.container_request(load(STACK).containers["web"], name="web.next"))
    text = plan_for(engine, load(STACK.replace("FOO: a", "FOO: c"))).render()
    assert "remove container web.next: orphan (not in the files given: removed)" in text
    assert "create container web.next: spec changed: env.FOO  (after 2)" in text


def test_json_shape_is_stable() -> None:
    engine = new_engine()
    apply(engine, load(STACK))
    document = plan_for(engine, load(STACK.replace("FOO: a", "FOO: b"))).to_json()
    assert document["version"] == 1 and document["converged"] is False
    assert document["changes"] == [{
        "kind": "Container", "name": "web", "stack": "shop", "change": "recreate",
        "reason": "spec changed: env.FOO", "diff": [{"path": "env.FOO", "old": "(sha256:ca978112…)", "new": "(sha256:3e23e816…)"}],
    }]  # fmt: skip
    assert document["steps"][0] == {
        "number": 1, "action": "create", "target": "container web.next",
        "reason": "spec changed: env.FOO", "after": [],
    }  # fmt: skip


def test_orphans_are_stopped_with_their_own_stop_timeout() -> None:
    engine = new_engine()
    apply(
        engine,
        load(STACK.replace("  restart: {policy: always}\n---", "  restart: {policy: always}\n  stopTimeout: 2s\n---")),
    )
    plan = plan_for(engine, load(STACK.split("---", maxsplit=1)[0]))
    timeouts = {s.action.name: s.action.timeout for s in plan.steps if isinstance(s.action, plans.StopContainer)}
    assert timeouts == {"db": 2.0, "web": 10.0}
