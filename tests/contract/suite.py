"""The engine contract suite: every engine (memory, docker, native) must pass these tests.

A backend's test module subclasses :class:`EngineContract` and provides three fixtures:

* ``engine``: a fresh engine instance (closed by the fixture afterwards);
* ``image``: a reference the engine can pull, whose image runs ``sleep`` and ``sh`` (busybox);
* ``prefix``: a unique name prefix (the root fixture), so that runs in parallel never share an
  object; the backend's fixtures remove every object whose name starts with it afterwards.

The containers here run either ``sleep 300`` or one of :data:`SCRIPTS`, whose output and exit
code are written next to their command: an engine that runs nothing (the memory fake) is told
the same facts by its fixture, so it is held to the same observable behaviour.

The tests speak only through the ``Engine`` protocol and the request types, so a pass here means
the planner and executor can rely on the engine's idempotency, ownership, pull, event and log
rules. Nothing here sleeps to wait: waiting is polling a condition or an event.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Literal

import pytest

from reconciler import engine as engine_mod
from reconciler import errors, manifests, observed, plans
from tests.support import polling


@dataclasses.dataclass(frozen=True)
class Script:
    """A command a contract container runs, with what it prints (in order) and its exit code."""

    argv: tuple[str, ...]
    output: tuple[tuple[Literal["stdout", "stderr"], str], ...]
    exit_code: int


COUNTS = Script(
    ("sh", "-c", "echo one; echo two; echo three"), (("stdout", "one"), ("stdout", "two"), ("stdout", "three")), 0
)
COMPLAINS = Script(("sh", "-c", "echo bye >&2; exit 3"), (("stderr", "bye"),), 3)
SCRIPTS = (COUNTS, COMPLAINS)
# A registry nobody listens on (port 9, "discard", is closed on test hosts): reaching out to it
# fails with Unavailable, so NotFound proves an engine did not try.
UNREACHABLE_IMAGE = "127.0.0.1:9/contract/never-pulled:1"


def labels(stack: str, kind: str, spec_hash: str = "v1:sha256:test") -> dict[str, str]:
    return {observed.LABEL_STACK: stack, observed.LABEL_KIND: kind, observed.LABEL_HASH: spec_hash}


def container_request(name: str, image: str, *, stack: str = "contract", **spec: object) -> plans.ContainerRequest:
    spec_model = manifests.container_spec_from_document({"image": image, "command": ["sleep", "300"], **spec})
    return plans.ContainerRequest(
        name=name, spec=spec_model, env={"CONTRACT": "yes"},
        labels={**labels(stack, "Container"), "team": "contract"},
    )  # fmt: skip


class Events:
    """``engine.events`` read by a thread until :meth:`close`; what it yielded so far in :meth:`seen`."""

    def __init__(self, engine: engine_mod.Engine) -> None:
        self.stop = threading.Event()
        self._seen: list[engine_mod.Event] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(engine,), name="contract-events", daemon=True)
        self._thread.start()

    def _read(self, engine: engine_mod.Engine) -> None:
        for event in engine.events(stop=self.stop):
            with self._lock:
                self._seen.append(event)

    def seen(self, name: str) -> list[engine_mod.Event]:
        with self._lock:
            return [event for event in self._seen if event.name == name]

    def close(self) -> bool:
        """Set ``stop``; whether the stream then ended (the bound is generous, not a measurement)."""
        self.stop.set()
        self._thread.join(timeout=30)
        return not self._thread.is_alive()


def listening(engine: engine_mod.Engine, events: Events, sentinel: str) -> None:
    """Return once ``events`` is live: (re)start ``sentinel`` until a ``start`` of it comes through.

    An engine may subscribe some time after ``events()`` is first iterated and report nothing
    from before; starting a container again each round is how to know without guessing a delay.
    """

    def heard() -> bool:
        engine.stop_container(sentinel, timeout=0)
        engine.start_container(sentinel)
        return any(event.action == "start" for event in events.seen(sentinel))

    polling.eventually(heard, interval=0.2, what=f"a start event of {sentinel}")


def script_request(name: str, image: str, script: Script) -> plans.ContainerRequest:
    return container_request(name, image, command=list(script.argv))


def exited(engine: engine_mod.Engine, name: str) -> observed.ObservedContainer | None:
    container = engine.observe().containers.get(name)
    return container if container is not None and container.state == "exited" else None


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

    def test_exec_reads_the_stdin_it_is_given(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        engine.create_container(container_request(f"{prefix}c7", image))
        engine.start_container(f"{prefix}c7")
        assert engine.exec(f"{prefix}c7", ["cat"], stdin=b"line one\nline two").stdout == b"line one\nline two"
        assert engine.exec(f"{prefix}c7", ["cat"]).stdout == b""  # no stdin: an empty input, not a hang

    def test_pull_never_stays_local(self, engine: engine_mod.Engine, image: str) -> None:
        with pytest.raises(errors.NotFound):
            engine.pull_image(UNREACHABLE_IMAGE, policy="Never")
        assert engine.observe(images=[UNREACHABLE_IMAGE]).images[UNREACHABLE_IMAGE] is None
        local = engine.pull_image(image, policy="IfNotPresent")
        assert engine.pull_image(image, policy="Never") == local

    def test_removing_a_network_in_use_fails(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        network = f"{prefix}busy"
        engine.create_network(plans.NetworkRequest(network, manifests.NetworkSpec(), labels("contract", "Network")))
        engine.create_container(container_request(f"{prefix}c7", image, networks=[{"name": network}]))
        engine.start_container(f"{prefix}c7")
        with pytest.raises(errors.RuntimeFailed):
            engine.remove_network(network)
        assert network in engine.observe().networks
        engine.remove_container(f"{prefix}c7")
        engine.remove_network(network)
        assert network not in engine.observe().networks

    def test_observe_scoped_to_stacks_still_lists_other_stacks(
        self, engine: engine_mod.Engine, image: str, prefix: str
    ) -> None:
        engine.pull_image(image)
        mine = container_request(f"{prefix}c8", image, stack=f"{prefix}mine", resources={"memory": "64Mi"})
        theirs = container_request(f"{prefix}c8b", image, stack=f"{prefix}theirs")
        engine.create_container(mine)
        engine.create_container(theirs)
        containers = engine.observe(stacks={f"{prefix}mine"}).containers
        assert containers[mine.name].resources.memory == 64 * 1024 * 1024
        other = containers[theirs.name]
        assert other.name == theirs.name
        assert {key: other.labels.get(key) for key in observed.OWNER_LABELS} == {
            key: theirs.labels[key] for key in observed.OWNER_LABELS
        }
        with pytest.raises(errors.Conflict):  # which is what the owner labels are there for
            engine.create_container(container_request(theirs.name, image, stack=f"{prefix}mine"))

    def test_events_report_start_and_die_with_the_exit_code(
        self, engine: engine_mod.Engine, image: str, prefix: str
    ) -> None:
        engine.pull_image(image)
        sentinel, job = f"{prefix}ping", f"{prefix}job"
        engine.create_container(container_request(sentinel, image))
        events = Events(engine)
        try:
            listening(engine, events, sentinel)
            container_id = engine.create_container(script_request(job, image, COMPLAINS))
            engine.start_container(job)

            def died() -> list[engine_mod.Event]:
                return [event for event in events.seen(job) if event.action == "die"]

            die = polling.eventually(died, what=f"a die event of {job}")[0]
        finally:
            ended = events.close()
        assert ended, "events() went on after stop was set"
        actions = [event.action for event in events.seen(job) if event.action in ("start", "die")]
        assert actions[:2] == ["start", "die"], actions
        assert die.exit_code == COMPLAINS.exit_code and die.container_id == container_id
        assert die.stack == "contract"  # the container's owner label
        stopped = polling.eventually(lambda: exited(engine, job), what=f"{job} observed as exited")
        assert stopped.exit_code == COMPLAINS.exit_code

    def test_history_tells_what_happened_in_order_with_the_stack(
        self, engine: engine_mod.Engine, image: str, prefix: str
    ) -> None:
        assert isinstance(engine, engine_mod.RecordsHistory)
        engine.pull_image(image)
        job, stack = f"{prefix}told", f"{prefix}stack"
        container_id = engine.create_container(container_request(job, image, stack=stack, command=list(COMPLAINS.argv)))
        engine.start_container(job)
        polling.eventually(lambda: exited(engine, job), what=f"{job} to exit")
        everything = engine.history()
        assert [event.time for event in everything] == sorted(event.time for event in everything)
        mine = [event for event in everything if event.container_id == container_id]
        assert [event.action for event in mine if event.action in ("create", "start", "die")] == [
            "create",
            "start",
            "die",
        ]
        assert {event.stack for event in mine} == {stack} and {event.name for event in mine} == {job}
        die = next(event for event in mine if event.action == "die")
        assert die.exit_code == COMPLAINS.exit_code
        later = engine.history(since=die.time)
        assert die in later and all(event.time >= die.time for event in later)

    def test_logs_keep_what_a_container_printed(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        name = f"{prefix}c10"
        engine.create_container(script_request(name, image, COUNTS))
        engine.start_container(name)
        polling.eventually(lambda: exited(engine, name), what=f"{name} to exit")
        assert [(line.stream, line.text) for line in engine.logs(name)] == list(COUNTS.output)
        assert [line.text for line in engine.logs(name, tail=2)] == ["two", "three"]
        assert list(engine.logs(name, tail=0)) == []
        # Following an exited container's log ends with its last line.
        assert [line.text for line in engine.logs(name, follow=True)] == ["one", "two", "three"]

    def test_logs_tell_stderr_from_stdout(self, engine: engine_mod.Engine, image: str, prefix: str) -> None:
        engine.pull_image(image)
        name = f"{prefix}c11"
        engine.create_container(script_request(name, image, COMPLAINS))
        engine.start_container(name)
        polling.eventually(lambda: exited(engine, name), what=f"{name} to exit")
        assert [(line.stream, line.text) for line in engine.logs(name)] == list(COMPLAINS.output)
        with pytest.raises(errors.NotFound):
            list(engine.logs(f"{prefix}absent"))
