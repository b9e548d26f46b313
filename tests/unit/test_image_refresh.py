"""Watch mode checks ``pullPolicy: Always`` images every ``--image-refresh``: a moved tag rolls
the containers that run it (through the ordinary recreate), a tag that did not move touches
nothing, and a registry that does not answer is an event, not a failed pass."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from reconciler import controller, errors
from reconciler.backends import memory
from reconciler.cli import daemon
from reconciler.controller import images
from tests.unit.controller_support import IMAGE, FakeClock, container_yaml

OLD = "sha256:" + "a1" * 32
NEW = "sha256:" + "b2" * 32


def make(folder: Path, *, interval: float = 60.0) -> tuple[controller.Controller, memory.MemoryEngine, FakeClock]:
    clock = FakeClock()
    target = memory.MemoryEngine(images={IMAGE: OLD}, clock=clock.wall)
    target.registry[IMAGE] = OLD
    ctl = controller.Controller(target, folder, clock=clock, relist_interval=20.0, resync_interval=20.0,
                                image_refresh=interval)  # fmt: skip
    return ctl, target, clock


def kinds(ctl: controller.Controller) -> list[str]:
    return [event["kind"] for event in ctl.events_since(0)]


def settle(ctl: controller.Controller, folder: Path) -> None:
    ctl.file_changed(str(folder))
    ctl.run_ready()


def test_a_moved_tag_rolls_its_containers_after_the_interval(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(container_yaml("web", extra="pullPolicy: Always\n"))
    (tmp_path / "db.yaml").write_text(container_yaml("db", stack="data"))
    ctl, target, clock = make(tmp_path)
    settle(ctl, tmp_path)
    first = target.containers["web"].container_id
    untouched = target.containers["db"].container_id
    assert target.containers["web"].image_id == OLD
    target.registry[IMAGE] = NEW  # someone pushed the tag again
    clock.advance(59.0)
    ctl.tick()
    ctl.run_ready()
    assert target.containers["web"].container_id == first  # not yet due
    clock.advance(1.0)
    ctl.tick()
    ctl.run_ready()
    assert target.containers["web"].image_id == NEW
    assert target.containers["web"].container_id != first
    # Another stack runs the same tag (IfNotPresent): the local tag moved for it too, and its plan
    # would say "image changed" at the next resync anyway; the check rolls it now and says so.
    assert target.containers["db"].container_id != untouched
    assert target.containers["db"].image_id == NEW
    updated = [e for e in ctl.events_since(0) if e["kind"] == "image-updated"]
    assert len(updated) == 1
    assert updated[0]["stack"] == "data,web"
    assert f"image {IMAGE} now names {NEW[:19]}" in updated[0]["message"]
    assert "rolling db, web" in updated[0]["message"]


def test_a_tag_that_did_not_move_touches_nothing(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(container_yaml("web", extra="pullPolicy: Always\n"))
    ctl, target, clock = make(tmp_path)
    settle(ctl, tmp_path)
    first = target.containers["web"].container_id
    pulls = len([call for call in target.calls if call[0] == "pull_image"])
    for _ in range(3):
        clock.advance(60.0)
        ctl.tick()
        ctl.run_ready()
    assert target.containers["web"].container_id == first
    assert len([call for call in target.calls if call[0] == "pull_image"]) == pulls + 3
    assert "image-updated" not in kinds(ctl)


def test_a_registry_that_does_not_answer_is_an_event_and_nothing_changes(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(container_yaml("web", extra="pullPolicy: Always\n"))
    ctl, target, clock = make(tmp_path)
    settle(ctl, tmp_path)
    first = target.containers["web"].container_id
    del target.registry[IMAGE]
    clock.advance(60.0)
    ctl.tick()
    ctl.run_ready()
    assert target.containers["web"].container_id == first
    failed = [e for e in ctl.events_since(0) if e["kind"] == "image-check-failed"]
    assert len(failed) == 1
    assert failed[0]["message"].startswith(f"image {IMAGE}: could not check for a new version")
    assert not ctl.problems.any_error()


def test_interval_zero_never_checks(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(container_yaml("web", extra="pullPolicy: Always\n"))
    ctl, target, clock = make(tmp_path, interval=0.0)
    settle(ctl, tmp_path)
    pulls = len(target.calls)
    target.registry[IMAGE] = NEW
    for _ in range(5):
        clock.advance(images.DEFAULT_IMAGE_REFRESH)
        ctl.tick()
        ctl.run_ready()
    assert target.containers["web"].image_id == OLD
    assert not [call for call in target.calls[pulls:] if call[0] == "pull_image"]


@pytest.mark.parametrize(
    ("text", "seconds"), [(None, 3600.0), ("30m", 1800.0), ("90", 90.0), ("0", 0.0), ("1h30m", 5400.0)]
)
def test_the_option_takes_durations(text: str | None, seconds: float) -> None:
    assert daemon.image_refresh_of(argparse.Namespace(image_refresh=text)) == seconds


def test_a_bad_duration_is_a_clear_error() -> None:
    with pytest.raises(errors.ReconcilerError, match="--image-refresh: 'soon' is not a duration"):
        daemon.image_refresh_of(argparse.Namespace(image_refresh="soon"))
