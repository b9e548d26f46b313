"""Containers stopped on purpose (``reconcile stop``) stay stopped under the controller, whatever
their restart policy, until ``start``/``restart`` or an explicit apply (memory engine, fake clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import cli, engine, manifests, operations, planning
from reconciler.backends import memory
from reconciler.cli import options
from reconciler.holds import Holds
from tests.unit.controller_support import Harness, container_yaml
from tests.unit.helpers import new_engine
from tests.unit.test_planner_golden import STACK


def stop_on_purpose(harness: Harness, holds: Holds, name: str) -> None:
    """``reconcile stop NAME`` beside a running controller: the record, the stop, the die event."""
    container_id = harness.engine.containers[name].container_id
    operations.stop_containers(harness.engine, [name], holds=holds)
    assert holds.is_held(name, container_id)
    harness.controller.handle_event(engine.Event(harness.clock.now, "die", name, container_id, exit_code=137))


@pytest.mark.parametrize("engine_restarts", [False, True], ids=["controller-restarts", "engine-restarts"])
def test_a_container_stopped_on_purpose_stays_stopped_until_started(tmp_path: Path, engine_restarts: bool) -> None:
    holds = Holds(tmp_path / "stopped")
    folder = tmp_path / "folder"
    folder.mkdir()
    harness = Harness(folder, engine_restarts=engine_restarts, holds=holds)
    harness.write("web.yaml", container_yaml("web", extra="restart: {policy: always}\n"))
    harness.settle()
    assert harness.engine.containers["web"].state == "running"

    stop_on_purpose(harness, holds, "web")
    harness.advance(3600)  # an hour of resyncs and relists: nothing starts it
    assert harness.engine.containers["web"].state == "exited"
    if not engine_restarts:
        assert [e["name"] for e in harness.events("held")] == ["web"]

    operations.start_containers(harness.engine, ["web"], holds=holds)
    assert harness.engine.containers["web"].state == "running"
    assert holds.held(harness.engine.observe()) == frozenset()
    harness.exit("web", 1)  # its policy applies again
    harness.advance(120)
    assert harness.engine.containers["web"].state == "running"


def test_an_explicit_apply_releases_the_record_and_starts_it(tmp_path: Path) -> None:
    holds = Holds(tmp_path / "stopped")
    target = new_engine()
    desired = manifests.load_sources([("shop.yaml", STACK)])
    operations.apply_desired(target, desired, planning.Options(), parallelism=2, holds=holds)
    operations.stop_containers(target, ["web"], holds=holds)
    assert holds.held(target.observe()) == {"web"}
    # The controller's plan keeps it stopped and says why; an explicit apply starts it.
    kept = planning.plan(desired, target.observe(), planning.Options(held=frozenset({"web"})))
    assert kept.converged
    applied = operations.apply_desired(target, desired, planning.Options(), parallelism=2, holds=holds)
    assert [c.name for c in applied.plan.changes] == ["web"]
    assert target.observe().containers["web"].state == "running"
    assert holds.held(target.observe()) == frozenset()


def test_a_record_holds_one_container_id_only(tmp_path: Path) -> None:
    holds = Holds(tmp_path / "stopped")
    target = new_engine()
    desired = manifests.load_sources([("shop.yaml", STACK)])
    operations.apply_desired(target, desired, planning.Options(), parallelism=2)
    operations.stop_containers(target, ["web"], holds=holds)
    forced = planning.Options(force_recreate=frozenset({"web"}))
    operations.apply_desired(target, desired, forced, parallelism=2)  # a new container, a new id
    assert holds.held(target.observe()) == frozenset()
    operations.stop_containers(target, ["db"], holds=holds)  # drops the stale record on the way
    assert sorted(p.name for p in (tmp_path / "stopped").iterdir()) == ["db"]


def test_the_cli_records_stops_in_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared: memory.MemoryEngine = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(STACK)
    root = tmp_path / "root"
    base = ["--root", str(root), "--socket", "none"]
    assert cli.main([*base, "apply", "-f", str(manifest)]) == 0
    assert cli.main([*base, "stop", "web"]) == 0
    assert (root / "stopped" / "web").read_text() == shared.containers["web"].container_id
    assert (root / "stopped").stat().st_mode & 0o077 == 0
    assert cli.main([*base, "start", "web"]) == 0
    assert not (root / "stopped" / "web").exists()
    capsys.readouterr()
