"""The native engine's container records as read by :class:`records.Records`: each record parsed
once per change of its file, whoever asks and however often, and every change seen at once.

Records are written here by hand with the engine's own writer (``files.write_json``); their
times are set an hour back (``os.utime``) where a test needs them trusted: a file changed within
``records.RACY_SECONDS`` of its reading is parsed again on purpose.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors, files
from reconciler.backends.native import records


class CountingJson:
    """Stands in for the ``json`` module in :mod:`records`: counts the files it parses."""

    def __init__(self) -> None:
        self.parsed = 0

    def loads(self, text: str | bytes) -> Any:
        self.parsed += 1
        return json.loads(text)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> CountingJson:
    counter = CountingJson()
    monkeypatch.setattr(records, "json", counter)
    return counter


def write(base: Path, container_id: str, name: str, *, age: float = 3600.0, **fields: Any) -> Path:
    directory = base / container_id
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / records.RECORD
    files.write_json(path, {"name": name, "labels": {}, "started_at": None, **fields}, durable=False)
    if age:
        moment = time.time() - age
        os.utime(path, (moment, moment))
    return path


def container_id(index: int) -> str:
    return f"{index:064x}"


def test_listing_and_finding_parse_each_record_once(tmp_path: Path, parses: CountingJson) -> None:
    # Before: every all() and every find() read and parsed every record (a create asks ~6 times,
    # so an apply of N containers parsed N*N*6 files).
    store = records.Records(tmp_path)
    count = 200
    for index in range(count):
        write(tmp_path, container_id(index), f"c{index}")
    for _ in range(5):
        assert len(store.all()) == count
    for index in range(count):
        assert store.get(f"c{index}").container_id == container_id(index)
    assert store.find("absent") is None
    assert parses.parsed == count


def test_a_replaced_record_is_read_again_at_once(tmp_path: Path, parses: CountingJson) -> None:
    store = records.Records(tmp_path)
    write(tmp_path, container_id(1), "web")
    assert store.get("web").data["started_at"] is None
    # Another process starts it (a new file renamed over the old, its time now): seen at once.
    files.write_json(tmp_path / container_id(1) / records.RECORD, {"name": "web", "started_at": 12.5}, durable=False)
    assert store.get("web").data["started_at"] == 12.5
    assert [record.data["started_at"] for record in store.all()] == [12.5]


def test_a_just_written_record_is_not_trusted_until_its_time_is_past(
    tmp_path: Path, parses: CountingJson, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file changed within RACY_SECONDS of its reading could change again with the same identity
    # (same tick, a freed inode number reused): it is parsed on every reading until then.
    store = records.Records(tmp_path)
    write(tmp_path, container_id(1), "web", age=0)
    monkeypatch.setattr(records, "RACY_SECONDS", 3600.0)
    for _ in range(3):
        store.all()
    assert parses.parsed == 3
    monkeypatch.setattr(records, "RACY_SECONDS", 0.0)
    for _ in range(3):
        store.all()
    assert parses.parsed == 4


def test_renamed_and_removed_containers_are_found_as_they_are_now(tmp_path: Path) -> None:
    store = records.Records(tmp_path)
    write(tmp_path, container_id(1), "web.next")
    write(tmp_path, container_id(2), "web")
    assert store.get("web").container_id == container_id(2)
    # A replacement: the old container goes, the new one takes its name.
    for leftover in (tmp_path / container_id(2)).iterdir():
        leftover.unlink()
    (tmp_path / container_id(2)).rmdir()
    record = store.get("web.next")
    record.data["name"] = "web"
    record.save()
    assert store.get("web").container_id == container_id(1)
    assert store.find("web.next") is None
    with pytest.raises(errors.NotFound, match="container web.next not found"):
        store.get("web.next")
    assert [r.name for r in store.all()] == ["web"]


def test_a_changed_record_that_was_not_saved_changes_nothing_for_other_readers(tmp_path: Path) -> None:
    store = records.Records(tmp_path)
    write(tmp_path, container_id(1), "web", restart_count=0)
    mine = store.get("web")
    mine.data["restart_count"] = 5  # as a writer does before its save; the save failed
    assert store.get("web").data["restart_count"] == 0
    assert store.all()[0].data["restart_count"] == 0


def test_unreadable_records_are_skipped_and_read_once_repaired(tmp_path: Path) -> None:
    store = records.Records(tmp_path)
    write(tmp_path, container_id(1), "web")
    broken = tmp_path / container_id(2)
    broken.mkdir()
    (broken / records.RECORD).write_text("{not json")
    (tmp_path / container_id(3)).mkdir()  # a container being made: no record yet
    assert [r.name for r in store.all()] == ["web"]
    write(tmp_path, container_id(2), "db")
    assert [r.name for r in store.all()] == ["web", "db"]  # in container id order
    assert records.Records(tmp_path / "absent").all() == []
