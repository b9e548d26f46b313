"""The command line: exit codes for CI, messages without tracebacks, apply/delete end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler import cli, vocabulary
from reconciler.backends import memory
from reconciler.cli import options
from tests.unit.helpers import new_engine
from tests.unit.test_planner_golden import STACK


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> memory.MemoryEngine:
    shared = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    return shared


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(STACK)
    return path


def test_validate_reports_every_error_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: A}\nspec: {imag: x}\n")
    assert cli.main(["validate", "-f", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:18: metadata.name:" in err
    assert f"{bad}:4:8: spec.imag: unknown field `imag`; did you mean `image`?" in err
    assert f"{bad}:4:7: spec.image: required field is missing" in err
    assert "Traceback" not in err and "3 errors; nothing was changed." in err


def test_validate_a_valid_folder_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(Path(__file__).parents[2] / "manifests")]) == 0
    assert capsys.readouterr().out.startswith("valid:")


def test_plan_exit_codes(engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "-f", str(stack)]) == 2
    assert cli.main(["apply", "-f", str(stack)]) == 0
    assert cli.main(["plan", "-f", str(stack)]) == 0
    assert "No changes" in capsys.readouterr().out
    engine.fail("observe", "*", RuntimeError("x"))  # observe is not failure-injected: stays 0
    stack.write_text(STACK.replace("FOO: a", "FOO: b"))
    assert cli.main(["plan", "-f", str(stack), "-o", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["changes"][0]["reason"] == "spec changed: env.FOO"


def test_apply_prints_plan_steps_and_summary(
    engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    out = capsys.readouterr().out
    assert "Plan: 4 to create (7 steps)." in out
    assert "✓ 7. start container web" in out
    assert "Done: 7 done, 0 failed, 0 skipped of 7 steps." in out


def test_apply_failure_exits_1(engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler import errors

    engine.fail("create_container", "db", errors.NotFound("image 127.0.0.1:5000/x: manifest unknown"))
    assert cli.main(["apply", "-f", str(stack)]) == 1
    out = capsys.readouterr().out
    assert "✗ 4. create container db: image 127.0.0.1:5000/x: manifest unknown" in out


def test_delete_keeps_volumes_unless_asked(engine: memory.MemoryEngine, stack: Path) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    assert cli.main(["delete", "--stack", "shop"]) == 0
    assert not engine.containers and not engine.networks
    assert set(engine.volumes) == {"data"}
    assert cli.main(["delete", "-f", str(stack), "--prune-volumes"]) == 0
    assert not engine.volumes


def test_plan_error_is_one_clear_message(engine: memory.MemoryEngine, stack: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert cli.main(["apply", "-f", str(stack)]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(STACK.replace("stack: shop", "stack: other"))
    assert cli.main(["plan", "-f", str(other)]) == 1
    err = capsys.readouterr().err
    assert "error: cannot plan: container db is declared in stack 'other'" in err


def test_status_reports_drift(engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    engine.stop_container("web")
    capsys.readouterr()
    assert cli.main(["status", "-f", str(stack), "-o", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["objects"]}
    assert rows["web"]["state"] == "exited" and rows["web"]["exitCode"] == 137
    assert rows["web"]["drift"] == "start: drift: exited (137), restart policy always"
    assert rows["db"]["drift"] == ""


def test_exec_passes_the_exit_code(engine: memory.MemoryEngine, stack: Path) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    assert cli.main(["exec", "web", "--", "false"]) == 1
    assert cli.main(["exec", "web", "--", "true"]) == 0
    assert cli.main(["exec", "ghost", "--", "true"]) == 125


def test_stats_lists_running_containers(
    engine: memory.MemoryEngine, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    engine.stop_container("web")
    capsys.readouterr()
    assert cli.main(["stats", "-o", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert "web" not in rows and rows["db"]["pids"] == 1 and rows["db"]["memoryBytes"] > 0
    assert cli.main(["stats", "db"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "CPU", "TIME", "MEMORY", "LIMIT", "PIDS"] and lines[1].startswith("db ")
    assert cli.main(["stats", "web"]) == 1  # not running: one clear error, no traceback
    assert "web is not running" in capsys.readouterr().err


def test_unexpected_errors_are_not_tracebacks(monkeypatch: pytest.MonkeyPatch, stack: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    def broken(args: object) -> None:
        raise OSError("socket exploded")

    monkeypatch.setattr(options, "open_engine", broken)
    assert cli.main(["plan", "-f", str(stack)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: OSError: socket exploded") and "Traceback" not in err


def test_manifests_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr(
        "sys.stdin", io.StringIO("apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v, stack: s}\n")
    )
    assert cli.main(["validate", "-f", "-"]) == 0
    assert capsys.readouterr().out == "valid: 1 object (0 containers, 0 networks, 1 volume) in stack s\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: Volume\n"))
    assert cli.main(["validate", "-f", "-"]) == 1
    assert "<stdin>:1:1: apiVersion: required field is missing" in capsys.readouterr().err


def test_help_texts_carry_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["plan", "--help"])
    out = capsys.readouterr().out
    assert "example:" in out and "reconcile plan -f stack.yaml -o json" in out


def test_cli_start_up_leaves_the_heavy_modules_unloaded() -> None:
    """A command the daemon serves must start without pydantic, YAML or an engine's client: the
    no-op ``apply`` through the daemon is measured against ``docker compose`` (bench/)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from reconciler import cli\n"
        "cli.build_parser().parse_args(['apply', '-f', 'x.yaml'])\n"
        "heavy = ('pydantic', 'yaml', 'docker', 'requests', 'watchdog', 'pyroute2',\n"
        "         'reconciler.manifests', 'reconciler.planning', 'reconciler.controller')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported at start-up: {done.stdout.strip()}"


def test_image_pull_offers_the_pull_policies() -> None:
    parser = cli.build_parser()
    for policy in vocabulary.PULL_POLICIES:
        assert parser.parse_args(["image", "pull", "x:1", "--policy", policy]).policy == policy
    with pytest.raises(SystemExit):
        parser.parse_args(["image", "pull", "x:1", "--policy", "Sometimes"])


GLOBAL = ["--engine", "docker", "--root", "/srv/r", "--socket", "none"]


@pytest.mark.parametrize(
    "command",
    [["apply", "-f", "s.yaml"], ["plan", "-f", "s.yaml", "-o", "json"], ["delete", "--stack", "shop"], ["status"],
     ["logs", "web"], ["stats"], ["validate", "-f", "s.yaml"], ["image", "ls"], ["watch", "dir"], ["events"]],
)  # fmt: skip
def test_global_options_work_before_and_after_the_command(command: list[str]) -> None:
    parser = cli.build_parser()
    before = options.of(parser.parse_args([*GLOBAL, *command]))
    after = options.of(parser.parse_args([*command, *GLOBAL]))
    assert before == after == options.GlobalOptions("docker", Path("/srv/r"), "none")


def test_global_options_default_from_the_environment_and_the_last_one_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_ENGINE", "docker")
    monkeypatch.setenv("RECONCILER_ROOT", "/env/root")
    monkeypatch.setenv("RECONCILER_SOCKET", "/env/api.sock")
    parser = cli.build_parser()
    assert options.of(parser.parse_args(["status"])) == options.GlobalOptions(
        "docker", Path("/env/root"), "/env/api.sock"
    )
    assert options.of(parser.parse_args(["--root", "/a", "status", "--root", "/b"])).root == Path("/b")
    # ``exec``: everything after the container's name is the command's own argv.
    parsed = parser.parse_args(["exec", "--engine", "native", "web", "ls", "--root", "x"])
    assert options.of(parsed).engine == "native" and parsed.argv == ["ls", "--root", "x"]


def test_apply_with_the_engine_after_the_command_drives_that_engine(
    monkeypatch: pytest.MonkeyPatch, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen: list[str] = []

    def opened(given: options.GlobalOptions) -> memory.MemoryEngine:
        chosen.append(given.engine)
        return new_engine()  # a fresh engine each time: both applies start from nothing

    def untimed(text: str) -> str:
        return re.sub(r" \(\d+\.\d+s\)", "", text)

    monkeypatch.setattr(options, "open_engine", opened)
    assert cli.main(["apply", "-f", str(stack), "--engine", "docker", "--socket", "none"]) == 0
    after = untimed(capsys.readouterr().out)
    assert cli.main(["--engine", "docker", "--socket", "none", "apply", "-f", str(stack)]) == 0
    before = untimed(capsys.readouterr().out)
    assert before == after and "Done: 7 done" in after and chosen == ["docker", "docker"]
