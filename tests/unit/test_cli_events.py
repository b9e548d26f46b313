"""``reconcile events`` without a daemon: the engine's history in order, then (following) what is new.

The memory engine stands for any engine with a history; the native engine's history is read
from container records written here by hand (no runtime needed to read them).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import cli, engine, files, observed
from reconciler.backends import memory
from reconciler.backends.native import events as native_events
from reconciler.backends.native import records
from reconciler.cli import options
from tests.unit.helpers import IMAGE, IMAGE_ID
from tests.unit.test_planner_golden import STACK

NO_DAEMON = ["--socket", "none"]


@pytest.fixture
def engine_(monkeypatch: pytest.MonkeyPatch) -> memory.MemoryEngine:
    ticks = itertools.count(1_800_000_000)  # one second per reading: every event has its own moment
    shared = memory.MemoryEngine(images={IMAGE: IMAGE_ID}, clock=lambda: float(next(ticks)))
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    return shared


@pytest.fixture
def applied(engine_: memory.MemoryEngine, tmp_path: Path) -> memory.MemoryEngine:
    (tmp_path / "shop.yaml").write_text(STACK)
    assert cli.main([*NO_DAEMON, "apply", "-f", str(tmp_path / "shop.yaml")]) == 0
    engine_.exit("web", 3)
    return engine_


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_no_follow_prints_the_history_in_order_with_stacks_and_returns(
    applied: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli.main([*NO_DAEMON, "events", "--no-follow", "-o", "json"]) == 0
    seen = printed(capsys)
    assert [(e["kind"], e["name"]) for e in seen] == [("create", "db"), ("create", "web"), ("start", "db"),
                                                      ("start", "web"), ("die", "web")]  # fmt: skip
    assert [e["time"] for e in seen] == sorted(float(e["time"]) for e in seen)  # type: ignore[arg-type]
    assert {e["stack"] for e in seen} == {"shop"} and seen[-1]["message"] == "exit code 3"
    assert cli.main([*NO_DAEMON, "events", "--no-follow"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].endswith("die            shop/web: exit code 3") and lines[0].endswith("create         shop/db")


def test_following_prints_the_history_then_only_what_is_new(
    applied: memory.MemoryEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = applied.containers["db"].container_id

    def subscribed(*, stop: threading.Event) -> Iterator[engine.Event]:
        # As the native engine does on subscribing: the run of db it finds going, as a start.
        yield engine.Event(time=1_900_000_000.0, action="start", name="db", container_id=db, stack="shop")
        yield engine.Event(time=1_900_000_001.0, action="die", name="db", container_id=db, exit_code=0, stack="shop")
        yield engine.Event(time=1_900_000_002.0, action="start", name="db", container_id=db, stack="shop")

    monkeypatch.setattr(applied, "events", subscribed)
    capsys.readouterr()
    assert cli.main([*NO_DAEMON, "events", "-o", "json"]) == 0
    seen = [(e["kind"], e["name"]) for e in printed(capsys)]
    # The history, then db's exit and its next start; the replayed start of its old run is not news.
    assert seen == [("create", "db"), ("create", "web"), ("start", "db"), ("start", "web"), ("die", "web"),
                    ("die", "db"), ("start", "db")]  # fmt: skip


def write_record(base: Path, container_id: str, name: str, *, created: float, started: float | None = None,
                 exit_info: dict[str, object] | None = None, stack: str | None = "shop") -> None:  # fmt: skip
    directory = base / container_id
    directory.mkdir(parents=True)
    labels = {observed.LABEL_STACK: stack, observed.LABEL_KIND: "Container"} if stack else {}
    files.write_json(directory / records.RECORD, {"name": name, "labels": labels, "created_at": created,
                                                  "started_at": started})  # fmt: skip
    if exit_info is not None:
        files.write_json(directory / records.EXIT, exit_info)


def test_native_history_comes_from_the_records_in_time_order(tmp_path: Path) -> None:
    base = tmp_path / "containers"
    # Directory order (by id) is not time order.
    write_record(base, "a" * 64, "late", created=30.0, started=31.0)
    write_record(base, "b" * 64, "early", created=10.0, started=11.0,
                 exit_info={"exit_code": 137, "finished_at": 40.0, "oom_killed": True})  # fmt: skip
    # Its exit was stamped before the record noted the start (a quick crash): shown after it.
    write_record(base, "c" * 64, "crash", created=20.0, started=22.0, exit_info={"exit_code": 1, "finished_at": 21.9})
    write_record(base, "d" * 64, "never", created=25.0)
    write_record(base, "e" * 64, "stranger", created=5.0, started=6.0, stack=None)
    found = native_events.history(records.Records(base), since=0.0)
    assert [(e.time, e.action, e.name) for e in found] == [
        (10.0, "create", "early"), (11.0, "start", "early"), (20.0, "create", "crash"), (22.0, "start", "crash"),
        (22.0, "die", "crash"), (25.0, "create", "never"), (30.0, "create", "late"), (31.0, "start", "late"),
        (40.0, "oom", "early"), (40.0, "die", "early"),
    ]  # fmt: skip
    assert {e.stack for e in found} == {"shop"}
    assert [e.exit_code for e in found if e.action == "die"] == [1, 137]
    assert [(e.action, e.name) for e in native_events.history(records.Records(base), since=31.0)] == [
        ("start", "late"), ("oom", "early"), ("die", "early")
    ]  # fmt: skip
