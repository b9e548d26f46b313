"""The native hand-over's reading of the kernel's TCP tables and its choice of a successor
(the hand-over itself, with real DNAT rules and connections, is in
tests/integration/native/test_rollout.py)."""

from __future__ import annotations

from pathlib import Path

from reconciler.backends.native import handover, records

# A /proc/net/tcp table: a listener on 8080 (0A), two connections to it (established, and one
# whose peer is done sending), one to 8081, and a connection the container made out to port 8080.
TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 0200110A:1F90 0100110A:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0
   2: 0200110A:1F90 0100110A:C351 08 00000000:00000000 00:00000000 00000000     0        0 3 1 0
   3: 0200110A:1F91 0100110A:C352 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0
   4: 0200110A:D431 0300110A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0
   5: 0200110A:1F90 0100110A:C353 06 00000000:00000000 00:00000000 00000000     0        0 6 1 0
"""


def test_only_connections_in_flight_to_the_ports_count(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(TABLE)
    assert handover.count_in_flight(str(table), {8080}) == 2  # not the listener, nor TIME_WAIT (06)
    assert handover.count_in_flight(str(table), {8080, 8081}) == 3
    assert handover.count_in_flight(str(table), {9999}) == 0


def _record(folder: Path, name: str, ports: list[dict[str, object]]) -> records.Record:
    record = records.Record(name[0] * 64, folder / name, {"name": name, "spec": {"image": "busybox", "ports": ports}})
    record.directory.mkdir(parents=True)
    return record


class _Store(records.Records):
    """Records by name, without a root (``successor`` only looks names up)."""

    def __init__(self, *present: records.Record) -> None:
        self.present = {record.name: record for record in present}

    def find(self, name: str) -> records.Record | None:
        return self.present.get(name)


def test_a_successor_is_a_running_staged_replacement_sharing_a_host_port(tmp_path: Path) -> None:
    port = {"hostIP": "127.0.0.1", "hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    old = _record(tmp_path, "web", [port])
    elsewhere = _record(tmp_path / "a", "web.next", [{**port, "hostPort": 8081}])
    staged = _record(tmp_path / "b", "web.next", [port])
    assert handover.successor(_Store(old), old) is None  # no replacement at all
    assert handover.successor(_Store(old, elsewhere), old) is None  # it publishes none of the old one's ports
    assert handover.successor(_Store(old, staged), old) is None  # created, not running: nothing to hand over
    assert handover.successor(_Store(old, staged), staged) is None  # a replacement hands over to no one
    assert handover.before_stop(_Store(old, staged), old, 5.0) is False  # and no rule is touched
