"""The native networks' DNS server forwards what its network does not own (issue 11, item 1).

The resolver is driven in-process against fake upstreams (dnslib servers on 127.0.0.x): queries
pass through unchanged (id, type, EDNS), a truncated UDP reply is asked again over TCP, a dead or
silent upstream gives SERVFAIL, a container's own ``dns:`` servers take its queries, the server
never forwards to itself, and a flood cannot hold more than the forward limit. No query leaves
127.0.0.0/8.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from reconciler import cli, errors
from reconciler.backends.native import dns, network_services
from reconciler.cli import options
from tests.support import fake_dns, polling

GATEWAY = "10.9.0.1"
CLIENT = "10.9.0.5"
OTHER = "10.9.0.6"
RECORDS = {
    ("outside.example", "A"): ["outside.example. 60 IN A 192.0.2.10"],
    ("outside.example", "AAAA"): ["outside.example. 60 IN AAAA 2001:db8::10"],
    ("10.2.0.192.in-addr.arpa", "PTR"): ["10.2.0.192.in-addr.arpa. 60 IN PTR outside.example."],
    ("_http._tcp.outside.example", "SRV"): ["_http._tcp.outside.example. 60 IN SRV 1 2 80 outside.example."],
    ("outside.example", "TXT"): ['outside.example. 60 IN TXT "hello"'],
    ("outside.example", "MX"): ["outside.example. 60 IN MX 10 mail.outside.example."],
    ("big.example", "TXT"): fake_dns.big_txt("big.example"),
}


@pytest.fixture
def upstream() -> Iterator[fake_dns.FakeUpstream]:
    with fake_dns.upstream("127.0.0.61", RECORDS) as server:
        yield server


@pytest.fixture
def own(tmp_path: Path) -> Iterator[fake_dns.FakeUpstream]:
    with fake_dns.upstream("127.0.0.62", {("outside.example", "A"): ["outside.example. 60 IN A 192.0.2.20"]}) as server:
        yield server


def resolver(directory: Path, servers: list[tuple[str, int]], **kwargs: object) -> dns.Resolver:
    (directory / "dns.json").write_text(json.dumps({"db": ["10.9.0.7"]}))
    (directory / "upstreams.json").write_text(json.dumps({"servers": servers}))
    return dns.Resolver(directory, GATEWAY, **kwargs)  # type: ignore[arg-type]


def ask(target: dns.Resolver, query: DNSRecord, client: str = CLIENT, *, stream: bool = False) -> DNSRecord:
    reply = target.resolve(query.pack(), client, stream=stream)
    assert reply is not None
    return DNSRecord.parse(reply)


@pytest.mark.parametrize("kind", ["A", "AAAA", "PTR", "SRV", "TXT", "MX"])
def test_a_name_outside_the_network_is_answered_by_the_upstream(
    tmp_path: Path, upstream: fake_dns.FakeUpstream, kind: str
) -> None:
    name = {"PTR": "10.2.0.192.in-addr.arpa", "SRV": "_http._tcp.outside.example"}.get(kind, "outside.example")
    query = DNSRecord.question(name, kind)
    reply = ask(resolver(tmp_path, [[upstream.address, upstream.port]]), query)  # type: ignore[list-item]
    expected = DNSRecord.question(name, kind).reply()
    for line in RECORDS[(name, kind)]:
        expected.add_answer(*fake_dns.RR.fromZone(line))
    assert reply.header.id == query.header.id and reply.header.rcode == RCODE.NOERROR
    assert [rr.rdata.toZone() for rr in reply.rr] == [rr.rdata.toZone() for rr in expected.rr]
    assert upstream.answers.queries == [(name.lower(), "udp")]


def test_names_of_the_network_stay_local_and_unknown_ones_come_back_as_the_upstream_says(
    tmp_path: Path, upstream: fake_dns.FakeUpstream
) -> None:
    target = resolver(tmp_path, [[upstream.address, upstream.port]])  # type: ignore[list-item]
    assert [str(rr.rdata) for rr in ask(target, DNSRecord.question("db")).rr] == ["10.9.0.7"]
    assert ask(target, DNSRecord.question("nowhere.example")).header.rcode == RCODE.NXDOMAIN
    assert upstream.answers.queries == [("nowhere.example", "udp")]


def test_a_truncated_reply_is_asked_again_over_tcp(tmp_path: Path, upstream: fake_dns.FakeUpstream) -> None:
    target = resolver(tmp_path, [[upstream.address, upstream.port]])  # type: ignore[list-item]
    plain = ask(target, DNSRecord.question("big.example", "TXT"))
    # A client without EDNS takes 512 bytes over UDP: it gets TC and asks again over TCP.
    assert plain.header.tc == 1 and not plain.rr and plain.q.qname == "big.example."
    assert ("big.example", "tcp") in upstream.answers.queries
    full = ask(target, DNSRecord.question("big.example", "TXT"), stream=True)
    assert full.header.tc == 0 and len(full.rr) == 12
    edns = DNSRecord.question("big.example", "TXT")
    edns.add_ar(EDNS0(udp_len=4096))
    assert len(ask(target, edns).rr) == 12  # the client's EDNS buffer takes it over UDP


def test_a_dead_or_silent_upstream_gives_servfail(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.63", 0))  # bound, never read: no reply, no refusal
        with fake_dns.upstream("127.0.0.64", RECORDS) as stopped:
            dead = [stopped.address, stopped.port]
        target = resolver(tmp_path, [dead, list(silent.getsockname())], timeout=0.3)  # type: ignore[list-item]
        reply = ask(target, DNSRecord.question("outside.example"))
    assert reply.header.rcode == RCODE.SERVFAIL


def test_a_dead_first_upstream_leaves_the_next_one_answering(tmp_path: Path, upstream: fake_dns.FakeUpstream) -> None:
    with fake_dns.upstream("127.0.0.64", RECORDS) as stopped:
        dead = [stopped.address, stopped.port]
    target = resolver(tmp_path, [dead, [upstream.address, upstream.port]])  # type: ignore[list-item]
    assert [str(rr.rdata) for rr in ask(target, DNSRecord.question("outside.example")).rr] == ["192.0.2.10"]


def test_a_container_with_its_own_dns_servers_is_forwarded_there(
    tmp_path: Path, upstream: fake_dns.FakeUpstream, own: fake_dns.FakeUpstream
) -> None:
    target = resolver(tmp_path, [[upstream.address, upstream.port]])  # type: ignore[list-item]
    table = json.loads((tmp_path / "upstreams.json").read_text())
    table["clients"] = {CLIENT: [[own.address, own.port]]}
    (tmp_path / "upstreams.json").write_text(json.dumps(table))
    assert [str(rr.rdata) for rr in ask(target, DNSRecord.question("outside.example")).rr] == ["192.0.2.20"]
    assert [str(rr.rdata) for rr in ask(target, DNSRecord.question("outside.example"), OTHER).rr] == ["192.0.2.10"]


def test_the_server_never_forwards_to_itself_and_without_upstreams_answers_nxdomain(tmp_path: Path) -> None:
    target = resolver(tmp_path, [[GATEWAY, 53]])  # type: ignore[list-item]
    assert ask(target, DNSRecord.question("outside.example")).header.rcode == RCODE.NXDOMAIN


def test_forwards_in_flight_are_bounded(tmp_path: Path, upstream: fake_dns.FakeUpstream) -> None:
    target = resolver(tmp_path, [[upstream.address, upstream.port]], limit=1)  # type: ignore[list-item]
    assert target.slots is not None and target.slots.acquire(blocking=False)  # one forward in flight
    assert ask(target, DNSRecord.question("outside.example")).header.rcode == RCODE.SERVFAIL
    sent: list[bytes] = []
    target.dispatch(DNSRecord.question("outside.example").pack(), CLIENT, sent.append)
    assert DNSRecord.parse(sent[0]).header.rcode == RCODE.SERVFAIL and upstream.answers.queries == []
    target.slots.release()
    assert ask(target, DNSRecord.question("outside.example")).header.rcode == RCODE.NOERROR


def test_upstreams_are_read_again_when_they_change(tmp_path: Path, upstream: fake_dns.FakeUpstream) -> None:
    target = resolver(tmp_path, [])
    assert ask(target, DNSRecord.question("outside.example")).header.rcode == RCODE.NXDOMAIN
    path = tmp_path / "upstreams.json"
    path.write_text(json.dumps({"servers": [[upstream.address, upstream.port]]}))
    target.upstreams.mtime = -1.0  # as a later modification time would (no sleep for the clock)
    assert ask(target, DNSRecord.question("outside.example")).header.rcode == RCODE.NOERROR


# -- where the upstreams come from ----------------------------------------------------------------


def test_the_host_resolvers_as_docker_reads_them(tmp_path: Path) -> None:
    etc, systemd = tmp_path / "resolv.conf", tmp_path / "systemd.conf"
    etc.write_text("# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
    systemd.write_text("nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n")
    assert network_services.host_upstreams(etc, systemd) == [("192.0.2.53", 53), ("2001:db8::53", 53)]
    assert network_services.host_resolv_conf(etc, systemd).search == ("lan",)
    etc.write_text("nameserver 127.0.0.1\nnameserver ::1\n")  # loopback only: Docker's fallback
    assert network_services.host_upstreams(etc, systemd) == [("8.8.8.8", 53), ("8.8.4.4", 53)]
    etc.write_text("nameserver 127.0.0.1\nnameserver 192.0.2.1 # office\n")
    assert network_services.host_upstreams(etc, systemd) == [("192.0.2.1", 53)]
    assert network_services.host_upstreams(tmp_path / "missing", systemd) == [("8.8.8.8", 53), ("8.8.4.4", 53)]


def test_dns_upstream_values_are_checked() -> None:
    parsed = network_services.parse_upstreams(["127.0.0.9", "127.0.0.9:5353", "[::1]:54", "2001:db8::1", ""])
    assert parsed == (("127.0.0.9", 53), ("127.0.0.9", 5353), ("::1", 54), ("2001:db8::1", 53))
    for bad in ("dns.example", "127.0.0.9:0", "127.0.0.9:x", "[::1]:99999"):
        with pytest.raises(Exception, match="DNS upstream"):
            network_services.parse_upstreams([bad])


def test_queries_and_replies_over_the_wire_are_unchanged(tmp_path: Path, upstream: fake_dns.FakeUpstream) -> None:
    """The id and the question come back as sent; the upstream saw the very same query bytes."""
    query = DNSRecord.question("outside.example", "A")
    query.header.id = 4242
    reply = ask(resolver(tmp_path, [[upstream.address, upstream.port]]), query)  # type: ignore[list-item]
    assert reply.header.id == 4242 and reply.q == query.q and QTYPE[reply.rr[0].rtype] == "A"


def test_the_dns_upstream_option_reaches_the_native_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECONCILER_ENGINE", "native")
    monkeypatch.setenv("RECONCILER_DNS_UPSTREAM", "127.0.0.9")
    parser = cli.build_parser()
    assert options.of(parser.parse_args(["status"])).dns_upstream == "127.0.0.9"
    given = ["status", "--dns-upstream", "127.0.0.8:5353,[::1]:54", "--root", str(tmp_path)]
    engine = options.open_engine(options.of(parser.parse_args(given)))
    try:
        assert engine.dns_upstream == (("127.0.0.8", 5353), ("::1", 54))  # type: ignore[attr-defined]
    finally:
        engine.close()
    wrong = options.of(parser.parse_args(["--dns-upstream", "dns.example", "status", "--root", str(tmp_path)]))
    with pytest.raises(errors.ReconcilerError, match="DNS upstream 'dns.example'"):
        options.open_engine(wrong)


def test_a_server_whose_network_directory_is_gone_exits_and_frees_its_port(tmp_path: Path) -> None:
    """A state root deleted without removing its networks must not leave servers holding the gateway."""
    directory = tmp_path / "net"
    directory.mkdir()
    (directory / "network.json").write_text(json.dumps({"subnet": "127.0.0.0/8"}))
    (directory / "dns.json").write_text(json.dumps({"db": ["10.9.0.7"]}))
    address = fake_dns.loopback_address()
    server = threading.Thread(target=dns.serve, args=(directory, address), kwargs={"check_every": 0.02})
    server.start()
    try:
        polling.eventually((directory / "dns.pid").exists, timeout=10)
        reply = DNSRecord.parse(DNSRecord.question("db").send(address, 53, timeout=5))
        assert [str(rr.rdata) for rr in reply.rr] == ["10.9.0.7"]
    finally:
        shutil.rmtree(directory)
        server.join(timeout=10)
    assert not server.is_alive()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((address, 53))  # free again


def test_a_second_server_cannot_take_a_port_another_one_holds(tmp_path: Path) -> None:
    """A stale server (bound with SO_REUSEADDR, as older ones were) keeps the port to itself: the
    new one fails to start instead of silently sharing the queries with it."""
    (tmp_path / "dns.json").write_text("{}")
    address = fake_dns.loopback_address()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stale:
        stale.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stale.bind((address, 53))
        with pytest.raises(OSError, match="in use"):
            dns.serve(tmp_path, address, check_every=0.02)
    assert not (tmp_path / "dns.pid").exists()
