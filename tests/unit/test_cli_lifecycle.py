"""Day-2 verbs: ``start``/``stop``/``restart``, ``apply --force-recreate``, ``exec -i``/``-t``, and
an apply that says why a container whose restart policy gave up is down (memory engine)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reconciler import cli, errors, plans
from reconciler.backends import memory
from reconciler.cli import options
from tests.unit.helpers import IMAGE, apply, load, new_engine, plan_for
from tests.unit.test_planner_golden import STACK

JOB = f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: job, stack: batch}}
spec:
  image: {IMAGE}
  restart: {{policy: on-failure, maxRetries: 2}}
"""


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> memory.MemoryEngine:
    shared = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    return shared


@pytest.fixture
def stack(tmp_path: Path, engine: memory.MemoryEngine) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(STACK)
    assert cli.main(["apply", "-f", str(path)]) == 0
    return path


def states(engine: memory.MemoryEngine) -> dict[str, str]:
    return {name: c.state for name, c in engine.observe().containers.items()}


def test_stop_keeps_the_container_and_start_runs_it_again(
    engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli.main(["stop", "web"]) == 0
    assert states(engine) == {"db": "running", "web": "exited"}
    printed = capsys.readouterr()
    assert printed.out == "stopped web\n"
    assert printed.err == ""
    assert cli.main(["start", "web"]) == 0
    assert states(engine) == {"db": "running", "web": "running"}
    assert capsys.readouterr().out == "started web\n"


def test_stack_stops_every_container_of_it_and_restart_stops_all_before_starting(
    engine: memory.MemoryEngine, stack: Path
) -> None:
    assert cli.main(["stop", "--stack", "shop", "-t", "0"]) == 0
    assert states(engine) == {"db": "exited", "web": "exited"}
    assert cli.main(["start", "--stack", "shop"]) == 0
    assert states(engine) == {"db": "running", "web": "running"}
    engine.calls.clear()
    assert cli.main(["restart", "--stack", "shop"]) == 0
    assert [call for call in engine.mutating_calls() if call[0] in ("stop_container", "start_container")] == [
        ("stop_container", "db"), ("stop_container", "web"), ("start_container", "db"), ("start_container", "web"),
    ]  # fmt: skip
    assert states(engine) == {"db": "running", "web": "running"}


def test_unknown_or_foreign_names_are_errors_naming_them_and_nothing_is_touched(
    engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = load(STACK).containers["web"].spec
    engine.create_container(plans.ContainerRequest(name="theirs", spec=spec, env={}, labels={}))
    engine.calls.clear()
    capsys.readouterr()
    assert cli.main(["stop", "web", "theirs", "nope"]) == 1
    assert "error: no container managed by reconciler named theirs, nope" in capsys.readouterr().err
    assert cli.main(["restart", "--stack", "elsewhere"]) == 1
    assert "error: stack elsewhere has no containers" in capsys.readouterr().err
    assert engine.mutating_calls() == []
    assert cli.main(["start"]) == 1
    assert "start needs NAME... or --stack NAME" in capsys.readouterr().err


def test_the_help_of_stop_says_a_stopped_container_stays_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["stop", "--help"])
    assert "stays stopped whatever its restart policy" in capsys.readouterr().out


def test_force_recreate_recreates_an_unchanged_container(
    engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = engine.observe().containers["web"].container_id
    capsys.readouterr()
    assert cli.main(["apply", "-f", str(stack), "--force-recreate", "web", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["change"], c["reason"]) for c in document["plan"]["changes"]] == [
        ("web", "recreate", "forced (--force-recreate)")
    ]
    assert engine.observe().containers["web"].container_id != before
    assert cli.main(["plan", "-f", str(stack)]) == 0


def test_force_recreate_of_an_undeclared_container_is_refused(
    engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.calls.clear()
    assert cli.main(["apply", "-f", str(stack), "--force-recreate", "nope"]) == 1
    assert "--force-recreate nope: no manifest declares such a container" in capsys.readouterr().err
    assert engine.mutating_calls() == []


def test_a_forced_recreate_takes_its_namespace_peers_with_it() -> None:
    engine = new_engine()
    text = STACK + "---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {name: side, stack: shop}\n"
    text += f"spec: {{image: {IMAGE}, networkMode: 'container:db'}}\n"
    desired = load(text)
    apply(engine, desired)
    plan = plan_for(engine, desired, force_recreate=frozenset({"db"}))
    assert {(c.name, c.reason) for c in plan.changes} == {
        ("db", "forced (--force-recreate)"), ("side", "container db is recreated (networkMode container:db)"),
    }  # fmt: skip
    with pytest.raises(errors.PlanError):
        plan_for(engine, desired, force_recreate=frozenset({"ghost"}))


def test_apply_says_why_a_container_whose_restart_policy_gave_up_is_down(
    engine: memory.MemoryEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    assert cli.main(["apply", "-f", str(path)]) == 0
    for _ in range(2):  # two restarts: maxRetries used up
        engine.exit("job", 1)
        engine.start_container("job")
    engine.exit("job", 1)
    capsys.readouterr()
    assert cli.main(["stop", "job"]) == 0  # on-failure: nothing starts it again, no warning
    assert capsys.readouterr().err == ""
    assert cli.main(["apply", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    assert "No changes" in out
    assert (
        "Note: container job is not started: it exited (1) and its restart policy gave up after 2 restarts "
        "(maxRetries 2); `reconcile restart job` starts it again"
    ) in out
    assert cli.main(["restart", "job"]) == 0
    assert states(engine) == {"job": "running"}


def test_a_completed_or_retrying_job_has_no_gave_up_note(engine: memory.MemoryEngine) -> None:
    desired = load(JOB)
    apply(engine, desired)
    engine.exit("job", 0)
    assert plan_for(engine, desired).notes == ()
    engine.start_container("job")
    engine.exit("job", 1)  # one restart made, one retry left: the apply starts it
    assert [c.change for c in plan_for(engine, desired).changes] == ["start"]


def test_exec_i_passes_stdin_through(
    engine: memory.MemoryEngine, stack: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"echo hi\n")))
    assert cli.main(["exec", "-i", "web", "--", "cat"]) == 0
    assert capfdbinary.readouterr().out == b"echo hi\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"unread\n")))
    assert cli.main(["exec", "web", "--", "cat"]) == 0  # without -i: an empty input
    assert capfdbinary.readouterr().out == b""


def test_exec_t_needs_a_terminal_and_an_engine_that_opens_one(
    engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.calls.clear()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert cli.main(["exec", "-it", "web", "--", "sh"]) == 1
    assert "the input device is not a TTY" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert cli.main(["exec", "-it", "web", "--", "sh"]) == 1
    assert "the memory engine cannot open a terminal; use -i" in capsys.readouterr().err
    assert not [call for call in engine.calls if call[0] == "exec"]
