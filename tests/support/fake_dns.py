"""A fake upstream DNS server for tests: dnslib's server with fixed answers, on a loopback address.

Tests of forwarding point the engine (``--dns-upstream``) or a container (``dns:``) at it, so that
no test ever queries the host's configured nameservers. It answers over UDP and TCP on the same
port, cuts UDP replies above 512 bytes (TC set, as a real server does without EDNS), and counts
the queries it got per protocol.
"""

from __future__ import annotations

import random
import socketserver
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer


class Answers(BaseResolver):  # type: ignore[misc]  # dnslib is untyped
    """Fixed records: ``(name, type) → zone lines``; other names get NXDOMAIN, other types of a
    known name an empty NOERROR."""

    def __init__(self, records: Mapping[tuple[str, str], list[str]]) -> None:
        self.records = {(name.rstrip(".").lower(), kind): lines for (name, kind), lines in records.items()}
        self.queries: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((name, handler.protocol))
        reply = request.reply()
        lines = self.records.get((name, kind))
        if lines:
            for line in lines:
                reply.add_answer(*RR.fromZone(line))
        elif not any(known == name for known, _ in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Handler(DNSHandler):  # type: ignore[misc]
    udplen = 512  # a UDP reply above it is cut, TC set


class _Quiet:
    def log_recv(self, *args: object) -> None: ...
    def log_send(self, *args: object) -> None: ...
    def log_request(self, *args: object) -> None: ...
    def log_reply(self, *args: object) -> None: ...
    def log_truncated(self, *args: object) -> None: ...
    def log_error(self, *args: object) -> None: ...
    def log_data(self, *args: object) -> None: ...


class FakeUpstream:
    """Both servers; :meth:`stop` takes them down (then queries to it are refused)."""

    def __init__(self, address: str, answers: Answers, port: int = 0) -> None:
        socketserver.UDPServer.allow_reuse_address = True
        self.answers = answers
        self.udp = DNSServer(answers, address=address, port=port, handler=_Handler, logger=_Quiet())
        self.port = int(self.udp.server.server_address[1])
        self.tcp = DNSServer(answers, address=address, port=self.port, tcp=True, handler=_Handler, logger=_Quiet())
        self.address = address
        self.running = False

    @property
    def spec(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> FakeUpstream:
        for server in (self.udp, self.tcp):
            # A short poll interval: shutdown() waits for the loop to look.
            threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.running = False
            for server in (self.udp, self.tcp):
                server.server.shutdown()
                server.server.server_close()


@contextmanager
def upstream(address: str, records: Mapping[tuple[str, str], list[str]], port: int = 0) -> Iterator[FakeUpstream]:
    server = FakeUpstream(address, Answers(records), port).start()
    try:
        yield server
    finally:
        server.stop()


def big_txt(name: str, strings: int = 12) -> list[str]:
    """TXT records far larger than a plain UDP reply."""
    return [f'{name}. 60 IN TXT "{n:02d}{"x" * 198}"' for n in range(strings)]


def loopback_address() -> str:
    """A loopback address of its own for a test that needs port 53 (a fixed one would collide with
    the same test run concurrently by someone else)."""
    return f"127.{random.randint(100, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
