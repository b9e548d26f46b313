"""Compose's rollout and placement settings as the manifests' own: ``deploy.update_config.order``
→ ``strategy``, ``monitor`` → ``minReadySeconds``, ``deploy.placement.constraints`` →
``placement.constraints``, a long-form port's ``mode`` → the port's ``mode``; what has no such
meaning is refused by name (the table of refusals is in ``test_compose_refused``)."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import errors, manifests, operations, planning, plans
from reconciler.compose import loader
from tests.unit.compose_helpers import convert, spec, write
from tests.unit.helpers import IMAGE, new_engine

STACK = """
services:
  web:
    image: IMAGE
    environment: {VERSION: "VALUE"}
    ports:
      - {target: 80, published: "8080", mode: host}
      - {target: 81, published: 8081, mode: ingress}
      - "8082:82"
    deploy:
      update_config: {order: ORDER, monitor: 1m30s, failure_action: rollback, max_failure_ratio: 0}
      placement: {constraints: [node.role==worker, "node.labels.disk == ssd"]}
"""


def _file(folder: Path, order: str, value: str = "1") -> Path:
    return write(folder, "compose.yaml", STACK.replace("IMAGE", IMAGE).replace("ORDER", order).replace("VALUE", value))


def test_update_config_placement_and_port_modes_map_to_manifest_fields(tmp_path: Path) -> None:
    converted = spec(convert(_file(tmp_path / "p", "stop-first")), "p-web-1")
    assert converted["strategy"] == "stop-first"
    assert converted["minReadySeconds"] == 90.0
    assert converted["placement"] == {"constraints": ["node.role==worker", "node.labels.disk == ssd"]}
    # convert leaves defaults out: ingress is the default mode
    assert [port.get("mode", "ingress") for port in converted["ports"]] == ["host", "ingress", "ingress"]
    # The same file through the manifest models: what the engines are given.
    path = _file(tmp_path / "q", "start-first")
    desired = loader.load_sources([(str(path), path.read_text())])
    model = desired.containers["q-web-1"].spec
    assert (model.strategy, model.min_ready_seconds) == ("start-first", 90.0)
    assert model.placement.constraints == ["node.role==worker", "node.labels.disk == ssd"]
    assert [(port.container_port, port.host_port, port.mode) for port in model.ports] == [
        (80, 8080, "host"),
        (81, 8081, "ingress"),
        (82, 8082, "ingress"),
    ]


# No published port: a fixed host port the engine cannot hand over would make any replacement stop-first.
UNPUBLISHED = """
services:
  web:
    image: IMAGE
    environment: {VERSION: "VALUE"}
    deploy: {update_config: {order: ORDER, monitor: 1m30s}}
"""


def _replacement(path: Path, order: str) -> list[type]:
    """The actions of the replacement a changed environment plans, in step order."""
    engine = new_engine()
    path.write_text(UNPUBLISHED.replace("IMAGE", IMAGE).replace("ORDER", order).replace("VALUE", "1"))
    first = operations.apply_desired(
        engine, loader.load_sources([(str(path), path.read_text())]), planning.Options(), parallelism=2
    )
    assert first.outcome.ok
    path.write_text(UNPUBLISHED.replace("IMAGE", IMAGE).replace("ORDER", order).replace("VALUE", "2"))
    desired: manifests.Desired = loader.load_sources([(str(path), path.read_text())])
    plan, _ = operations.plan_desired(engine, desired, planning.Options())
    await_ready = [step.action for step in plan.steps if isinstance(step.action, plans.AwaitReady)]
    assert [(a.name, a.min_ready) for a in await_ready] == [(f"{path.parent.name}-web-1.next", 90.0)]
    return [type(step.action) for step in plan.steps if not isinstance(step.action, plans.PullImage)]


def test_the_order_compose_asks_for_is_the_order_of_the_replacement(tmp_path: Path) -> None:
    stop_first = _replacement(write(tmp_path / "s", "compose.yaml", ""), "stop-first")
    assert stop_first.index(plans.StopContainer) < stop_first.index(plans.StartContainer)
    start_first = _replacement(write(tmp_path / "t", "compose.yaml", ""), "start-first")
    assert start_first.index(plans.AwaitReady) < start_first.index(plans.StopContainer)


_SETTINGS = st.sampled_from(
    ["order", "monitor", "failure_action", "max_failure_ratio", "parallelism", "delay", "constraints",
     "preferences", "mode", "target", "published", "x-a", "1"]
)  # fmt: skip
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**30), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["start-first", "stop-first", "rollback", "pause", "10s", "1m30s", "host", "ingress"]),
    st.lists(st.text(max_size=8), max_size=3),
)  # fmt: skip
_SECTION = st.one_of(_VALUES, st.dictionaries(_SETTINGS, _VALUES, max_size=5))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    deploy=st.dictionaries(st.sampled_from(["update_config", "placement", "rollback_config", "mode", "x-b"]), _SECTION),
    ports=st.lists(_SECTION, max_size=2),
)
def test_any_rollout_placement_or_port_mode_is_mapped_or_an_error_at_its_place(
    deploy: dict[str, object], ports: list[object], tmp_path: Path
) -> None:
    """Whatever the values, a ManifestError with positions inside the file, or documents: never a traceback."""
    file = str(tmp_path / "compose.yaml")
    text = yaml.safe_dump({"services": {"web": {"image": IMAGE, "deploy": deploy, "ports": ports}}})
    try:
        loader.convert([(file, text)])
    except errors.ManifestError as exc:
        lines = text.count("\n") + 1
        for diagnostic in exc.diagnostics:
            assert diagnostic.file == file and 1 <= diagnostic.line <= lines and diagnostic.column >= 1
