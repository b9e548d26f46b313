"""Name resolution on a native network: one small DNS server per network, on its gateway address.

As aardvark-dns does for podman, each network gets a server process bound to ``<gateway>:53``
(UDP) in the host's namespace; containers on the network have ``nameserver <gateway>`` in their
``resolv.conf``. It answers ``A`` queries for container names, network aliases, short ids and
``<name>.<network>`` from the network's ``dns.json`` (written by the engine under its lock, re-read
when it changes). Every other name gets NXDOMAIN: the server never forwards a query anywhere,
so no container query ever reaches the host's resolvers.

It answers only what is a query: a packet that is itself a response (QR set: two servers must
never bounce packets to each other), that does not parse, that is not a standard query with one
question or that is larger than :data:`MAX_PACKET` gets no reply at all, and a reply never exceeds
:data:`MAX_PACKET` (answers are cut and TC is set, as Docker's resolver does). It serves its own
network only: queries from outside the network's subnet are ignored here, and the firewall drops
those that do not come in through the network's bridge (:mod:`firewall`).

Run as ``python -m reconciler.backends.native.dns <network dir> <gateway>``; ``dnslib`` (the only
module that imports it) parses and builds the packets. It must stay small and stateless.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
from pathlib import Path

from dnslib import OPCODE, QTYPE, RCODE, RR, A, DNSRecord

from reconciler import files

TTL = 600  # Docker's embedded resolver answers with this TTL
MAX_PACKET = 512  # plain DNS over UDP (RFC 1035): queries and replies both, no EDNS


class Names:
    """``dns.json``, re-read whenever its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = -1.0
        self.table: dict[str, list[str]] = {}

    def lookup(self, name: str) -> list[str]:
        with contextlib.suppress(OSError):
            mtime = self.path.stat().st_mtime
            if mtime != self.mtime:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.table = {str(k).lower(): [str(v) for v in vs] for k, vs in data.items()}
                self.mtime = mtime
        return self.table.get(name.lower().rstrip("."), [])


def _is_query(request: DNSRecord) -> bool:
    header = request.header
    return not header.qr and header.opcode == OPCODE.QUERY and len(request.questions) == 1


def answer(query: bytes, names: Names) -> bytes | None:
    """The reply to one query packet, or None for a packet that must get none (see the module)."""
    if len(query) > MAX_PACKET:
        return None
    try:
        request = DNSRecord.parse(query)
    except Exception:  # dnslib raises several types for garbage
        return None
    if not _is_query(request):
        return None
    reply = request.reply()
    question = request.q
    addresses = names.lookup(str(question.qname))
    if not addresses:
        reply.header.rcode = RCODE.NXDOMAIN
    elif question.qtype in (QTYPE.A, QTYPE.ANY):
        for address in addresses:
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
    packet: bytes = reply.pack()
    while len(packet) > MAX_PACKET and reply.rr:
        reply.rr.pop()
        reply.header.tc = 1
        packet = reply.pack()
    return packet


def own_subnet(directory: Path, gateway: str) -> ipaddress.IPv4Network:
    """The network's subnet from its ``network.json``; the gateway alone if that cannot be read."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return ipaddress.IPv4Network(json.loads((directory / "network.json").read_text(encoding="utf-8"))["subnet"])
    return ipaddress.IPv4Network(f"{gateway}/32")


def serve(directory: Path, gateway: str) -> None:
    names = Names(directory / "dns.json")
    subnet = own_subnet(directory, gateway)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((gateway, 53))
    files.write_atomic(directory / "dns.pid", str(os.getpid()).encode(), durable=False)
    while True:
        # One byte more than the limit, so that a larger datagram is seen as such and dropped.
        data, client = server.recvfrom(MAX_PACKET + 1)
        if ipaddress.IPv4Address(client[0]) not in subnet:
            continue
        packet = answer(data, names)
        if packet is not None:
            with contextlib.suppress(OSError):
                server.sendto(packet, client)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m reconciler.backends.native.dns <network dir> <gateway>", file=sys.stderr)
        return 2
    serve(Path(args[0]), args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
