"""The engine contract suite: every engine (memory, docker, native) must pass these tests.

A backend's test module subclasses :class:`EngineContract` and provides three fixtures:

* ``engine``: a fresh engine instance (closed by the fixture afterwards);
* ``image``: a reference the engine can pull, whose image runs ``sleep`` (busybox);
* ``prefix``: a unique name prefix, so that runs in parallel never share an object; the fixture
  removes every object whose name starts with it when the test ends.

The tests speak only through the ``Engine`` protocol and the request types, so a pass here means
the planner and executor can rely on the engine's idempotency and ownership rules.
"""

from __future__ import annotations

import pytest

from reconciler import engine as engine_mod
from reconciler import errors, manifests, observed, plans


def labels(stack: str, kind: str, spec_hash: str = "v1:sha256:test") -> dict[str, str]:
    return {observed.LABEL_STACK: stack, observed.LABEL_KIND: kind, observed.LABEL_HASH: spec_hash}


def container_request(name: str, image: str, *, stack: str = "contract", **spec: object) -> plans.ContainerRequest:
    spec_model = manifests.ContainerSpec.model_validate({"image": image, "command": ["sleep", "300"], **spec})
    return plans.ContainerRequest(
        name=name, spec=spec_model, env={"CONTRACT": "yes"},
        labels={**labels(stack, "Container"), "team": "contract"},
    )  # fmt: skip


class EngineContract:
    """Idempotency, ownership and label rules of ``reconciler.engine.Engine``."""

    def test_is_an_engine(self, engine: engine_mod.Engine) -> None:
        assert isinstance(engine, engine_mod.Engine)

    def test_pull_returns_a_stable_image_id(self, engine: engine_mod.Engine, image: str) -> None:
        first = engine.pull_image(image, policy="IfNotPresent")
        again = engine.pull_image(image, policy="IfNotPresent")
        assert first == again and first
        assert engine.observe(images=[image]).images[image] == first

    def test_pull_of_unknown_image_is_not_found(self, engine: engine_mod.Engine, image: str) -> None:
        missing = image.rsplit(":", 1)[0] + ":does-not-exist"
        with pytest.raises(errors.NotFound):
            engine.pull_image(missing, policy="Always")
        assert engine.observe(images=[missing]).images[missing] is None

    def test_network_create_is_idempotent_and_labels_round_trip(self, engine: engine_mod.Engine, prefix: str) -> None:
        request = plans.NetworkRequest(
            f"{prefix}net", manifests.NetworkSpec(), {**labels("contract", "Network"), "a": "b"}
        )
        engine.create_network(request)
        engine.create_network(request)
        seen = engine.observe().networks[f"{prefix}net"]
        assert {k: seen.labels[k] for k in request.labels} == dict(request.labels)
        assert seen.stack == "contract" and seen.kind == "Network"

    def test_network_owned_by_another_stack_conflicts(self, engine: engine_mod.Engine, prefix: str) -> None:
        engine.create_network(plans.NetworkRequest(f"{prefix}net", manifests.NetworkSpec(), labels("one", "Network")))
        with pytest.raises(errors.Conflict):
            engine.create_network(
                plans.NetworkRequest(f"{prefix}net", manifests.NetworkSpec(), labels("two", "Network"))
            )

    def test_volume_create_remove_idempotent(self, engine: engine_mod.Engine, prefix: str) -> None:
        request = plans.VolumeRequest(f"{prefix}vol", manifests.VolumeSpec(), labels("contract", "Volume"))
        engine.create_volume(request)
        engine.create_volume(request)
        assert f"{prefix}vol" in engine.observe().volumes
        engine.remove_volume(f"{prefix}vol")
        engine.remove_volume(f"{prefix}vol")
        assert f"{prefix}vol" not in engine.observe().volumes

    def test_volume_owned_by_another_stack_conflicts(self, engine: engine_mod.Engine, prefix: str) -> None:
        engine.create_volume(plans.VolumeRequest(f"{prefix}vol", manifests.VolumeSpec(), labels("one", "Volume")))
        with pytest.raises(errors.Conflict):
            engine.create_volume(plans.VolumeRequest(f"{prefix}vol", manifests.VolumeSpec(), labels("two", "Volume")))

    def test_removal_of_absent_objects_is_a_no_op(self, engine: engine_mod.Engine, prefix: str) -> None:
        engine.remove_container(f"{prefix}absent")
        engine.remove_network(f"{prefix}absent")
        engine.remove_volume(f"{prefix}absent")

    def test_container_lifecycle(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        request = container_request(f"{prefix}c1", image)
        container_id = engine.create_container(request)
        assert engine.create_container(request) == container_id  # idempotent
        seen = engine.observe().containers[f"{prefix}c1"]
        assert seen.container_id == container_id
        assert seen.state == "created"
        assert {k: seen.labels[k] for k in request.labels} == dict(request.labels)
        engine.start_container(f"{prefix}c1")
        engine.start_container(f"{prefix}c1")  # idempotent
        assert engine.observe().containers[f"{prefix}c1"].state == "running"
        engine.stop_container(f"{prefix}c1", timeout=1)
        engine.stop_container(f"{prefix}c1", timeout=1)  # idempotent
        stopped = engine.observe().containers[f"{prefix}c1"]
        assert stopped.state == "exited" and stopped.exit_code is not None
        engine.remove_container(f"{prefix}c1")
        engine.remove_container(f"{prefix}c1")
        assert f"{prefix}c1" not in engine.observe().containers

    def test_container_owned_by_another_stack_conflicts(
        self, engine: engine_mod.Engine, image: str, prefix: str
    ) -> None:
        engine.pull_image(image)
        engine.create_container(container_request(f"{prefix}c2", image, stack="one"))
        with pytest.raises(errors.Conflict):
            engine.create_container(container_request(f"{prefix}c2", image, stack="two"))

    def test_update_in_place_keeps_the_id(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        container_id = engine.create_container(container_request(f"{prefix}c3", image, resources={"memory": "64Mi"}))
        engine.start_container(f"{prefix}c3")
        engine.update_container(f"{prefix}c3", manifests.Resources(memory=128 * 1024 * 1024, pids=50))
        seen = engine.observe().containers[f"{prefix}c3"]
        assert seen.container_id == container_id
        assert seen.resources.memory == 128 * 1024 * 1024 and seen.resources.pids == 50

    def test_rename(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        container_id = engine.create_container(container_request(f"{prefix}c4.next", image))
        engine.rename_container(f"{prefix}c4.next", f"{prefix}c4")
        containers = engine.observe().containers
        assert containers[f"{prefix}c4"].container_id == container_id
        assert f"{prefix}c4.next" not in containers

    def test_operations_on_absent_container_are_not_found(self, engine: engine_mod.Engine, prefix: str) -> None:
        with pytest.raises(errors.NotFound):
            engine.start_container(f"{prefix}absent")

    def test_create_with_missing_network_is_not_found(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        with pytest.raises(errors.NotFound):
            engine.create_container(container_request(f"{prefix}c5", image, networks=[{"name": f"{prefix}nonet"}]))

    def test_stats_of_a_running_container(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        name = f"{prefix}c9"
        engine.create_container(container_request(name, image, resources={"memory": "64Mi"}))
        with pytest.raises(errors.RuntimeFailed, match="not running"):
            engine.stats(name)
        engine.start_container(name)
        reading = engine.stats(name)
        assert reading.pids >= 1 and reading.cpu_seconds >= 0.0
        assert 0 < reading.memory_bytes <= 64 * 1024 * 1024
        assert reading.memory_limit == 64 * 1024 * 1024
        engine.update_container(name, manifests.Resources())
        assert engine.stats(name).memory_limit is None
        with pytest.raises(errors.NotFound):
            engine.stats(f"{prefix}absent")

    def test_exec_passes_the_exit_code(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        engine.create_container(container_request(f"{prefix}c6", image))
        engine.start_container(f"{prefix}c6")
        assert engine.exec(f"{prefix}c6", ["true"]).exit_code == 0
        assert engine.exec(f"{prefix}c6", ["false"]).exit_code == 1
