"""The native event stream reads only what changed: an idle stack costs a listing and a ``stat``
per container per scan, no file read; every run is still reported, whichever way it ends.

The keepers here are ``sleep`` processes this test starts (their pid and start time written as a
keeper's ``supervisor.pid.json``), each killed and reaped by the test; records and exit files are
written with the engine's own writer. No runtime is needed: the stream only reads files and waits
on pidfds. Directory times are set an hour back where the test needs a settled directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import engine, files, observed
from reconciler.backends.native import events, processes, records
from tests.support.polling import eventually


class CountingJson:
    """Stands in for the ``json`` module in :mod:`records`: counts the files it parses."""

    def __init__(self) -> None:
        self.parsed = 0

    def loads(self, text: str | bytes) -> Any:
        self.parsed += 1
        return json.loads(text)


@pytest.fixture
def keepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for keeper in started:
            with contextlib.suppress(ProcessLookupError):
                keeper.kill()
            keeper.wait()


def settle(path: Path) -> None:
    """An hour back: not changed "just now" (see ``records.RACY_SECONDS``)."""
    moment = time.time() - 3600
    os.utime(path, (moment, moment))


def start_run(base: Path, container_id: str, keepers: list[subprocess.Popen[bytes]], *, started_at: float) -> int:
    """A container's new run, as the engine records it: its record and its keeper's file."""
    directory = base / container_id
    directory.mkdir(parents=True, exist_ok=True)
    keeper = subprocess.Popen(["sleep", "600"])
    keepers.append(keeper)
    files.write_json(directory / records.SUPERVISOR,
                     {"pid": keeper.pid, "start_time": processes.start_time(keeper.pid)}, durable=False)  # fmt: skip
    files.write_json(directory / records.RECORD, {"name": f"c-{container_id[:4]}", "started_at": started_at,
                     "labels": {observed.LABEL_STACK: "shop"}}, durable=False)  # fmt: skip
    return keeper.pid


def end_run(keepers: list[subprocess.Popen[bytes]], pid: int) -> None:
    keeper = next(k for k in keepers if k.pid == pid)
    keeper.kill()
    keeper.wait()


class Reading:
    """A stream read in a thread, as the controller reads it; stopped by the test."""

    def __init__(self, store: records.Records) -> None:
        self.stream = events.EventStream(store)
        self.received: list[engine.Event] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        eventually(self.stream.first_scan_done.is_set, what="the first scan")

    def _read(self) -> None:
        for event in self.stream.read(stop=self.stop):
            self.received.append(event)

    def scans_pass(self, count: int) -> None:
        done = self.stream.scans
        eventually(lambda: self.stream.scans >= done + count, what=f"{count} more scans")

    def actions(self) -> list[tuple[str, str]]:
        return [(event.action, event.container_id) for event in self.received]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the stream did not end when stopped"


@pytest.fixture
def reading() -> Iterator[list[Reading]]:
    made: list[Reading] = []
    try:
        yield made
    finally:
        for one in made:
            one.close()


def test_an_idle_stack_is_scanned_without_reading_a_file(
    tmp_path: Path, keepers: list[subprocess.Popen[bytes]], reading: list[Reading], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: every scan (four a second) read and parsed every record and keeper file.
    count = 30
    for index in range(count):
        start_run(tmp_path, f"{index:064x}", keepers, started_at=1.0)
        for path in (tmp_path / f"{index:064x}", *(tmp_path / f"{index:064x}").iterdir()):
            settle(path)
    stream = Reading(records.Records(tmp_path))
    reading.append(stream)
    assert len(stream.actions()) == count  # the first scan reports each running container's start
    counter = CountingJson()
    monkeypatch.setattr(records, "json", counter)
    stream.scans_pass(4)
    assert counter.parsed == 0


def test_a_run_that_ends_is_a_die_and_the_next_run_a_start(
    tmp_path: Path, keepers: list[subprocess.Popen[bytes]], reading: list[Reading]
) -> None:
    container_id = "a" * 64
    first = start_run(tmp_path, container_id, keepers, started_at=1.0)
    stream = Reading(records.Records(tmp_path))
    reading.append(stream)
    second = start_run(tmp_path, "b" * 64, keepers, started_at=2.0)
    eventually(lambda: ("start", "b" * 64) in stream.actions(), what="the start of a new container")
    # The next run is recorded while the first one's keeper still lives (a scan sees the change
    # while the container is watched); then the first keeper ends: its die, then the next start.
    third = start_run(tmp_path, container_id, keepers, started_at=6.0)
    stream.scans_pass(2)
    end_run(keepers, first)
    eventually(lambda: stream.actions().count(("start", container_id)) == 2, what="the next run's start")
    # The first start: the run found running by the first scan.
    assert [a for a in stream.actions() if a[1] == container_id] == [
        ("start", container_id), ("die", container_id), ("start", container_id)
    ]  # fmt: skip
    end_run(keepers, third)
    end_run(keepers, second)
    eventually(lambda: len(stream.actions()) == 6, what="the two last dies")
    assert sorted(stream.actions()[4:]) == [("die", container_id), ("die", "b" * 64)]


def test_a_run_over_before_a_scan_is_reported_once_its_exit_is_written(
    tmp_path: Path, keepers: list[subprocess.Popen[bytes]], reading: list[Reading], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keeper is gone and no exit is recorded yet; the exit lands on the tmpfs only (a full
    # disk kept it from the container's directory): no change of the directory tells of it.
    monkeypatch.setattr(records, "KEEPER_EXITS", tmp_path / "exits")
    base = tmp_path / "containers"
    stream = Reading(records.Records(base))
    reading.append(stream)
    container_id = "c" * 64
    with monkeypatch.context() as patched:
        # The keeper is seen dead as soon as it is recorded: as if it ended before the first look.
        patched.setattr(records, "supervisor_alive", lambda record: False)
        start_run(base, container_id, keepers, started_at=7.0)
        stream.scans_pass(3)
        assert stream.actions() == []
        exit_folder = records.keeper_folder(container_id)
        exit_folder.mkdir(parents=True)
        (exit_folder / "exit").write_text("2")
        eventually(lambda: len(stream.actions()) == 2, what="the start and die of the short run")
    assert stream.actions() == [("start", container_id), ("die", container_id)]
    assert [event.exit_code for event in stream.received] == [None, 2]
    stream.scans_pass(3)
    assert len(stream.actions()) == 2  # reported once
