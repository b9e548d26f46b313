"""``replicas: N``: NAME-1 … NAME-N, each answering NAME; scaling touches only the replicas that
change; host ports need a range; references to a replicated service (memory engine)."""

from __future__ import annotations

import textwrap

import pytest

from reconciler import errors, hashing, manifests, operations, planning
from reconciler.manifests import replicas
from tests.unit.helpers import IMAGE, new_engine


def stack(count: int, ports: str = "['127.0.0.1:8000-8009:80']") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Network
        metadata: {{name: back, stack: shop}}
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: web, stack: shop}}
        spec:
          image: {IMAGE}
          replicas: {count}
          ports: {ports}
          networks: [{{name: back, aliases: [www]}}]
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: proxy, stack: shop}}
        spec: {{image: {IMAGE}, dependsOn: [{{name: web, condition: started}}], networks: [{{name: back}}]}}
        """)


def test_replicas_are_containers_that_answer_the_service_name() -> None:
    desired = manifests.load_sources([("shop.yaml", stack(3))])
    assert sorted(desired.containers) == ["proxy", "web-1", "web-2", "web-3"]
    second = desired.containers["web-2"]
    assert second.labels[replicas.SERVICE_LABEL] == "web"
    assert second.spec.networks[0].aliases == ["web", "www"]
    assert [(p.host_ip, p.host_port, p.container_port) for p in second.spec.ports] == [("127.0.0.1", 8001, 80)]
    assert [d.name for d in desired.containers["proxy"].spec.depends_on] == ["web-1", "web-2", "web-3"]


def test_scaling_touches_only_the_replicas_that_change() -> None:
    engine = new_engine()
    apply = lambda count: operations.apply_desired(  # noqa: E731
        engine, manifests.load_sources([("shop.yaml", stack(count))]), planning.Options(), parallelism=2
    )
    assert apply(3).outcome.ok
    before = {name: c.container_id for name, c in engine.observe().containers.items()}
    up = apply(4)
    assert [(c.name, c.change) for c in up.plan.changes] == [("web-4", "create")]
    down = apply(2)
    assert sorted((c.name, c.change) for c in down.plan.changes) == [("web-3", "remove"), ("web-4", "remove")]
    after = {name: c.container_id for name, c in engine.observe().containers.items()}
    assert after == {name: before[name] for name in ("proxy", "web-1", "web-2")}, "the others were not recreated"


def test_a_single_container_keeps_its_hash_whatever_the_new_field() -> None:
    single = manifests.load_sources([("shop.yaml", stack(1, ports="[]"))]).containers["web"]
    assert "replicas" not in hashing.container_document(single)["spec"]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ("['8080:80']", '3 replicas cannot share host port 8080: publish a range of 3 ports ("8080-8082:80")'),
        ("['8080-8081:80']", "3 replicas cannot share host port 8080"),
    ],
)
def test_a_host_port_with_replicas_needs_a_range(ports: str, message: str) -> None:
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_sources([("shop.yaml", stack(3, ports=ports))])
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.line, diagnostic.column) == (11, 11) and message in diagnostic.message


def test_random_host_ports_and_zero_replicas() -> None:
    assert len(manifests.load_sources([("shop.yaml", stack(3, ports="['80']"))]).containers) == 4
    assert sorted(manifests.load_sources([("shop.yaml", stack(0, ports="[]"))]).containers) == ["proxy"]


def test_volumes_from_a_replicated_service_is_an_error() -> None:
    text = stack(2, ports="[]") + textwrap.dedent(f"""\
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: backup, stack: shop}}
        spec: {{image: {IMAGE}, volumesFrom: [web]}}
        """)
    with pytest.raises(errors.ManifestError, match="volumesFrom needs one container, and 'web' has replicas"):
        manifests.load_sources([("shop.yaml", text)])
