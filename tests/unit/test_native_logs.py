"""The native engine's log reader on files written as conmon writes them (k8s-file) and as the
Python keeper before it did (json-file), with no container: what ``reconcile logs`` shows."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from reconciler.backends.native import logs, records
from tests.support.polling import eventually

STAMP = "2026-12-01T02:50:00.123456789+00:00"


def entry(stream: str, tag: str, text: str) -> str:
    return f"{STAMP} {stream} {tag} {text}\n"


def shown(directory: Path, tail: int | None = None) -> list[tuple[str, str]]:
    return [(line.stream, line.text) for line in logs.read(directory, running=lambda: False, tail=tail)]


def test_k8s_file_lines_read_as_json_file_lines_were(tmp_path: Path) -> None:
    (tmp_path / logs.LOG).write_text(
        entry("stdout", "F", "hello") + entry("stderr", "F", "oops") + entry("stdout", "F", "")
        + entry("stdout", "F", "a line with  two spaces ")
    )  # fmt: skip
    assert shown(tmp_path) == [("stdout", "hello"), ("stderr", "oops"), ("stdout", ""),
                               ("stdout", "a line with  two spaces ")]  # fmt: skip
    assert shown(tmp_path, tail=2) == [("stdout", ""), ("stdout", "a line with  two spaces ")]
    assert shown(tmp_path, tail=0) == []


def test_parts_of_a_long_line_are_one_line_per_stream(tmp_path: Path) -> None:
    (tmp_path / logs.LOG).write_text(
        entry("stdout", "P", "aaa") + entry("stderr", "F", "between") + entry("stdout", "P", "bbb")
        + entry("stdout", "F", "ccc")
    )  # fmt: skip
    assert shown(tmp_path) == [("stderr", "between"), ("stdout", "aaabbbccc")]


def test_json_file_lines_of_an_older_keeper_come_first_and_broken_lines_show_as_they_are(tmp_path: Path) -> None:
    (tmp_path / f"{logs.LOG}.2").write_text('{"log":"one\\n","stream":"stdout","time":"x"}\n')
    (tmp_path / f"{logs.LOG}.1").write_text('{"log":"two\\n","stream":"stderr","time":"x"}\n')
    cut = f"{STAMP} stdout F cut sho"  # a write cut short on a full disk, then the next entry
    (tmp_path / logs.LOG).write_text(cut + entry("stdout", "F", "next") + "not an entry\n")
    assert shown(tmp_path) == [("stdout", "one"), ("stderr", "two"), ("stdout", f"cut sho{STAMP} stdout F next"),
                               ("stdout", "not an entry")]  # fmt: skip


def test_each_line_has_its_entry_s_time_a_long_line_its_first_part_s(tmp_path: Path) -> None:
    """As Docker's logs API gives each line's time (RFC 3339 with nanoseconds, read to the microsecond)."""
    (tmp_path / f"{logs.LOG}.1").write_text('{"log":"old\\n","stream":"stdout","time":"2026-12-01T02:49:59.5Z"}\n')
    later = "2026-12-01T03:50:01.25+01:00"  # conmon writes the host's offset
    (tmp_path / logs.LOG).write_text(
        entry("stdout", "P", "long ") + f"{later} stdout F line\n" + "garbage\n"
    )  # fmt: skip
    read = [(line.text, line.time) for line in logs.read(tmp_path, running=lambda: False)]
    first = 1796093400.123456  # STAMP, 2026-12-01T02:50:00.123456 UTC
    assert read == [("old", pytest.approx(first - 0.623456)), ("long line", pytest.approx(first)), ("garbage", 0.0)]


def test_a_line_being_written_is_read_once_whole(tmp_path: Path) -> None:
    (tmp_path / logs.LOG).write_text(entry("stdout", "F", "done") + f"{STAMP} stdout F half")
    assert shown(tmp_path) == [("stdout", "done")]


def test_a_follower_reads_the_old_file_to_its_end_across_a_rotation(tmp_path: Path) -> None:
    """conmon rotates by renaming a new file over the log: the follower, holding the old one,
    reads what was written to it after its last look, then the new file."""
    path = tmp_path / logs.LOG
    path.write_text(entry("stdout", "F", "first"))
    running = threading.Event()
    running.set()
    followed: list[str] = []
    lines = logs.read(tmp_path, running=running.is_set, follow=True)
    reader = threading.Thread(target=lambda: followed.extend(line.text for line in lines))
    reader.start()
    eventually(lambda: followed == ["first"], what="the first line")
    with path.open("a") as old:
        fresh = tmp_path / f"{logs.LOG}.tmp"
        fresh.write_text(entry("stdout", "F", "third"))
        old.write(entry("stdout", "F", "second"))  # written to the old file just before it goes
        old.flush()
        os.replace(fresh, path)
    eventually(lambda: followed == ["first", "second", "third"], what="both files' lines, in order")
    running.clear()
    reader.join(timeout=10)
    assert not reader.is_alive() and followed == ["first", "second", "third"]


def test_the_size_given_to_conmon_is_what_docker_keeps_at_most() -> None:
    assert logs.size_limit({"logging": {"maxSize": 1024, "maxFiles": 3}}) == 3072
    assert logs.size_limit({"logging": {"maxSize": 1024}}) == 1024
    assert logs.size_limit({}) is None


def test_an_exit_is_read_from_conmon_s_files_and_the_oom_flag_needs_137(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "KEEPER_EXITS", tmp_path / "run")
    record = records.Record("c" * 64, tmp_path / "dir", {"name": "x"})
    record.directory.mkdir()
    assert records.exit_of(record) is None
    (record.directory / record.container_id).write_text("137")
    (record.directory / "oom").touch()
    info = records.exit_of(record)
    assert info is not None and info["exit_code"] == 137 and info["oom_killed"] is True
    assert info["finished_at"] == (record.directory / record.container_id).stat().st_mtime
    records.keeper_folder(record.container_id).mkdir(parents=True)
    (records.keeper_folder(record.container_id) / "exit").write_text("143")  # read first: written first
    info = records.exit_of(record)
    assert info is not None and info["exit_code"] == 143 and info["oom_killed"] is False
    (record.directory / records.EXIT).write_text('{"exit_code": 127, "finished_at": 1.0, "oom_killed": false}')
    assert records.exit_of(record) == {"exit_code": 127, "finished_at": 1.0, "oom_killed": False}
