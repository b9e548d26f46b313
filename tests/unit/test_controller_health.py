"""Health checks through exec (Docker's state machine) and dependsOn gating, on a fake clock."""

from __future__ import annotations

from pathlib import Path

from reconciler import errors, manifests
from reconciler.controller import health
from tests.unit.controller_support import Harness, container_yaml


def _check(test: str, *, interval: str = "1s", retries: int = 3, start_period: str = "0s") -> str:
    return f"healthcheck: {{test: {test}, interval: {interval}, timeout: 1s, retries: {retries}, startPeriod: {start_period}}}\n"


def test_probe_argv_for_cmd_and_cmd_shell() -> None:
    def check(test: list[str]) -> manifests.Healthcheck:
        return manifests.Healthcheck(test=test)

    assert health.probe_argv(check(["CMD", "/bin/check", "-q"])) == ["/bin/check", "-q"]
    assert health.probe_argv(check(["CMD-SHELL", "wget -q localhost || exit 1"])) == [
        "/bin/sh", "-c", "wget -q localhost || exit 1"
    ]  # fmt: skip
    assert health.probe_argv(check(["NONE"])) is None


def test_a_passing_probe_makes_the_container_healthy_after_one_interval(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("db.yaml", container_yaml("db", extra=_check("[CMD, 'true']")))
    harness.settle()
    assert harness.row("db")["health"] == "starting"
    harness.advance(0.9)
    assert harness.row("db")["health"] == "starting"
    harness.advance(0.1)
    assert harness.row("db")["health"] == "healthy"
    assert [call for call in harness.engine.calls if call[0] == "exec"] == [("exec", "db")]


def test_retries_failures_make_it_unhealthy_and_start_period_failures_do_not_count(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("db.yaml", container_yaml("db", extra=_check("[CMD, 'false']", retries=2, start_period="2.5s")))
    harness.settle()
    harness.advance(1.0)
    harness.advance(1.0)  # two failures inside the start period: still starting
    assert harness.row("db")["health"] == "starting"
    harness.advance(1.0)
    assert harness.row("db")["health"] == "starting"
    harness.advance(1.0)
    assert harness.row("db")["health"] == "unhealthy"
    assert harness.events("health")[-1]["message"].startswith("unhealthy")
    assert harness.engine.containers["db"].state == "running", "no restart without onUnhealthy"


def test_on_unhealthy_restarts_the_container_with_backoff(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    extra = _check("[CMD, 'false']", retries=1) + "restart: {policy: always, onUnhealthy: true}\n"
    harness.write("db.yaml", container_yaml("db", extra=extra))
    harness.settle()
    harness.advance(1.0)
    assert harness.row("db")["health"] == "unhealthy"
    harness.advance(0.1)  # the default first backoff
    calls = [c for c in harness.engine.mutating_calls() if c[1] == "db"]
    assert calls[-2:] == [("stop_container", "db"), ("start_container", "db")]
    assert harness.engine.containers["db"].state == "running"
    assert harness.row("db")["restarts"] == 1


def test_a_probe_error_counts_as_a_failure(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.write("db.yaml", container_yaml("db", extra=_check("[CMD, 'true']", retries=1)))
    harness.settle()
    harness.engine.fail("exec", "db", errors.RuntimeFailed("exec failed"))
    harness.advance(1.0)
    assert harness.row("db")["health"] == "unhealthy"
    harness.advance(1.0)
    assert harness.row("db")["health"] == "healthy"


def test_depends_on_healthy_gates_the_start_of_dependents(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    db = container_yaml("db", stack="shop", extra=_check("[CMD, 'true']", interval="5s"))
    web = container_yaml("web", stack="shop", extra="dependsOn: [{name: db, condition: healthy}]\n")
    harness.write("shop.yaml", db + "---\n" + web)
    harness.settle()
    assert "web" not in harness.engine.containers
    assert harness.row("web")["waiting"] == "waiting for db to be healthy"
    harness.advance(4.9)
    assert "web" not in harness.engine.containers
    harness.advance(0.1)  # db's first probe passes; the health change triggers a pass
    assert harness.engine.containers["web"].state == "running"


def test_depends_on_completed_waits_for_a_zero_exit(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    migrate = container_yaml("migrate", stack="shop")
    web = container_yaml("web", stack="shop", extra="dependsOn: [{name: migrate, condition: completed}]\n")
    harness.write("shop.yaml", migrate + "---\n" + web)
    harness.settle()
    assert "web" not in harness.engine.containers
    harness.exit("migrate", 1)
    harness.advance(20)
    assert "web" not in harness.engine.containers
    harness.engine.start_container("migrate")
    harness.exit("migrate", 0)  # the die event with exit code 0 triggers a pass at once
    harness.advance(0)
    assert harness.engine.containers["web"].state == "running"


def test_status_and_the_depends_on_gate_agree_while_a_container_starts(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    check = _check("[CMD, 'false']", retries=1, start_period="5s")
    db = container_yaml("db", stack="shop", extra=check + "restart: {policy: always}\n")
    web = container_yaml("web", stack="shop", extra="dependsOn: [{name: db, condition: healthy}]\n")
    harness.write("shop.yaml", db + "---\n" + web)
    harness.settle()
    harness.advance(1.0)  # a failed probe inside the start period: still starting
    assert harness.row("db")["health"] == "starting"
    assert harness.row("web")["waiting"] == "waiting for db to be healthy"
    assert "web" not in harness.engine.containers

    # A restart: the new run has no verdict of the controller's yet, and the engine reports none.
    harness.exit("db", 1)
    harness.advance(0.1)
    assert harness.engine.containers["db"].state == "running"
    declared = harness.controller.desired.container("web")
    assert declared is not None
    seen = harness.controller.passes.last_observed()
    assert harness.row("db")["health"] == "starting"
    assert harness.controller.health.gate(declared, seen) == "waiting for db to be healthy"
    assert harness.row("web")["waiting"] == "waiting for db to be healthy"
