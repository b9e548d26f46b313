"""Property: for random stacks, plan → apply → plan is empty, also after random edits."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.helpers import IMAGE, apply, load, new_engine, plan_for

IMAGE_2 = "127.0.0.1:5000/test/busybox:2"


@st.composite
def stacks(draw: st.DrawFn) -> str:
    networks = draw(st.lists(st.sampled_from(["n1", "n2", "n3"]), unique=True, max_size=3))
    volumes = draw(st.lists(st.sampled_from(["v1", "v2"]), unique=True, max_size=2))
    count = draw(st.integers(0, 6))
    documents: list[dict[str, Any]] = [
        {"apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": n, "stack": "prop"},
         "spec": {"subnet": f"10.231.{i + 10}.0/24"} if draw(st.booleans()) else {}}
        for i, n in enumerate(networks)
    ] + [
        {"apiVersion": "reconciler/v1", "kind": "Volume", "metadata": {"name": v, "stack": "prop"}} for v in volumes
    ]  # fmt: skip
    for index in range(count):
        spec: dict[str, Any] = {"image": draw(st.sampled_from([IMAGE, IMAGE_2]))}
        if draw(st.booleans()):
            spec["env"] = draw(
                st.dictionaries(st.sampled_from(["A", "B", "C"]), st.sampled_from(["1", "2"]), max_size=2)
            )
        if draw(st.booleans()) and networks:
            spec["networks"] = [{"name": n} for n in draw(st.lists(st.sampled_from(networks), unique=True, min_size=1))]
        if draw(st.booleans()) and volumes:
            spec["mounts"] = [{"type": "volume", "source": draw(st.sampled_from(volumes)), "target": "/data"}]
        if index and draw(st.booleans()):
            spec["dependsOn"] = [f"c{draw(st.integers(0, index - 1))}"]
        if draw(st.booleans()):
            spec["resources"] = {"memory": draw(st.sampled_from(["64Mi", "128Mi"]))}
        if draw(st.booleans()):
            spec["ports"] = [{"containerPort": 80, "hostPort": 18000 + index}]
        spec["restart"] = {"policy": draw(st.sampled_from(["no", "always", "on-failure", "unless-stopped"]))}
        spec["minReadySeconds"] = 0  # a recreate's replacement is ready as soon as it runs
        documents.append({"apiVersion": "reconciler/v1", "kind": "Container",
                          "metadata": {"name": f"c{index}", "stack": "prop"}, "spec": spec})  # fmt: skip
    return yaml.safe_dump_all(documents) if documents else ""


@settings(max_examples=40, deadline=None)
@given(first=stacks(), second=stacks())
def test_plan_apply_plan_is_empty(first: str, second: str) -> None:
    engine = new_engine()
    for text in (first, second):
        desired = load(text or "---\n")
        if not desired.stacks:
            continue
        apply(engine, desired)
        assert plan_for(engine, desired).converged, plan_for(engine, desired).render()
        calls = len(engine.mutating_calls())
        apply(engine, desired)
        assert len(engine.mutating_calls()) == calls
