"""Name resolution on a native network: one small DNS server per network, on its gateway address.

As aardvark-dns does for podman, each network gets a server process bound to ``<gateway>:53``
(UDP and TCP) in the host's namespace; containers on the network have ``nameserver <gateway>`` in
their ``resolv.conf``. It answers ``A`` queries for container names, network aliases, short ids and
``<name>.<network>`` from the network's ``dns.json`` (written by the engine under its lock, re-read
when it changes). Every other query is forwarded, as Docker's embedded DNS forwards it, to the
upstream resolvers in ``upstreams.json`` (written by the engine, re-read when it changes): the
querying container's own ``dns:`` servers (by its address), else the network's (the engine's
``--dns-upstream``, else the host's; an internal network has none, and then the answer is NXDOMAIN).
The query goes out as it came (same id, same records, EDNS included) over UDP, again over TCP when
the reply is truncated, and the upstream's reply comes back as it is; it is cut (TC set) only when
it exceeds what the client can take over UDP, so that the client asks again over TCP. When no
upstream answers within :data:`FORWARD_TIMEOUT` (all of them together), the client gets SERVFAIL.

It answers only what is a query: a packet that is itself a response (QR set: two servers must
never bounce packets to each other), that does not parse, that is not a standard query with one
question or that is larger than :data:`MAX_PACKET` gets no reply at all, and a reply of its own
never exceeds :data:`MAX_PACKET` (answers are cut and TC is set, as Docker's resolver does). It
serves its own network only: queries from outside the network's subnet, or from its own gateway
address (another server of ours, or the host: a forwarding loop), are ignored here, and the
firewall drops those that do not come in through the network's bridge (:mod:`firewall`). It never
forwards to its own address, and at most :data:`MAX_FORWARDS` forwards are in flight (one more
gets SERVFAIL at once), so a flood cannot exhaust its threads.

Run as ``python -m reconciler.backends.native.dns <network dir> <gateway>``; ``dnslib`` (the only
module that imports it) parses and builds the packets. It must stay small and keep no state but
the two tables it re-reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dnslib import OPCODE, QTYPE, RCODE, RR, A, DNSRecord

from reconciler import files

TTL = 600  # Docker's embedded resolver answers with this TTL
MAX_PACKET = 512  # plain DNS over UDP (RFC 1035): queries and our own replies, no EDNS
MAX_UDP_REPLY = 4096  # the most a client's EDNS buffer size is taken at for a forwarded reply
FORWARD_TIMEOUT = 2.0  # seconds for one forwarded query, over every upstream together
MAX_FORWARDS = 64  # forwarded queries in flight at once (UDP and TCP clients together)
MAX_STREAMS = 16  # TCP clients at once
STREAM_TIMEOUT = 2.0  # seconds for a TCP client to send one whole query
NAMES = "dns.json"
UPSTREAMS = "upstreams.json"
# Seconds between checks that the network's directory is still there: a server whose network is
# gone (its state root deleted without removing the network) exits instead of holding the port.
ORPHAN_CHECK = 5.0

Upstream = tuple[str, int]


class Table:
    """A JSON object in a file, re-read whenever the file's modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = -1.0
        self.data: dict[str, Any] = {}
        self.lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        with self.lock, contextlib.suppress(OSError, ValueError):
            mtime = self.path.stat().st_mtime
            if mtime != self.mtime:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.data = self.prepare(data) if isinstance(data, dict) else {}
                self.mtime = mtime
        return self.data

    def prepare(self, data: dict[str, Any]) -> dict[str, Any]:
        return data


class Names(Table):
    """``dns.json``: the network's names → their addresses."""

    def prepare(self, data: dict[str, Any]) -> dict[str, Any]:
        return {str(k).lower(): [str(v) for v in vs] for k, vs in data.items()}

    def lookup(self, name: str) -> list[str]:
        found: list[str] = self.read().get(name.lower().rstrip("."), [])
        return found


class Upstreams(Table):
    """``upstreams.json``: ``{"servers": [[ip, port], ...], "clients": {address: [[ip, port], ...]}}``."""

    def __init__(self, path: Path, gateway: str) -> None:
        super().__init__(path)
        self.gateway = gateway

    def for_client(self, client: str) -> list[Upstream]:
        data = self.read()
        for servers in (data.get("clients", {}).get(client), data.get("servers")):
            # Never ourselves: that would be a loop.
            usable = [(str(h), int(p)) for h, p in servers or [] if not (str(h) == self.gateway and int(p) == 53)]
            if usable:
                return usable
        return []


def parse_query(packet: bytes) -> DNSRecord | None:
    """The query in a packet, or None for a packet that must get no reply (see the module)."""
    if len(packet) > MAX_PACKET:
        return None
    try:
        request = DNSRecord.parse(packet)
    except Exception:  # dnslib raises several types for garbage
        return None
    header = request.header
    if header.qr or header.opcode != OPCODE.QUERY or len(request.questions) != 1:
        return None
    return request


def local_reply(request: DNSRecord, names: Names) -> DNSRecord | None:
    """The answer for a name of this network, or None for a name it does not own."""
    question = request.q
    addresses = names.lookup(str(question.qname))
    if not addresses:
        return None
    reply = request.reply()
    if question.qtype in (QTYPE.A, QTYPE.ANY):
        for address in addresses:
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
    return reply


def _packed(reply: DNSRecord) -> bytes:
    """A reply of our own, cut to :data:`MAX_PACKET` (TC set)."""
    packet: bytes = reply.pack()
    while len(packet) > MAX_PACKET and reply.rr:
        reply.rr.pop()
        reply.header.tc = 1
        packet = reply.pack()
    return packet


def with_rcode(request: DNSRecord, rcode: int) -> bytes:
    reply = request.reply()
    reply.header.rcode = rcode
    return _packed(reply)


def answer(query: bytes, names: Names) -> bytes | None:
    """The reply to one query packet without forwarding: NXDOMAIN for a name the network does not own."""
    request = parse_query(query)
    if request is None:
        return None
    reply = local_reply(request, names)
    return _packed(reply) if reply is not None else with_rcode(request, RCODE.NXDOMAIN)


def udp_limit(request: DNSRecord) -> int:
    """How large a UDP reply the client takes: its EDNS buffer size (RFC 6891), else 512."""
    sizes = [int(rr.rclass) for rr in request.ar if rr.rtype == QTYPE.OPT]
    return max(MAX_PACKET, min([*sizes, MAX_UDP_REPLY])) if sizes else MAX_PACKET


def cut(reply: bytes, limit: int) -> bytes:
    """An upstream's reply as it is, or, when larger than ``limit``, its header and question with TC
    set: the client then asks again over TCP (what a resolver does with a truncated reply)."""
    if len(reply) <= limit:
        return reply
    record = DNSRecord.parse(reply)
    record.rr, record.auth, record.ar = [], [], []
    record.header.tc = 1
    packed: bytes = record.pack()
    return packed


def _is_reply_to(packet: bytes, request: DNSRecord) -> bool:
    try:
        reply = DNSRecord.parse(packet)
    except Exception:  # dnslib raises several types for garbage
        return False
    # A truncated reply may come without its question (dnslib's own server sends it so).
    same_question = reply.questions == request.questions or (reply.header.tc and not reply.questions)
    return bool(reply.header.qr) and reply.header.id == request.header.id and bool(same_question)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def read_exact(stream: socket.socket, size: int, deadline: float) -> bytes:
    """``size`` bytes from ``stream`` before ``deadline``; OSError (a timeout) otherwise."""
    data = b""
    while len(data) < size:
        stream.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = stream.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _over_udp(query: bytes, request: DNSRecord, server: Upstream, deadline: float) -> bytes | None:
    with socket.socket(_family(server[0]), socket.SOCK_DGRAM) as upstream:
        upstream.connect(server)
        upstream.send(query)
        while True:  # replies that are not to this query (late, spoofed) are skipped
            upstream.settimeout(max(deadline - time.monotonic(), 0.001))
            packet = upstream.recv(65535)
            if _is_reply_to(packet, request):
                return packet


def _over_tcp(query: bytes, request: DNSRecord, server: Upstream, deadline: float) -> bytes | None:
    with socket.socket(_family(server[0]), socket.SOCK_STREAM) as upstream:
        upstream.settimeout(max(deadline - time.monotonic(), 0.001))
        upstream.connect(server)
        upstream.sendall(struct.pack("!H", len(query)) + query)
        (size,) = struct.unpack("!H", read_exact(upstream, 2, deadline))
        packet = read_exact(upstream, size, deadline)
        return packet if _is_reply_to(packet, request) else None


def forward(
    query: bytes, request: DNSRecord, servers: Sequence[Upstream], *, timeout: float = FORWARD_TIMEOUT
) -> bytes:
    """The first upstream's reply to ``query``, unchanged; SERVFAIL when none answers in ``timeout``.

    The servers are asked in order, each within its share of the time left (a dead first server
    leaves the others time); a truncated UDP reply is asked again over TCP from the same server."""
    deadline = time.monotonic() + timeout
    for index, server in enumerate(servers):
        share = time.monotonic() + (deadline - time.monotonic()) / (len(servers) - index)
        reply = None
        with contextlib.suppress(OSError, ValueError):
            reply = _over_udp(query, request, server, share)
        if reply is None:
            continue
        if DNSRecord.parse(reply).header.tc:
            with contextlib.suppress(OSError, ValueError, struct.error):
                reply = _over_tcp(query, request, server, deadline) or reply
        return reply
    return with_rcode(request, RCODE.SERVFAIL)


@dataclasses.dataclass(frozen=True, slots=True)
class Forward:
    """A query that goes upstream: :meth:`run` blocks for up to the forward timeout."""

    query: bytes
    request: DNSRecord
    servers: list[Upstream]
    stream: bool
    timeout: float

    def run(self) -> bytes:
        reply = forward(self.query, self.request, self.servers, timeout=self.timeout)
        return reply if self.stream else cut(reply, udp_limit(self.request))

    def servfail(self) -> bytes:
        return with_rcode(self.request, RCODE.SERVFAIL)


class Resolver:
    """What the server does with one packet, apart from the sockets (what the unit tests drive)."""

    def __init__(self, directory: Path, gateway: str, *, timeout: float = FORWARD_TIMEOUT,
                 limit: int = MAX_FORWARDS) -> None:  # fmt: skip
        self.names = Names(directory / NAMES)
        self.upstreams = Upstreams(directory / UPSTREAMS, gateway)
        self.timeout = timeout
        self.slots = threading.BoundedSemaphore(limit) if limit else None

    def start(self, packet: bytes, client: str, *, stream: bool) -> bytes | Forward | None:
        """A reply at once (a name of ours, or NXDOMAIN without upstreams), a :class:`Forward`, or
        None for a packet that gets no reply."""
        request = parse_query(packet)
        if request is None:
            return None
        own = local_reply(request, self.names)
        if own is not None:
            return _packed(own)
        servers = self.upstreams.for_client(client)
        if not servers:
            return with_rcode(request, RCODE.NXDOMAIN)
        return Forward(packet, request, servers, stream, self.timeout)

    def resolve(self, packet: bytes, client: str, *, stream: bool = False) -> bytes | None:
        """The reply to one packet, forwarded when it must be (blocking), within the forward limit."""
        step = self.start(packet, client, stream=stream)
        if not isinstance(step, Forward):
            return step
        if self.slots is None or not self.slots.acquire(blocking=False):
            return step.servfail()
        try:
            return step.run()
        finally:
            self.slots.release()

    def dispatch(self, packet: bytes, client: str, respond: Callable[[bytes], None]) -> None:
        """Answer one UDP packet: at once, or on a thread of its own while a forward slot is free."""
        step = self.start(packet, client, stream=False)
        if step is None:
            return
        if not isinstance(step, Forward):
            respond(step)
        elif self.slots is None or not self.slots.acquire(blocking=False):
            respond(step.servfail())
        else:
            threading.Thread(target=self._forward_and_respond, args=(step, respond), daemon=True).start()

    def _forward_and_respond(self, step: Forward, respond: Callable[[bytes], None]) -> None:
        try:
            respond(step.run())
        finally:
            if self.slots is not None:
                self.slots.release()


def own_subnet(directory: Path, gateway: str) -> ipaddress.IPv4Network:
    """The network's subnet from its ``network.json``; the gateway alone if that cannot be read."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return ipaddress.IPv4Network(json.loads((directory / "network.json").read_text(encoding="utf-8"))["subnet"])
    return ipaddress.IPv4Network(f"{gateway}/32")


def _member(address: str, subnet: ipaddress.IPv4Network, gateway: str) -> bool:
    """A container of the network: in its subnet, and not the gateway (the host, or a server of ours)."""
    return address != gateway and ipaddress.IPv4Address(address) in subnet


def _serve_streams(listener: socket.socket, resolver: Resolver, member: Callable[[str], bool]) -> None:
    slots = threading.BoundedSemaphore(MAX_STREAMS)
    while True:
        try:
            connection, client = listener.accept()
        except OSError:  # closed: the server is ending
            return
        if not member(client[0]) or not slots.acquire(blocking=False):
            connection.close()
            continue
        threading.Thread(target=_serve_stream, args=(connection, client[0], resolver, slots), daemon=True).start()


def _serve_stream(
    connection: socket.socket, client: str, resolver: Resolver, slots: threading.BoundedSemaphore
) -> None:
    """Queries on one TCP connection (two-byte length, then the message), until it closes or idles."""
    try:
        with connection, contextlib.suppress(OSError, struct.error):
            while True:
                deadline = time.monotonic() + STREAM_TIMEOUT
                (size,) = struct.unpack("!H", read_exact(connection, 2, deadline))
                reply = resolver.resolve(read_exact(connection, size, deadline), client, stream=True)
                if reply is None:
                    return
                connection.settimeout(STREAM_TIMEOUT)
                connection.sendall(struct.pack("!H", len(reply)) + reply)
    finally:
        slots.release()


def serve(directory: Path, gateway: str, *, check_every: float = ORPHAN_CHECK) -> None:
    """Answer on ``<gateway>:53`` until the network's directory is gone."""
    resolver = Resolver(directory, gateway)
    subnet = own_subnet(directory, gateway)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, socket.socket() as listener:
        # No SO_REUSEADDR on UDP: it would let a second server (a stale one, or another root's
        # network on the same gateway address) bind the same port and take part of the queries.
        server.bind((gateway, 53))
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((gateway, 53))
        listener.listen(MAX_STREAMS)
        threading.Thread(target=_serve_streams, args=(listener, resolver, lambda a: _member(a, subnet, gateway)),
                         daemon=True).start()  # fmt: skip
        files.write_atomic(directory / "dns.pid", str(os.getpid()).encode(), durable=False)
        server.settimeout(check_every)
        try:
            while directory.is_dir():
                try:
                    # One byte more than the limit, so that a larger datagram is seen as such and dropped.
                    data, client = server.recvfrom(MAX_PACKET + 1)
                except TimeoutError:
                    continue
                if _member(client[0], subnet, gateway):
                    resolver.dispatch(data, client[0], functools.partial(_send, server, client))
        finally:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()


def _send(server: socket.socket, client: tuple[str, int], packet: bytes) -> None:
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
