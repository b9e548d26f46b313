"""The resolver fields on Docker (issue 11, item 1): dns, dnsSearch, dnsOptions, extraHosts (with
host-gateway), domainname and an FQDN hostname reach HostConfig/Config as Docker's own, and the
container's own ``dns:`` server answers the names outside the stack through Docker's embedded DNS.

The fake upstream listens on the gateway address of the test's own Docker network (on the host,
in that network's bridge): Docker's embedded DNS forwards there from the container's namespace.
No query goes anywhere else.
"""

from __future__ import annotations

import random

import docker
import pytest

from reconciler import manifests, plans
from reconciler.backends import docker as docker_backend
from tests.contract.suite import labels
from tests.support import fake_dns

pytestmark = pytest.mark.integration


def test_resolver_fields_map_to_docker_and_outside_names_resolve_through_the_containers_dns(
    engine: docker_backend.DockerEngine, client: docker.DockerClient, image: str, prefix: str
) -> None:
    third = random.randint(100, 250)  # a subnet unlikely to be taken
    gateway = f"10.{third}.93.1"
    net = f"{prefix}net"
    spec = manifests.NetworkSpec(subnet=f"10.{third}.93.0/24", gateway=gateway)
    engine.create_network(plans.NetworkRequest(net, spec, labels("dns", "Network")))
    container = manifests.container_spec_from_document({
        "image": image, "command": ["sleep", "300"], "networks": [{"name": net}],
        "hostname": "web.corp.example", "dns": [gateway], "dnsSearch": ["corp.example"],
        "dnsOptions": ["ndots:2"], "extraHosts": {"gw": "host-gateway", "db.local": "10.1.2.3"},
    })  # fmt: skip
    name = f"{prefix}web"
    engine.pull_image(image)
    engine.create_container(plans.ContainerRequest(name, container, {}, labels("dns", "Container")))

    inspected = client.api.inspect_container(name)
    host = inspected["HostConfig"]
    assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == ([gateway], ["corp.example"], ["ndots:2"])
    assert host["ExtraHosts"] == ["gw:host-gateway", "db.local:10.1.2.3"]
    assert (inspected["Config"]["Hostname"], inspected["Config"]["Domainname"]) == ("web", "corp.example")

    with fake_dns.upstream(gateway, {("outside.example", "A"): ["outside.example. 60 IN A 192.0.2.30"]}, port=53):
        engine.start_container(name)
        looked_up = engine.exec(name, ["nslookup", "outside.example"], timeout=30)
        assert looked_up.exit_code == 0 and b"192.0.2.30" in looked_up.stdout, looked_up
    hosts = engine.exec(name, ["cat", "/etc/hosts"], timeout=30).stdout.decode()
    lines = [line.split() for line in hosts.splitlines()]
    assert ["10.1.2.3", "db.local"] in lines and any(line[1:] == ["gw"] for line in lines if line), hosts
    uts = engine.exec(name, ["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"], timeout=30).stdout.decode()
    assert uts.split() == ["web", "corp.example"], uts
