"""Creates and starts of the native engine overlap (the engine's lock shared, the assembly lock for
what is shared, the container's own lock for its run): what they take from shared state stays
consistent. Traffic stays between the containers the test made.
"""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest

from reconciler import errors, manifests, plans
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import networks
from tests.contract import suite

WORKERS = 8


def _network(engine: native_engine.NativeEngine, name: str) -> None:
    engine.create_network(plans.NetworkRequest(name, manifests.NetworkSpec(), suite.labels("net", "Network")))


def _request(name: str, image: str, network: str, *, stack: str = "net") -> plans.ContainerRequest:
    return suite.container_request(name, image, stack=stack, command=["sleep", "600"], networks=[{"name": network}])


def _bridge_ports(engine: native_engine.NativeEngine, network: str) -> list[str]:
    recorded = engine.networks.get(network)
    assert recorded is not None
    return sorted(path.name for path in Path(f"/sys/class/net/{recorded.bridge}/brif").iterdir())


@pytest.mark.integration
def test_overlapping_creates_and_starts_on_one_network(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    engine.pull_image(image)
    _network(engine, f"{prefix}net")
    names = [f"{prefix}c{index:02d}" for index in range(12)]

    def create_and_start(name: str) -> str:
        container_id = engine.create_container(_request(name, image, f"{prefix}net"))
        engine.start_container(name)
        return container_id

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        ids = list(pool.map(create_and_start, names))

    seen = engine.observe().containers
    assert {name: seen[name].state for name in names} == dict.fromkeys(names, "running")
    folder = engine.networks.root / f"{prefix}net"
    ipam = json.loads((folder / "ipam.json").read_text())
    assert sorted(ipam.values()) == sorted(ids)  # one address each, none shared
    address_of = {owner: address for address, owner in ipam.items()}
    table = json.loads((folder / "dns.json").read_text())
    assert {name: table.get(name) for name in names} == {
        name: [address_of[container_id]] for name, container_id in zip(names, ids, strict=True)
    }
    assert len(_bridge_ports(engine, f"{prefix}net")) == len(names)
    # Each container reaches another by name through the network's DNS server.
    result = engine.exec(names[0], ["ping", "-c", "1", "-W", "3", names[-1]], timeout=20)
    assert result.exit_code == 0, result.stderr


@pytest.mark.integration
def test_concurrent_creates_of_one_name_make_one_container(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    engine.pull_image(image)
    _network(engine, f"{prefix}net")
    name = f"{prefix}one"
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        ids = set(pool.map(lambda _: engine.create_container(_request(name, image, f"{prefix}net")), range(WORKERS)))
    assert len(ids) == 1  # the same owner's create is idempotent: every caller gets the one id
    (container_id,) = ids
    assert [path.name for path in engine.records.base.iterdir()] == [container_id]
    ipam = json.loads((engine.networks.root / f"{prefix}net" / "ipam.json").read_text())
    assert list(ipam.values()) == [container_id]
    assert Path(networks.netns_path(container_id)).exists()
    assert _bridge_ports(engine, f"{prefix}net") == [f"rcv{container_id[:9]}0"]  # the others' veths gone


@pytest.mark.integration
def test_concurrent_creates_of_one_name_by_two_owners(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    engine.pull_image(image)
    _network(engine, f"{prefix}net")
    name = f"{prefix}one"
    requests = [_request(name, image, f"{prefix}net", stack=f"{prefix}s{index % 2}") for index in range(WORKERS)]

    def create(request: plans.ContainerRequest) -> str:
        try:
            return engine.create_container(request)
        except errors.Conflict:
            return "conflict"

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(create, requests))
    record = engine.records.get(name)
    winner = record.labels["reconciler.stack"]
    for request, outcome in zip(requests, outcomes, strict=True):
        expected = record.container_id if request.labels["reconciler.stack"] == winner else "conflict"
        assert outcome == expected
    assert [path.name for path in Path(engine.records.base).iterdir()] == [record.container_id]
    ipam = json.loads((engine.networks.root / f"{prefix}net" / "ipam.json").read_text())
    assert list(ipam.values()) == [record.container_id]
    assert _bridge_ports(engine, f"{prefix}net") == [f"rcv{record.container_id[:9]}0"]
