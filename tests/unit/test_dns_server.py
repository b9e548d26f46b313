"""The native networks' DNS server on packets a hostile peer sends (issue 10, finding 14): it
answers queries only, never a response (two servers would bounce forever), never garbage or an
oversized packet, and its replies fit in a plain UDP datagram."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dnslib import RCODE, DNSRecord

from reconciler.backends.native import dns


@pytest.fixture
def names(tmp_path: Path) -> dns.Names:
    many = [f"10.9.{n // 250}.{n % 250 + 1}" for n in range(200)]
    (tmp_path / "dns.json").write_text(json.dumps({"db": ["10.9.0.5"], "many": many}))
    return dns.Names(tmp_path / "dns.json")


def test_a_query_gets_its_answer_and_an_unknown_name_nxdomain(names: dns.Names) -> None:
    reply = dns.answer(DNSRecord.question("db").pack(), names)
    assert reply is not None
    parsed = DNSRecord.parse(reply)
    assert parsed.header.qr == 1 and [str(rr.rdata) for rr in parsed.rr] == ["10.9.0.5"]
    unknown = dns.answer(DNSRecord.question("example.org").pack(), names)
    assert unknown is not None and DNSRecord.parse(unknown).header.rcode == RCODE.NXDOMAIN


def test_a_response_gets_no_reply(names: dns.Names) -> None:
    """Two servers (or a spoofed source) must not bounce packets: QR=1 is never answered."""
    response = DNSRecord.question("db").reply()
    assert dns.answer(response.pack(), names) is None
    nxdomain = DNSRecord.question("nowhere").reply()
    nxdomain.header.rcode = RCODE.NXDOMAIN
    assert dns.answer(nxdomain.pack(), names) is None


@pytest.mark.parametrize("packet", [b"", b"\x00", b"\xff" * 11, DNSRecord.question("db").pack()[:-3]])
def test_garbage_gets_no_reply(names: dns.Names, packet: bytes) -> None:
    assert dns.answer(packet, names) is None


def test_not_a_plain_query_gets_no_reply(names: dns.Names) -> None:
    notify = DNSRecord.question("db")
    notify.header.opcode = 4  # NOTIFY
    assert dns.answer(notify.pack(), names) is None
    two = DNSRecord.question("db")
    two.add_question(DNSRecord.question("many").q)
    assert dns.answer(two.pack(), names) is None


def test_an_oversized_query_gets_no_reply(names: dns.Names) -> None:
    padded = DNSRecord.question("db").pack() + b"\x00" * dns.MAX_PACKET
    assert dns.answer(padded, names) is None


def test_a_reply_fits_in_a_plain_udp_datagram(names: dns.Names) -> None:
    reply = dns.answer(DNSRecord.question("many", "A").pack(), names)
    assert reply is not None and len(reply) <= dns.MAX_PACKET
    parsed = DNSRecord.parse(reply)
    assert parsed.header.tc == 1 and 0 < len(parsed.rr) < 200


def test_the_server_knows_its_subnet(tmp_path: Path) -> None:
    (tmp_path / "network.json").write_text(json.dumps({"subnet": "10.9.0.0/24"}))
    assert str(dns.own_subnet(tmp_path, "10.9.0.1")) == "10.9.0.0/24"
    assert str(dns.own_subnet(tmp_path / "missing", "10.9.0.1")) == "10.9.0.1/32"
