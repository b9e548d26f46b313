"""Health-gated replacement with automatic rollback, on the memory engine (issue 14, point 4).

A recreate starts the new container first and switches only when it is ready (healthy, or
running for ``minReadySeconds``); when it exits, turns unhealthy or misses its
``progressDeadline``, the new one is removed, the old one keeps serving (started again after a
stop-first), the rollback is remembered in the root and the same spec hash is held back until
the manifest changes. ``dependsOn: healthy`` and ``apply --wait`` see health without a daemon.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler import errors, hashing, manifests, operations, planning, plans, rollouts
from reconciler.backends import memory
from reconciler.holds import Holds
from tests.unit.controller_support import Harness, container_yaml
from tests.unit.helpers import IMAGE, new_engine

# A quick health check for the fake engine: ``true`` passes, ``false`` fails (memory.exec).
QUICK = "{{test: [CMD, '{0}'], interval: 50ms, timeout: 1s, retries: 2}}"


def web(env: str = "a", *, extra: str = "", min_ready: str = "0.2") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: web, stack: shop}}
        spec:
          image: {IMAGE}
          env: {{FOO: {env}}}
          restart: always
          minReadySeconds: {min_ready}
        """) + textwrap.indent(textwrap.dedent(extra), "  ")


def run_apply(engine: memory.MemoryEngine, text: str, root: Path, **options: object) -> operations.Applied:
    desired = manifests.load_text(text, "shop.yaml")
    return operations.apply_desired(engine, desired, planning.Options(**options), parallelism=4,  # type: ignore[arg-type]
                                    holds=Holds(root / "stopped"))  # fmt: skip


def plan_text(engine: memory.MemoryEngine, text: str, root: Path) -> plans.Plan:
    plan, _ = operations.refresh_and_plan(
        engine, manifests.load_text(text, "shop.yaml"), planning.Options(), holds=Holds(root / "stopped")
    )
    return plan


def calls_on(engine: memory.MemoryEngine, *names: str) -> list[tuple[str, str]]:
    return [call for call in engine.mutating_calls() if call[1] in names]


def test_a_replacement_starts_first_and_the_old_one_stops_only_once_it_is_ready(tmp_path: Path) -> None:
    engine = new_engine()
    assert run_apply(engine, web("a"), tmp_path).outcome.ok
    before = len(engine.mutating_calls())
    applied = run_apply(engine, web("b"), tmp_path)
    assert applied.outcome.ok, applied.outcome.summary()
    assert engine.mutating_calls()[before:] == [
        ("create_container", "web.next"), ("start_container", "web.next"), ("stop_container", "web"),
        ("remove_container", "web"), ("rename_container", "web.next"),
    ]  # fmt: skip
    wait = next(r for r in applied.outcome.results if isinstance(r.step.action, plans.AwaitReady))
    assert wait.seconds >= 0.2  # it ran minReadySeconds before the old one was stopped
    assert engine.containers["web"].request.env["FOO"] == "b" and engine.containers["web"].state == "running"
    assert applied.rollbacks == [] and applied.recovered == []


def test_a_replacement_that_exits_is_rolled_back_and_the_old_one_never_stops(tmp_path: Path) -> None:
    engine = new_engine()
    engine.programs[("/bin/crash",)] = memory.Program(exit_code=3)
    assert run_apply(engine, web("a"), tmp_path).outcome.ok
    old_id = engine.containers["web"].container_id
    applied = run_apply(engine, web("b", extra="command: [/bin/crash]\n"), tmp_path)
    assert not applied.outcome.ok
    assert ("stop_container", "web") not in engine.mutating_calls()
    assert set(engine.containers) == {"web"}
    assert engine.containers["web"].container_id == old_id and engine.containers["web"].state == "running"
    [rollback] = applied.rollbacks
    assert rollback.name == "web" and rollback.stack == "shop"
    assert rollback.record.reason == "container web.next exited with code 3"
    assert applied.recovered == [
        "rollback of container web: container web.next exited with code 3; the old container keeps serving "
        "(kept running)"
    ]
    # Remembered in the root: the same spec is held back, and the plan says why.
    assert (tmp_path / "rollbacks" / "web.json").is_file()
    plan = plan_text(engine, web("b", extra="command: [/bin/crash]\n"), tmp_path)
    assert plan.converged
    [note] = plan.notes
    assert note.startswith("container web: held back: v1:sha256:")
    assert "rolled back at 20" in note and note.endswith("UTC, container web.next exited with code 3")


def test_a_fix_rolls_forward_and_forgets_the_rollback(tmp_path: Path) -> None:
    engine = new_engine()
    engine.programs[("/bin/crash",)] = memory.Program(exit_code=3)
    run_apply(engine, web("a"), tmp_path)
    assert run_apply(engine, web("b", extra="command: [/bin/crash]\n"), tmp_path).rollbacks
    applied = run_apply(engine, web("c"), tmp_path)
    assert applied.outcome.ok and engine.containers["web"].request.env["FOO"] == "c"
    assert not (tmp_path / "rollbacks" / "web.json").exists()


def test_force_recreate_tries_a_held_back_spec_again(tmp_path: Path) -> None:
    engine = new_engine()
    engine.programs[("/bin/crash",)] = memory.Program(exit_code=3)
    run_apply(engine, web("a"), tmp_path)
    bad = web("b", extra="command: [/bin/crash]\n")
    run_apply(engine, bad, tmp_path)
    applied = run_apply(engine, bad, tmp_path, force_recreate=frozenset({"web"}))
    assert [type(s.action).__name__ for s in applied.plan.steps][:3] == [
        "CreateContainer", "StartContainer", "AwaitReady"
    ]  # fmt: skip
    assert len(applied.rollbacks) == 1


def test_a_replacement_that_turns_unhealthy_is_rolled_back(tmp_path: Path) -> None:
    engine = new_engine()
    run_apply(engine, web("a", extra=f"healthcheck: {QUICK.format('true')}\n"), tmp_path)
    applied = run_apply(engine, web("b", extra=f"healthcheck: {QUICK.format('false')}\n"), tmp_path)
    [rollback] = applied.rollbacks
    assert rollback.record.reason == "container web.next turned unhealthy (its last probe exited with code 1)"
    assert engine.containers["web"].request.env["FOO"] == "a" and engine.containers["web"].state == "running"
    assert ("exec", "web.next") in engine.calls  # probed here: the fake engine does not probe


def test_a_healthy_replacement_switches_without_waiting_min_ready(tmp_path: Path) -> None:
    engine = new_engine()
    healthy = f"healthcheck: {QUICK.format('true')}\n"
    run_apply(engine, web("a", extra=healthy, min_ready="30"), tmp_path)
    applied = run_apply(engine, web("b", extra=healthy, min_ready="30"), tmp_path)
    assert applied.outcome.ok and engine.containers["web"].request.env["FOO"] == "b"


def test_a_replacement_not_ready_by_its_progress_deadline_is_rolled_back(tmp_path: Path) -> None:
    engine = new_engine()
    slow = "healthcheck: {test: [CMD, 'true'], interval: 1h}\nprogressDeadline: 300ms\n"
    run_apply(engine, web("a"), tmp_path)
    applied = run_apply(engine, web("b", extra=slow), tmp_path)
    [rollback] = applied.rollbacks
    assert rollback.record.reason == (
        "container web.next was not ready within 0.3s (progressDeadline): it was not healthy yet"
    )
    assert engine.containers["web"].request.env["FOO"] == "a"


def test_stop_first_starts_the_old_one_again_when_the_new_one_fails(tmp_path: Path) -> None:
    engine = new_engine()
    engine.programs[("/bin/crash",)] = memory.Program(exit_code=3)
    run_apply(engine, web("a", extra="strategy: stop-first\n"), tmp_path)
    old_id = engine.containers["web"].container_id
    before = len(engine.mutating_calls())
    applied = run_apply(engine, web("b", extra="strategy: stop-first\ncommand: [/bin/crash]\n"), tmp_path)
    assert engine.mutating_calls()[before:] == [
        ("create_container", "web.next"), ("stop_container", "web"), ("start_container", "web.next"),
        ("remove_container", "web.next"), ("start_container", "web"),
    ]  # fmt: skip
    assert engine.containers["web"].container_id == old_id and engine.containers["web"].state == "running"
    assert applied.recovered[0].endswith("(started again)")


def test_a_shared_host_port_is_stop_first_unless_the_engine_hands_it_over(tmp_path: Path) -> None:
    engine = new_engine()
    port = "ports: ['8080:80']\n"
    run_apply(engine, web("a", extra=port), tmp_path)
    desired = manifests.load_text(web("b", extra=port), "shop.yaml")
    actual = engine.observe(images=planning.images_of(desired))
    kinds = [type(s.action).__name__ for s in planning.plan(desired, actual).steps]
    assert kinds[:3] == ["CreateContainer", "StopContainer", "StartContainer"]
    handed = planning.plan(desired, actual, planning.Options(hand_over_ports=True)).steps
    assert [type(s.action).__name__ for s in handed][:3] == ["CreateContainer", "StartContainer", "AwaitReady"]
    # A random host port is never shared: start-first.
    desired = manifests.load_text(web("c", extra="ports: ['80']\n"), "shop.yaml")
    assert [type(s.action).__name__ for s in planning.plan(desired, actual).steps][1] == "StartContainer"


def test_the_rollout_fields_recreate_nothing_and_are_checked(tmp_path: Path) -> None:
    engine = new_engine()
    run_apply(engine, web("a"), tmp_path)
    changed = web("a").replace("minReadySeconds: 0.2", "minReadySeconds: 9\n  strategy: stop-first")
    assert plan_text(engine, changed, tmp_path).converged
    bad = web("a").replace("minReadySeconds: 0.2", "minReadySeconds: 10\n  progressDeadline: 5s")
    with pytest.raises(errors.ManifestError) as caught:
        manifests.load_text(bad, "shop.yaml")
    assert "shop.yaml:5:" in str(caught.value) and "progressDeadline must be longer than minReadySeconds" in str(
        caught.value
    )


def test_depends_on_healthy_waits_for_the_health_check_without_a_daemon(tmp_path: Path) -> None:
    db = textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: db, stack: shop}}
        spec:
          image: {IMAGE}
          healthcheck: CHECK
        ---
        """)
    dependent = web("a", extra="dependsOn: [{name: db, condition: healthy}]\n")
    engine = new_engine()
    applied = run_apply(engine, db.replace("CHECK", QUICK.format("true")) + dependent, tmp_path)
    assert applied.outcome.ok
    steps = {plans.describe(s.action): s for s in applied.plan.steps}
    wait = steps[("await", "container db healthy")]
    assert wait.number in steps[("start", "container web")].after
    # A dependency that never gets healthy: its dependent is not started.
    engine = new_engine()
    applied = run_apply(engine, db.replace("CHECK", QUICK.format("false")) + dependent, tmp_path / "2")
    failed = {plans.describe(r.step.action): r for r in applied.outcome.results if r.status != "done"}
    assert failed[("await", "container db healthy")].error == (
        "container db turned unhealthy (its last probe exited with code 1)"
    )
    assert failed[("start", "container web")].status == "skipped"
    assert engine.containers["web"].state == "created"


def test_wait_ready_probes_when_the_engine_reports_no_health(tmp_path: Path) -> None:
    # The fake engine, like the native one, reports no health: --wait probes by itself.
    for command, pending in (("false", ["web (unhealthy)"]), ("true", [])):
        engine = new_engine()
        text = web("a", extra=f"healthcheck: {QUICK.format(command)}\n")
        run_apply(engine, text, tmp_path)
        desired = manifests.load_text(text, "shop.yaml")
        assert operations.wait_ready(engine, desired, timeout=2.0) == pending


def test_rollback_records_are_durable_and_a_broken_one_is_ignored(tmp_path: Path) -> None:
    records = rollouts.Records(tmp_path / "rollbacks")
    record = planning.RolledBack("v1:sha256:" + "0" * 64, "sha256:" + "1" * 64, 1_700_000_000.0, "it exited")
    records.record("web", record)
    (tmp_path / "rollbacks" / "db.json").write_text("{not json")
    assert rollouts.Records(tmp_path / "rollbacks").load(["web", "db", "absent"]) == {"web": record}
    assert (tmp_path / "rollbacks" / "web.json").stat().st_mode & 0o077 == 0
    assert rollouts.Records(None).load(["web"]) == {}


def test_the_controller_rolls_back_reports_the_rollback_and_does_not_retry(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    harness = Harness(tmp_path / "m", holds=Holds(tmp_path / "root" / "stopped"))
    harness.engine.programs[("/bin/crash",)] = memory.Program(exit_code=3)
    harness.write("shop.yaml", container_yaml("web", stack="shop", extra="minReadySeconds: 0\n"))
    harness.settle()
    old_id = harness.engine.containers["web"].container_id
    harness.write("shop.yaml", container_yaml("web", stack="shop", extra="minReadySeconds: 0\ncommand: [/bin/crash]\n"))
    harness.settle()
    [event] = harness.events("rollback")
    assert event["name"] == "web" and "container web.next exited with code 3" in str(event["message"])
    assert harness.engine.containers["web"].container_id == old_id
    assert harness.engine.containers["web"].state == "running" and "web.next" not in harness.engine.containers
    # Its retry (and every later pass) finds the spec held back: nothing is created again.
    creates = harness.engine.mutating_calls().count(("create_container", "web.next"))
    harness.advance(60.0)
    harness.controller.enqueue("shop")
    harness.controller.run_ready()
    assert harness.engine.mutating_calls().count(("create_container", "web.next")) == creates
    assert len(harness.events("rollback")) == 1
    # Status (GET /status, `reconcile status` through the daemon) names the spec held back.
    [row] = [r for r in harness.controller.status()["objects"] if r["name"] == "web"]
    held = row["heldBack"]
    assert held["specHash"] == hashing.container_hash(
        manifests.load_text(container_yaml("web", stack="shop", extra="minReadySeconds: 0\ncommand: [/bin/crash]\n"),
                            "shop.yaml").containers["web"])  # fmt: skip
    assert held["reason"] == "container web.next exited with code 3"
    assert held["text"].startswith(f"held back: {held['specHash'][:22]}… rolled back at 20")
    assert held["text"].endswith(" UTC, container web.next exited with code 3")
    # A fix rolls forward.
    harness.write("shop.yaml", container_yaml("web", stack="shop", extra="minReadySeconds: 0\nenv: {FIXED: '1'}\n"))
    harness.settle()
    assert harness.engine.containers["web"].request.env == {"FIXED": "1"}
    assert [r["heldBack"] for r in harness.controller.status()["objects"] if r["name"] == "web"] == [None]


def test_a_container_writing_a_named_volume_is_replaced_stop_first(tmp_path: Path) -> None:
    # Two writers of one data folder (two postgres on one cluster) must never overlap.
    volume = "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: data, stack: shop}\n---\n"
    for read_only, second in (("false", "StopContainer"), ("true", "StartContainer")):
        engine = new_engine()
        mount = f"mounts: [{{type: volume, source: data, target: /data, readOnly: {read_only}}}]\n"
        run_apply(engine, volume + web("a", extra=mount), tmp_path / read_only)
        desired = manifests.load_text(volume + web("b", extra=mount), "shop.yaml")
        steps = planning.plan(desired, engine.observe(images=planning.images_of(desired))).steps
        assert [type(s.action).__name__ for s in steps][:2] == ["CreateContainer", second]
