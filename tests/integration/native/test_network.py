"""Native bridge networks: addresses, name resolution, published ports, isolation, cleanup.

Traffic stays on this machine: between containers the test created, and to 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from reconciler import errors, manifests, plans
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import networks
from tests.contract import suite
from tests.support.polling import eventually


def network(engine: native_engine.NativeEngine, name: str, **spec: object) -> None:
    engine.create_network(
        plans.NetworkRequest(name, manifests.NetworkSpec.model_validate(spec), suite.labels("net", "Network"))
    )


def run(engine: native_engine.NativeEngine, image: str, name: str, command: str, **spec: object) -> None:
    engine.pull_image(image)
    engine.create_container(suite.container_request(name, image, command=["sh", "-c", command], **spec))
    engine.start_container(name)


def exec_ok(engine: native_engine.NativeEngine, name: str, command: str) -> str:
    result = engine.exec(name, ["sh", "-c", command], timeout=20)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout.decode()


@pytest.mark.integration
def test_containers_resolve_each_other_by_name_and_alias(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    network(engine, f"{prefix}net", subnet="10.231.77.0/24")
    run(
        engine,
        image,
        f"{prefix}a",
        "sleep 60",
        networks=[{"name": f"{prefix}net", "aliases": ["db"], "ipv4Address": "10.231.77.10"}],
    )
    run(engine, image, f"{prefix}b", "sleep 60", networks=[{"name": f"{prefix}net"}])
    assert "10.231.77.10" in exec_ok(engine, f"{prefix}a", "ip -4 addr show eth0")
    assert exec_ok(engine, f"{prefix}b", f"nslookup {prefix}a 10.231.77.1").count("10.231.77.10") >= 1
    assert "10.231.77.10" in exec_ok(engine, f"{prefix}b", "nslookup db")  # via resolv.conf
    exec_ok(engine, f"{prefix}b", "ping -c 1 -W 2 db")
    unknown = engine.exec(f"{prefix}b", ["nslookup", "example.org"], timeout=20)
    assert unknown.exit_code != 0  # forwarded to the fixture's upstream, where nothing listens
    assert engine.observe().networks[f"{prefix}net"].subnet == "10.231.77.0/24"
    assert engine.observe().containers[f"{prefix}a"].networks == (f"{prefix}net",)


@pytest.mark.integration
def test_published_port_answers_on_localhost(
    engine: native_engine.NativeEngine, image: str, prefix: str, tmp_path: Path
) -> None:
    port = 20000 + int(prefix[1:5], 16) % 20000
    network(engine, f"{prefix}web")
    run(engine, image, f"{prefix}httpd", "mkdir -p /www && echo hello-native > /www/index.html && exec httpd -f -p 8080 -h /www",
        networks=[{"name": f"{prefix}web"}], ports=[{"containerPort": 8080, "hostPort": port, "hostIP": "127.0.0.1"}])  # fmt: skip

    def fetch() -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return bytes(response.read())

    assert eventually(fetch, what="an answer on the published port") == b"hello-native\n"
    # The same host port cannot be published twice.
    engine.pull_image(image)
    with pytest.raises(errors.Conflict, match=f"host port {port}/tcp is already published"):
        engine.create_container(suite.container_request(f"{prefix}twin", image, networks=[{"name": f"{prefix}web"}],
                                                        ports=[{"containerPort": 80, "hostPort": port}]))  # fmt: skip


@pytest.mark.integration
def test_networks_are_isolated_and_internal_has_no_route_out(
    engine: native_engine.NativeEngine, image: str, prefix: str
) -> None:
    network(engine, f"{prefix}one", subnet="10.231.78.0/24")
    network(engine, f"{prefix}two", subnet="10.231.79.0/24", internal=True)
    run(engine, image, f"{prefix}x", "sleep 60", networks=[{"name": f"{prefix}one", "ipv4Address": "10.231.78.5"}])
    run(engine, image, f"{prefix}y", "sleep 60", networks=[{"name": f"{prefix}two"}])
    blocked = engine.exec(f"{prefix}y", ["ping", "-c", "1", "-W", "1", "10.231.78.5"], timeout=20)
    assert blocked.exit_code != 0
    assert "default" not in exec_ok(engine, f"{prefix}y", "ip route")
    assert "default via 10.231.78.1" in exec_ok(engine, f"{prefix}x", "ip route")


@pytest.mark.integration
def test_removal_leaves_no_netns_veth_or_rule(engine: native_engine.NativeEngine, image: str, prefix: str) -> None:
    network(engine, f"{prefix}gone")
    recorded = engine.networks.get(f"{prefix}gone")
    assert recorded is not None
    bridge = recorded.bridge
    run(engine, image, f"{prefix}c", "sleep 60", networks=[{"name": f"{prefix}gone"}],
        ports=[{"containerPort": 80, "hostPort": 20000 + int(prefix[1:5], 16) % 20000 + 1, "hostIP": "127.0.0.1"}])  # fmt: skip
    container_id = engine.observe().containers[f"{prefix}c"].container_id
    with pytest.raises(errors.RuntimeFailed, match="in use"):
        engine.remove_network(f"{prefix}gone")
    engine.remove_container(f"{prefix}c")
    engine.remove_network(f"{prefix}gone")
    assert not Path(networks.netns_path(container_id)).exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"rcv{container_id[:9]}" not in links and bridge not in links
    for table in ("filter", "nat"):
        rules = subprocess.run(
            ["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=True
        ).stdout
        assert container_id not in rules and f"rc:{bridge}" not in rules and f"rc:{prefix}gone" not in rules


def _rules() -> str:
    return "".join(
        subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        for table in ("filter", "nat")
    )


@pytest.mark.integration
def test_two_roots_each_get_their_own_bridge_for_the_same_network_name(
    engine: native_engine.NativeEngine, prefix: str, tmp_path: Path
) -> None:
    """Bridge names (and the firewall rules they own) are unique per root: removing one root's
    network leaves the other's bridge and rules in place."""
    other = native_engine.NativeEngine(tmp_path / "other-root")
    try:
        network(engine, f"{prefix}shared")
        network(other, f"{prefix}shared")
        mine, theirs = engine.networks.get(f"{prefix}shared"), other.networks.get(f"{prefix}shared")
        assert mine is not None and theirs is not None
        assert mine.bridge != theirs.bridge and len(mine.bridge) <= 15 and len(theirs.bridge) <= 15
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        assert f" {mine.bridge}:" in links and f" {theirs.bridge}:" in links
        assert mine.subnet != theirs.subnet, "the second root's subnet avoids the first one's bridge route"
        engine.remove_network(f"{prefix}shared")
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        assert f" {mine.bridge}:" not in links and f" {theirs.bridge}:" in links
        rules = _rules()
        assert f"rc:{mine.bridge}" not in rules and f"rc:{theirs.bridge}" in rules
    finally:
        for leftover in other.networks.all():
            other.remove_network(leftover.name)
        other.close()
    assert f"rc:{theirs.bridge}" not in _rules()


@pytest.mark.integration
def test_removed_network_leaves_no_folder(engine: native_engine.NativeEngine, prefix: str) -> None:
    """Its DNS server's files (pid, upstreams) went with it; they kept the folder, one per network
    ever removed, and the bridge sweep reads a folder as a network still there."""
    network(engine, f"{prefix}net")
    folder = engine.networks.root / f"{prefix}net"
    assert (folder / "network.json").exists()
    engine.remove_network(f"{prefix}net")
    assert not folder.exists(), sorted(path.name for path in folder.iterdir())
