"""The end-to-end tests' stand-in for the Internet's resolvers: a DNS server on a loopback address.

It owns one outside name, :data:`NAME` → :data:`ADDRESS` (TEST-NET-1: no real resolver ever
answers it, so seeing it inside a container proves the query went through this server); every
other A query gets NXDOMAIN, and other types of :data:`NAME` an empty answer (so ``getent hosts``,
which asks AAAA first, falls back to A). dnslib parses and builds the packets.

An engine forwards a stack's outside queries from the host's namespace (the native engine's
per-network server) or from the container's own (dockerd's embedded resolver): the tests run one
server here, in a thread (:func:`serve`), and one in the client container's network namespace
(``nsenter --net=... python -m tests.e2e.fake_upstream ADDRESS``), on the same address, so the
stack's ``dns:`` means the same on both engines. Nothing here queries any real resolver.
"""

from __future__ import annotations

import sys
import threading

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

NAME = "outside.example"
ADDRESS = "192.0.2.80"


class Resolver(BaseResolver):  # type: ignore[misc]
    """Answers :data:`NAME`; counts the queries for it (``asked``)."""

    def __init__(self) -> None:
        self.asked = 0
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        question = request.q
        if str(question.qname).rstrip(".").lower() != NAME:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        with self._lock:
            self.asked += 1
        if question.qtype == QTYPE.A:
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(ADDRESS), ttl=60))
        return reply


class _Quiet:
    """dnslib's logger, silenced (the tests read the answers, not a log)."""

    def __getattr__(self, name: str) -> object:
        return lambda *args: None


def serve(address: str) -> tuple[DNSServer, Resolver]:
    """A server on ``address``:53 (UDP) in this process, in a thread; stop it with :func:`stop`."""
    resolver = Resolver()
    server = DNSServer(resolver, address=address, port=53, logger=_Quiet())
    server.start_thread()
    return server, resolver


def stop(server: DNSServer) -> None:
    """Stop the server's thread and close its socket."""
    server.stop()
    server.server.server_close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.e2e.fake_upstream ADDRESS", file=sys.stderr)
        return 2
    server, _ = serve(argv[0])
    print("ready", flush=True)
    sys.stdin.read()  # until whoever started it closes the pipe, or stops it by its pid
    stop(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
