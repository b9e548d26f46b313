"""Native networks against a hostile neighbour (issue 10, findings 3, 4, 14 and part of 15).

* A client on a bridge that routes ``127.0.0.1`` through the gateway (what a container with
  ``CAP_NET_RAW`` can do with a hand-made frame) must not reach the host's loopback services.
* A neighbour host that routes a network's subnet through this host must reach a container only
  through a port published on all addresses; an unpublished port, a port published on
  ``127.0.0.1`` only and the container's address directly stay closed, even on a host whose
  ``FORWARD`` accepts everything (the test adds that accept for its own interface only).
* A network's DNS server answers containers of its own network only.
* A network's state files are written durably (file and directory fsynced).

The "clients" are network namespaces and veth pairs the test creates (named with its prefix) and
removes at the end, with the one ``FORWARD`` rule it adds. Traffic goes only to 127.0.0.1, to
those namespaces and to the test's containers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import manifests, plans
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import firewall, network_services, networks
from tests.contract import suite
from tests.support import images
from tests.support.polling import eventually

IMAGE = images.LOCAL_BUSYBOX

# Run inside a client namespace: a TCP connection (with an HTTP GET), UDP datagrams or a DNS query;
# prints what came back, or "refused"/"unreachable"/"silent" (exit status 0 either way, so that a
# failed setup is visible as a failure).
CLIENT = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "udp":
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for payload in sys.argv[4:]:
        target, _, data = payload.partition("=")
        address, _, number = target.rpartition(":")
        sock.sendto(data.encode(), (address, int(number)))
    print("sent")
    sys.exit(0)
if kind == "dns":  # one A query for "x", and whether anything came back in time
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(float(sys.argv[4]))
    sock.sendto(bytes.fromhex("12340100000100000000000001780000010001"), (host, port))
    try:
        print("answered", sock.recv(512))
    except (TimeoutError, socket.timeout):
        print("silent")
    sys.exit(0)
try:
    conn = socket.create_connection((host, port), timeout=float(sys.argv[4]))
    conn.settimeout(5)
    conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    received = b""
    while chunk := conn.recv(4096):  # HTTP/1.0: the server closes after its reply
        received += chunk
    print(received.decode(errors="replace") or "connected")
except (TimeoutError, socket.timeout):
    print("unreachable")
except OSError as exc:
    print("refused", exc)
"""


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def client(namespace: str, *args: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", CLIENT, *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def network(engine: native_engine.NativeEngine, name: str, **spec: object) -> networks.Network:
    engine.create_network(
        plans.NetworkRequest(name, manifests.NetworkSpec.model_validate(spec), suite.labels("net", "Network"))
    )
    created = engine.networks.get(name)
    assert created is not None
    return created


def run(engine: native_engine.NativeEngine, name: str, command: str, **spec: object) -> str:
    spec["command"] = ["sh", "-c", command]
    engine.create_container(suite.container_request(name, IMAGE, **spec))
    engine.start_container(name)
    return engine.observe().containers[name].container_id


def address_of(engine: native_engine.NativeEngine, name: str) -> str:
    record = engine.records.get(name)
    assert record is not None
    return str(record.data["attachments"][0]["address"])


class Namespaces:
    """The namespaces, links and rules a test made; :meth:`close` removes them by name."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.rules: list[list[str]] = []

    def pair(self, suffix: str) -> tuple[str, str, str]:
        """A new namespace ``<prefix><suffix>`` and a veth pair: (namespace, host end, inner end)."""
        namespace, host_end, inner = f"{self.prefix}{suffix}", f"{self.prefix}{suffix}h", f"{self.prefix}{suffix}i"
        ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        ip("link", "add", host_end, "type", "veth", "peer", "name", inner)
        self.links.append(host_end)
        ip("link", "set", inner, "netns", namespace)
        ip("-n", namespace, "link", "set", inner, "up")
        return namespace, host_end, inner

    def iptables(self, *rule: str) -> None:
        """Append ``rule`` (``-t table CHAIN ...``) now and delete it at :meth:`close`."""
        table, chain, spec = rule[:2], rule[2], [*rule[3:], "-m", "comment", "--comment", f"{self.prefix}test"]
        subprocess.run(["iptables", "-w", "5", *table, "-A", chain, *spec], check=True)
        self.rules.append([*table, chain, *spec])

    def close(self) -> None:
        for rule in self.rules:
            subprocess.run(["iptables", "-w", "5", *rule[:2], "-D", *rule[2:]], check=False)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


@pytest.fixture
def spaces(prefix: str) -> Iterator[Namespaces]:
    made = Namespaces(prefix)
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def loopback_servers() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A UDP and a TCP server on the host's 127.0.0.1 (ephemeral ports), non-blocking."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(8)
        udp.setblocking(False)
        tcp.setblocking(False)
        yield udp, tcp
    finally:
        udp.close()
        tcp.close()


@pytest.mark.integration
def test_a_bridge_client_cannot_reach_the_hosts_loopback_services(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, spaces: Namespaces
) -> None:
    """CVE-2020-8558: a packet for 127.0.0.1 sent to the gateway (a route in the client's namespace
    here; a raw frame from a container with CAP_NET_RAW does the same) is dropped, UDP and TCP."""
    net = network(engine, f"{prefix}loc")
    subnet = ipaddress.IPv4Network(net.subnet)
    namespace, host_end, inner = spaces.pair("l")
    ip("link", "set", host_end, "master", net.bridge, "up")
    ip("-n", namespace, "addr", "add", f"{subnet[-2]}/{subnet.prefixlen}", "dev", inner)
    # The client's loopback stays down (so it does not answer for 127.0.0.1): route 127.0.0.1 out.
    subprocess.run(["ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1",
                    f"net.ipv4.conf.{inner}.route_localnet=1"], check=True)  # fmt: skip
    ip("-n", namespace, "route", "add", "127.0.0.1/32", "via", net.gateway, "dev", inner)
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the path itself works: a control
    with loopback_servers() as (udp, tcp), contextlib.closing(control):
        control.bind((net.gateway, 0))
        control.settimeout(20)
        udp_port, control_port = udp.getsockname()[1], control.getsockname()[1]
        # The attack datagram first, then one to the gateway on the same path: once the control
        # arrived, the attack datagram has been delivered or dropped.
        client(namespace, "udp", "-", "0", f"127.0.0.1:{udp_port}=attack", f"{net.gateway}:{control_port}=control")
        assert control.recv(64) == b"control"
        with pytest.raises(BlockingIOError):
            received = udp.recvfrom(64)
            pytest.fail(f"the host's 127.0.0.1 UDP service got {received!r} from the bridge")
        answer = client(namespace, "tcp", "127.0.0.1", str(tcp.getsockname()[1]), "2")
        assert answer == "unreachable", answer
        with pytest.raises(BlockingIOError):
            tcp.accept()


@pytest.mark.integration
def test_a_neighbour_reaches_only_ports_published_on_all_addresses(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str, spaces: Namespaces
) -> None:
    """Docker 28's rule: into a bridge only what a published port DNATed, replies, and traffic of
    the bridge itself; a port published on 127.0.0.1 only is not reachable from a neighbour."""
    base = 20000 + int(prefix[1:5], 16) % 20000
    link = ipaddress.IPv4Network(f"10.234.{int(prefix[1:3], 16)}.0/30")
    host_address, neighbour_address = str(link[1]), str(link[2])
    net = network(engine, f"{prefix}lan")
    serve = "mkdir -p /www && echo hello-lan > /www/index.html && " + " && ".join(
        f"httpd -p {port} -h /www" for port in (8080, 8081)
    )
    run(engine, f"{prefix}web", f"{serve} && exec httpd -f -p 8082 -h /www", networks=[{"name": f"{prefix}lan"}],
        ports=[{"containerPort": 8080, "hostPort": base}, {"containerPort": 8081, "hostPort": base + 1,
                                                            "hostIP": "127.0.0.1"}])  # fmt: skip
    container = address_of(engine, f"{prefix}web")

    def listening(port: int) -> bool:
        socket.create_connection((container, port), timeout=2).close()
        return True

    for port in (8080, 8081, 8082):  # all three answer the host itself (no forwarding involved)
        eventually(lambda p=port: listening(p), what=f"httpd on {container}:{port}")  # type: ignore[misc]

    namespace, host_end, inner = spaces.pair("n")
    ip("addr", "add", f"{host_address}/30", "dev", host_end)
    ip("link", "set", host_end, "up")
    ip("-n", namespace, "addr", "add", f"{neighbour_address}/30", "dev", inner)
    ip("-n", namespace, "route", "add", net.subnet, "via", host_address)
    # A host without Docker's DROP policy: FORWARD accepts what our chain did not decide.
    spaces.iptables("-t", "filter", "FORWARD", "-i", host_end, "-j", "ACCEPT")

    def fetch(host: str, port: int) -> str:
        return client(namespace, "tcp", host, str(port), "2")

    def published() -> str | None:
        answer = fetch(host_address, base)
        return answer if "hello-lan" in answer else None

    assert "200 OK" in eventually(published, what="the port published on all addresses, from the neighbour")
    assert fetch(container, 8082) == "unreachable", "an unpublished port answered the neighbour"
    assert fetch(container, 8081) == "unreachable", "a port published on 127.0.0.1 answered the neighbour"
    assert fetch(container, 8080) == "unreachable", "the container's address answered the neighbour directly"
    assert fetch(host_address, base + 1).startswith("refused"), "a 127.0.0.1-only port answered on the LAN address"
    # The network's DNS server serves its containers, not the LAN (finding 14).
    assert client(namespace, "dns", net.gateway, "53", "2") == "silent", "the DNS server answered the neighbour"


@pytest.mark.integration
def test_a_networks_dns_server_answers_only_its_own_containers(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str
) -> None:
    one = network(engine, f"{prefix}dns1")
    network(engine, f"{prefix}dns2")
    run(engine, f"{prefix}a", "sleep 300", networks=[{"name": f"{prefix}dns1"}])
    run(engine, f"{prefix}b", "sleep 300", networks=[{"name": f"{prefix}dns2"}])
    own = engine.exec(f"{prefix}a", ["nslookup", f"{prefix}a", one.gateway], timeout=30)
    assert own.exit_code == 0 and address_of(engine, f"{prefix}a") in own.stdout.decode(), own
    # busybox nslookup -timeout/-retry keep the refused case short.
    other = engine.exec(f"{prefix}b", ["nslookup", "-timeout=2", "-retry=1", f"{prefix}a", one.gateway], timeout=30)
    assert other.exit_code != 0, f"network {prefix}dns1's DNS server answered a container of {prefix}dns2: {other}"
    assert address_of(engine, f"{prefix}a") not in other.stdout.decode()


@pytest.mark.integration
def test_network_state_files_are_fsynced_with_their_directory(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    store = networks.Networks(tmp_path / "networks")
    monkeypatch.setattr(os, "fsync", spy)
    try:
        store.create(f"{prefix}sync", subnet=None, gateway=None, internal=False, labels={})
        store.allocate(f"{prefix}sync", "c" * 64, None)
        store.release("c" * 64)
    finally:
        monkeypatch.undo()
        store.remove(f"{prefix}sync")
    directory = str(tmp_path / "networks" / f"{prefix}sync")
    for name in ("network.json", "ipam.json"):
        assert any(Path(path).name.startswith(f".{name}.") for path in synced), (name, synced)
    assert synced.count(directory) >= 4, synced  # network.json, ipam.json, allocate, release


def _forward_rules(owner: str) -> list[str]:
    listing = subprocess.run(["iptables", "-w", "5", "-S", firewall.FORWARD_CHAIN], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    return [line for line in listing.splitlines() if f"rc:{owner}" in line]


@pytest.mark.integration
def test_a_networks_rules_come_back_in_order_and_go_with_it(
    loaded: Path, engine: native_engine.NativeEngine, prefix: str
) -> None:
    """A rule missing (a crash half-way, an older version's set) is put back with the final drop
    last; a published container port's accept of an older version goes; every owner is listed."""
    net = network(engine, f"{prefix}ord")
    owner = network_services.rules_owner(net)
    container_id = run(engine, f"{prefix}p", "sleep 300", networks=[{"name": f"{prefix}ord"}],
                       ports=[{"containerPort": 80, "hostPort": 20000 + int(prefix[1:5], 16) % 20000 + 2}])  # fmt: skip
    assert {owner, container_id} <= firewall.owners()
    complete = _forward_rules(owner)
    assert complete[-1].endswith("-j DROP") and f"-o {net.bridge} " in complete[-1]
    dnat = next(line for line in complete if "--ctstate DNAT" in line)
    subprocess.run(["iptables", "-w", "5", "-D", *shlex.split(dnat)[1:]], check=True)
    old_accept = ["-d", f"{address_of(engine, f'{prefix}p')}/32", "-o", net.bridge, "-p", "tcp", "--dport", "80",
                  "-m", "comment", "--comment", f"rc:{container_id}", "-j", "ACCEPT"]  # fmt: skip
    subprocess.run(["iptables", "-w", "5", "-A", firewall.FORWARD_CHAIN, *old_accept], check=True)
    network(engine, f"{prefix}ord")  # an apply that finds the network: its services are ensured
    assert _forward_rules(owner) == complete
    assert not _forward_rules(container_id)
    engine.remove_container(f"{prefix}p")
    engine.remove_network(f"{prefix}ord")
    assert not {owner, container_id} & firewall.owners()
