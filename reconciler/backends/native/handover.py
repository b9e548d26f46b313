"""The hand-over of published host ports from a container to its running replacement (native engine).

A rollout starts ``NAME.next`` beside ``NAME`` with the same host ports (:mod:`assembly` lets a
replacement publish them): both have DNAT rules, ``NAME``'s first, so ``NAME`` serves until the
switch. When ``NAME`` is then stopped, its rules are withdrawn *before* the stop signal, so new
connections reach the replacement at once, and the stop waits (up to its stop timeout) for the
connections ``NAME`` was serving to finish: conntrack keeps an established connection on the
address it was first translated to, so those end on ``NAME`` as they began. Without this a stopped
``NAME`` kept the port's first rule until its removal, and every connection in that gap failed.

Only TCP is drained (UDP has no connection to wait for); a ``NAME`` with no running replacement
that publishes one of its ports is stopped as it always was, its rules kept for its next start.

Where it sits: under the native engine (whose stop calls :func:`before_stop`), beside
:mod:`assembly`; it uses :mod:`firewall` and :mod:`records` and reads the kernel's socket tables
in ``/proc``. It must not stop, start or remove a container.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from reconciler.backends.native import firewall, networks, records

STAGED_SUFFIX = ".next"
# How often the in-flight connections are counted while the old container drains.
DRAIN_POLL = 0.02
# TCP states (``/proc/net/tcp``, hex) of a connection still in flight on the server's side:
# established, a handshake under way, the server's FIN not yet acknowledged, the peer done sending.
_IN_FLIGHT = frozenset({"01", "03", "04", "08"})


def successor(store: records.Records, record: records.Record) -> records.Record | None:
    """The running replacement that publishes one of ``record``'s host ports, if any."""
    if record.name.endswith(STAGED_SUFFIX):
        return None
    ports = _host_ports(record)
    found = store.find(record.name + STAGED_SUFFIX) if ports else None
    if found is None or not ports & _host_ports(found) or not records.is_running(found):
        return None
    return found


def before_stop(
    store: records.Records, record: records.Record, timeout: float, *, clock: Callable[[], float] = time.monotonic
) -> bool:
    """Hand ``record``'s ports over to its running replacement, if it has one, and wait up to
    ``timeout`` seconds for the TCP connections it is serving to end; whether it handed over."""
    if successor(store, record) is None:
        return False
    firewall.remove_owner(record.container_id)
    ports = {port.container_port for port in record.spec.ports if port.protocol == "tcp"}
    deadline = clock() + timeout
    while ports and clock() < deadline and in_flight(record, ports) > 0:
        time.sleep(DRAIN_POLL)
    return True


def in_flight(record: records.Record, ports: set[int]) -> int:
    """How many TCP connections to ``ports`` the container is serving (0 when its network
    namespace cannot be read: it is not running, or its init is not the one that made it)."""
    info = records.read_json(record.directory / records.SUPERVISOR) or {}
    pid = info.get("init_pid")
    try:
        namespace = os.stat(networks.netns_path(record.container_id)).st_ino
        if not pid or os.stat(f"/proc/{pid}/ns/net").st_ino != namespace:
            return 0
        return sum(count_in_flight(f"/proc/{pid}/net/{table}", ports) for table in ("tcp", "tcp6"))
    except OSError:
        return 0


def count_in_flight(path: str, ports: set[int]) -> int:
    """Lines of a ``/proc/net/tcp`` table whose local port is in ``ports`` and state in flight."""
    count = 0
    with open(path, encoding="ascii") as table:
        next(table, None)  # the header
        for line in table:
            fields = line.split()
            if len(fields) > 3 and fields[3] in _IN_FLIGHT and int(fields[1].rpartition(":")[2], 16) in ports:
                count += 1
    return count


def _host_ports(record: records.Record) -> set[tuple[str, int, str]]:
    """``(host address, host port, protocol)`` of the ports ``record`` publishes."""
    return {
        (str(port.get("hostIP") or "0.0.0.0"), int(port["hostPort"]), str(port.get("protocol") or "tcp"))  # noqa: S104
        for port in record.data["spec"].get("ports", [])
        if port.get("hostPort")
    }
