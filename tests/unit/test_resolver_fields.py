"""The resolver fields of a container (issue 11, item 1): dns, dnsSearch, dnsOptions, extraHosts,
domainname and an FQDN hostname: how they are checked, hashed, written into the native engine's
/etc files and mapped onto Docker's API."""

from __future__ import annotations

import pytest

from reconciler import errors, hashing, manifests, plans
from reconciler.backends.docker import configs
from reconciler.backends.native import assembly, networks

DOCUMENT = """\
apiVersion: reconciler/v1
kind: Container
metadata: {name: web, stack: shop}
spec:
  image: busybox
"""
FIELDS = {
    "hostname": "web.corp.example",
    "dns": ["192.0.2.53"],
    "dnsSearch": ["corp.example"],
    "dnsOptions": ["ndots:2"],
    "extraHosts": {"gw": "host-gateway", "db.local": "10.1.2.3", "v6": "2001:db8::1"},
}
ATTACHMENT = networks.Attachment(
    network="net", interface="eth0", host_veth="rcvx", address="10.9.0.5", prefixlen=24, gateway="10.9.0.1"
)


def spec(**fields: object) -> manifests.ContainerSpec:
    return manifests.container_spec_from_document({"image": "busybox", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hostname": "web_1"}, "is not a DNS label"),
        ({"hostname": "web." + "a" * 70}, "is not a domain name"),
        ({"domainname": "corp..example"}, "is not a domain name"),
        ({"hostname": "web.corp.example", "domainname": "corp.example"}, "give the domain once"),
        ({"dns": ["dns.example"]}, "dns 'dns.example' is not an IP address"),
        ({"dnsSearch": ["corp example"]}, "one word"),
        ({"dnsOptions": [""]}, "one word"),
        ({"extraHosts": ["db.local"]}, "write name:ip"),
        ({"extraHosts": {"db": "somewhere"}}, "'somewhere' is not an IP address or host-gateway"),
        ({"networkMode": "container:db", "dns": ["192.0.2.53"]}, "dns cannot be set with networkMode container"),
        ({"networkMode": "container:db", "extraHosts": ["a:10.0.0.1"]}, "extraHosts cannot be set"),
    ],
)
def test_wrong_values_are_refused_with_a_clear_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**fields)


def test_an_fqdn_hostname_is_a_hostname_and_a_domainname() -> None:
    assert spec(hostname="web.corp.example").uts_names == ("web", "corp.example")
    assert spec(hostname="web", domainname="corp.example").uts_names == ("web", "corp.example")
    assert spec().uts_names == (None, None)
    assert spec(extraHosts={"gw": "host-gateway"}).extra_hosts == ["gw:host-gateway"]


@pytest.mark.parametrize(("key", "value"), [*FIELDS.items(), ("domainname", "corp.example")])
def test_each_field_changes_the_spec_hash(key: str, value: object) -> None:
    base = manifests.load_text(DOCUMENT).containers["web"]
    changed = manifests.load_text(DOCUMENT.replace("image: busybox", f"image: busybox\n  {key}: {value!r}")
                                  .replace("'", '"')).containers["web"]  # fmt: skip
    assert hashing.container_hash(base) != hashing.container_hash(changed)


def test_the_native_etc_files_on_a_network() -> None:
    texts = assembly.etc_texts(spec(**FIELDS), "c" * 64, [ATTACHMENT])
    assert texts["/etc/hostname"] == "web\n"
    hosts = [line.split() for line in texts["/etc/hosts"].splitlines()]
    assert ["10.9.0.5", "web.corp.example", "web"] in hosts
    assert ["10.9.0.1", "gw"] in hosts and ["10.1.2.3", "db.local"] in hosts and ["2001:db8::1", "v6"] in hosts
    # Its own dns: servers are the network server's upstreams for it, not its nameservers.
    assert texts["/etc/resolv.conf"] == "nameserver 10.9.0.1\nsearch corp.example\noptions ndots:2\n"
    plain = assembly.etc_texts(spec(dnsSearch=["."], dnsOptions=["timeout:1"]), "c" * 64, [ATTACHMENT])
    assert plain["/etc/resolv.conf"] == "nameserver 10.9.0.1\noptions ndots:0 timeout:1\n"
    assert plain["/etc/hostname"] == "cccccccccccc\n"


def test_host_gateway_needs_a_network() -> None:
    with pytest.raises(errors.RuntimeFailed, match="host-gateway needs a network"):
        assembly.etc_texts(spec(networkMode="none", extraHosts=["gw:host-gateway"]), "c" * 64, [])
    none = assembly.etc_texts(spec(networkMode="none", dns=["192.0.2.53"]), "c" * 64, [])
    assert none["/etc/resolv.conf"] == "nameserver 192.0.2.53\n"


def test_the_docker_mapping() -> None:
    request = plans.ContainerRequest("web", spec(**FIELDS), {}, {})
    body = configs.container_config(request)
    host = body["HostConfig"]
    assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == (["192.0.2.53"], ["corp.example"], ["ndots:2"])
    assert host["ExtraHosts"] == ["gw:host-gateway", "db.local:10.1.2.3", "v6:2001:db8::1"]
    assert (body["Hostname"], body["Domainname"]) == ("web", "corp.example")
    bare = configs.container_config(plans.ContainerRequest("web", spec(), {}, {}))
    assert not {"Dns", "DnsSearch", "DnsOptions", "ExtraHosts"} & set(bare["HostConfig"]) and "Domainname" not in bare
