"""Names outside the stack resolve on native networks (issue 11, item 1), and the resolver fields
(dns, dnsSearch, dnsOptions, extraHosts with host-gateway, an FQDN hostname) reach the container.

The network's DNS server runs in the host's namespace, so it reaches the fake upstreams on
127.0.0.x that the test runs (a container could not: the firewall drops its traffic to the host's
loopback). No query leaves 127.0.0.0/8 or the test's own namespaces.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import manifests, plans
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import networks
from tests.contract import suite
from tests.support import fake_dns, images

pytestmark = pytest.mark.integration

RECORDS = {
    ("outside.example", "A"): ["outside.example. 60 IN A 192.0.2.10"],
    ("big.example", "TXT"): fake_dns.big_txt("big.example"),
}
# A query as a container's resolver sends it, from inside the container's network namespace;
# prints: truncated over UDP?, records over TCP.
CLIENT = """
import sys
from dnslib import DNSRecord
query = DNSRecord.question("big.example", "TXT")
udp = DNSRecord.parse(query.send(sys.argv[1], 53, timeout=5))
tcp = DNSRecord.parse(query.send(sys.argv[1], 53, tcp=True, timeout=5))
print(udp.header.tc, len(tcp.rr))
"""


@pytest.fixture
def upstream() -> Iterator[fake_dns.FakeUpstream]:
    with fake_dns.upstream("127.0.0.71", RECORDS) as server:
        yield server


@pytest.fixture
def forwarding(loaded: Path, prefix: str, upstream: fake_dns.FakeUpstream) -> Iterator[native_engine.NativeEngine]:
    engine = native_engine.NativeEngine(loaded, dns_upstream=[upstream.spec])
    yield engine
    for name in sorted(engine.observe().containers):
        if name.startswith(prefix):
            engine.remove_container(name)
    for network in engine.networks.all():
        if network.name.startswith(prefix) or network.name == native_engine.DEFAULT_NETWORK:
            engine.remove_network(network.name)
    engine.close()


def run(engine: native_engine.NativeEngine, name: str, **spec: object) -> None:
    engine.create_container(suite.container_request(name, images.LOCAL_BUSYBOX, command=["sleep", "300"], **spec))
    engine.start_container(name)


def sh(engine: native_engine.NativeEngine, name: str, command: str) -> tuple[int, str]:
    result = engine.exec(name, ["sh", "-c", command], timeout=30)
    return result.exit_code, (result.stdout + result.stderr).decode()


def test_outside_names_resolve_through_the_upstream_and_fail_with_servfail_when_it_is_down(
    forwarding: native_engine.NativeEngine, prefix: str, upstream: fake_dns.FakeUpstream
) -> None:
    net = f"{prefix}net"
    forwarding.create_network(plans.NetworkRequest(net, manifests.NetworkSpec(subnet="10.231.91.0/24"),
                                                   suite.labels("dns", "Network")))  # fmt: skip
    run(forwarding, f"{prefix}a", networks=[{"name": net}])
    code, out = sh(forwarding, f"{prefix}a", "nslookup outside.example")
    assert code == 0 and "192.0.2.10" in out, out
    code, out = sh(forwarding, f"{prefix}a", "nslookup outside.example 10.231.91.1")
    assert code == 0 and "192.0.2.10" in out, out

    # A reply too large for UDP: cut with TC for the client, whole over TCP (from the upstream's TCP).
    netns = networks.netns_path(forwarding.records.get(f"{prefix}a").container_id)
    asked = subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-c", CLIENT, "10.231.91.1"],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert asked.stdout.split() == ["1", "12"], asked
    assert ("big.example", "tcp") in upstream.answers.queries

    upstream.stop()
    code, out = sh(forwarding, f"{prefix}a", "nslookup outside.example")
    assert code != 0 and "SERVFAIL" in out, out


def test_a_containers_own_dns_servers_take_its_queries(
    forwarding: native_engine.NativeEngine, prefix: str, upstream: fake_dns.FakeUpstream
) -> None:
    """``dns:`` names port-53 servers: the fake one listens on port 53 of a loopback address, which the network's
    DNS server (on the host) reaches; not from an internal network."""
    own = fake_dns.loopback_address()
    with fake_dns.upstream(own, {("outside.example", "A"): ["outside.example. 60 IN A 192.0.2.20"]}, port=53):
        run(forwarding, f"{prefix}own", dns=[own])
        run(forwarding, f"{prefix}plain")
        inside = f"{prefix}inside"
        forwarding.create_network(plans.NetworkRequest(inside, manifests.NetworkSpec(internal=True),
                                                       suite.labels("dns", "Network")))  # fmt: skip
        run(forwarding, f"{prefix}shut", dns=[own], networks=[{"name": inside}])
        code, out = sh(forwarding, f"{prefix}shut", "nslookup outside.example")
        assert code != 0 and "192.0.2" not in out, out  # an internal network resolves no outside name
        code, out = sh(forwarding, f"{prefix}own", "nslookup outside.example")
        assert code == 0 and "192.0.2.20" in out, out
        code, out = sh(forwarding, f"{prefix}plain", "nslookup outside.example")
        assert code == 0 and "192.0.2.10" in out, out
        code, out = sh(forwarding, f"{prefix}own", "cat /etc/resolv.conf")
        assert f"nameserver {own}" not in out and "nameserver 10." in out, out  # still the network's server


def test_resolver_fields_reach_the_container(forwarding: native_engine.NativeEngine, prefix: str) -> None:
    net = f"{prefix}net"
    forwarding.create_network(plans.NetworkRequest(net, manifests.NetworkSpec(subnet="10.231.92.0/24"),
                                                   suite.labels("dns", "Network")))  # fmt: skip
    run(forwarding, f"{prefix}web", networks=[{"name": net, "ipv4Address": "10.231.92.20"}],
        hostname="web.corp.example", dnsSearch=["corp.example", "example"], dnsOptions=["ndots:2", "timeout:1"],
        extraHosts={"gw": "host-gateway", "db.local": "10.1.2.3"})  # fmt: skip
    code, out = sh(forwarding, f"{prefix}web", "hostname; cat /proc/sys/kernel/domainname; cat /etc/hostname")
    assert code == 0 and out.split() == ["web", "corp.example", "web"], out
    code, hosts = sh(forwarding, f"{prefix}web", "cat /etc/hosts")
    lines = [line.split() for line in hosts.splitlines()]
    assert ["10.231.92.1", "gw"] in lines and ["10.1.2.3", "db.local"] in lines, hosts
    assert ["10.231.92.20", "web.corp.example", "web"] in lines, hosts
    code, resolv = sh(forwarding, f"{prefix}web", "cat /etc/resolv.conf")
    assert resolv.splitlines() == ["nameserver 10.231.92.1", "search corp.example example", "options ndots:2 timeout:1"]
    code, out = sh(forwarding, f"{prefix}web", "nslookup outside.example")  # a search domain first (ndots:2)
    assert code == 0 and "192.0.2.10" in out, out


def test_host_mode_gets_the_hosts_resolvers_and_a_peer_shares_its_files(
    forwarding: native_engine.NativeEngine, prefix: str
) -> None:
    run(forwarding, f"{prefix}host", networkMode="host", dns=["127.0.0.71"], dnsSearch=["corp.example"])
    _, resolv = sh(forwarding, f"{prefix}host", "cat /etc/resolv.conf")
    assert resolv.splitlines()[:2] == ["nameserver 127.0.0.71", "search corp.example"], resolv
    run(forwarding, f"{prefix}base", extraHosts=["db.local:10.1.2.3"], dnsOptions=["ndots:3"])
    run(forwarding, f"{prefix}peer", networkMode=f"container:{prefix}base")
    for target in ("/etc/hosts", "/etc/resolv.conf"):
        assert sh(forwarding, f"{prefix}peer", f"cat {target}") == sh(forwarding, f"{prefix}base", f"cat {target}")
    assert "ndots:3" in sh(forwarding, f"{prefix}peer", "cat /etc/resolv.conf")[1]
