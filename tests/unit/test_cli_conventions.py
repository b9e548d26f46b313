"""The command line's conventions for scripts and people: exit codes of usage errors, empty input
as an error, counted nouns, ``validate -o json``, ``--version``, the restart-policy warning, colour."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import api, cli, client, errors, executing, vocabulary
from reconciler.backends import memory
from reconciler.cli import apply, options
from tests.unit.controller_support import Harness, container_yaml
from tests.unit.helpers import IMAGE, load, new_engine, plan_for
from tests.unit.helpers import apply as apply_desired
from tests.unit.test_planner_golden import STACK

ROOT = Path(__file__).parents[2]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> memory.MemoryEngine:
    shared = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    monkeypatch.setenv("RECONCILER_SOCKET", "none")
    monkeypatch.delenv("NO_COLOR", raising=False)
    return shared


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(STACK)
    return path


# ---------------------------------------------------------------------------------------------
# Usage errors exit 1: 2 is plan's "changes pending"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["--bogus"], ["plan"], ["plan", "-f", "s.yaml", "--nope"], ["apply", "-f"], ["image", "ls", "--zz"],
     ["status", "-o", "yaml"], ["nosuchcommand"]],
)  # fmt: skip
def test_usage_errors_exit_1_not_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "usage: reconcile" in err and "error:" in err


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["plan", "--help"])
    assert exited.value.code == 0
    assert "usage: reconcile plan" in capsys.readouterr().out


def test_usage_errors_exit_1_through_python_dash_m_and_the_console_script() -> None:
    ran = subprocess.run([sys.executable, "-m", "reconciler.cli", "plan", "-f", "s.yaml", "--nope"], capture_output=True, text=True,
                         cwd=ROOT, check=False)  # fmt: skip
    assert ran.returncode == 1 and "unrecognized arguments: --nope" in ran.stderr
    script = Path(sys.executable).parent / "reconcile"
    if script.exists():  # installed in this interpreter's environment (a venv, CI)
        ran = subprocess.run([str(script), "--bogus", "status"], capture_output=True, text=True, check=False)
        assert ran.returncode == 1 and "unrecognized arguments: --bogus" in ran.stderr


# ---------------------------------------------------------------------------------------------
# --version
# ---------------------------------------------------------------------------------------------


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"reconcile {importlib.metadata.version('reconciler')}\n"


def test_version_falls_back_to_pyproject_when_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out == f"reconcile {expected}\n"


# ---------------------------------------------------------------------------------------------
# Empty input is an error
# ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["folder", "file", "comments"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "folder":
        path = tmp_path / "emptydir"
        path.mkdir()
        (path / "notes.txt").write_text("not a manifest\n")
        return path
    path = tmp_path / "empty.yaml"
    path.write_text("" if request.param == "file" else "# nothing yet\n---\n")
    return path


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "hash"])
def test_no_manifests_found_exits_1(
    command: str, empty: Path, engine: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([command, "-f", str(empty)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: no manifests found in {empty}\n"
    assert "No changes" not in captured.out
    assert not engine.observe().containers


def test_an_empty_path_beside_manifests_is_no_error(
    tmp_path: Path, stack: Path, engine: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert cli.main(["validate", "-f", str(stack), "-f", str(tmp_path / "empty.yaml")]) == 0


def test_apply_of_an_empty_file_prunes_nothing(
    tmp_path: Path, stack: Path, engine: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    before = engine.observe()
    stack.write_text("")
    assert cli.main(["apply", "-f", str(stack)]) == 1
    assert engine.observe() == before


def test_delete_of_an_unknown_stack_exits_1_and_changes_nothing(
    stack: Path, engine: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    before = engine.observe()
    capsys.readouterr()
    assert cli.main(["delete", "--stack", "nosuch"]) == 1
    assert capsys.readouterr().err == "error: no stack named nosuch; nothing was changed\n"
    assert cli.main(["delete", "--stack", "shop", "--stack", "nosuch"]) == 1
    assert engine.observe() == before


def test_a_stack_with_only_its_kept_volume_still_exists(
    stack: Path, engine: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["apply", "-f", str(stack)]) == 0
    assert cli.main(["delete", "--stack", "shop"]) == 0
    assert engine.observe().volumes and not engine.observe().containers
    assert cli.main(["delete", "--stack", "shop", "--prune-volumes"]) == 0
    assert not engine.observe().volumes
    capsys.readouterr()
    assert cli.main(["delete", "--stack", "shop"]) == 1
    assert "no stack named shop" in capsys.readouterr().err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "m").mkdir()
    harness = Harness(tmp_path / "m")
    harness.write("shop.yaml", container_yaml("web"))
    harness.settle()
    socket_path = str(tmp_path / "run" / "api.sock")
    server = api.Server(harness.controller, socket_path=socket_path, poll_interval=0.05)
    server.start()
    yield socket_path
    server.stop()


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_no_manifests_found_through_the_daemon(command: str, served: str, empty: Path) -> None:
    """The daemon refuses empty texts too (its API answers ``no-manifests``), and the CLI names
    the paths as they were typed, exactly as embedded."""
    through = apply.plan_via_daemon if command == "plan" else apply.apply_via_daemon
    args = argparse.Namespace(engine="memory", root="/nonexistent", socket=served, output="text", file=[str(empty)],
                              prune=True, prune_volumes=False, parallelism=2, wait=False, force_recreate=[], yes=False)  # fmt: skip
    with pytest.raises(errors.NoManifests, match=f"^no manifests found in {empty}$"):
        through(args)


def test_the_api_answers_no_manifests_for_texts_without_objects(served: str) -> None:
    daemon = client.Client(served)
    with pytest.raises(client.ApiError) as refused:
        daemon.plan([("/srv/empty.yaml", "# nothing\n")], prune=True, prune_volumes=False)
    assert refused.value.body == {"error": "no manifests found in /srv/empty.yaml", "kind": "no-manifests"}


# ---------------------------------------------------------------------------------------------
# Counted nouns, validate -o json
# ---------------------------------------------------------------------------------------------


def test_counted_nouns() -> None:
    assert [vocabulary.counted(n, "network") for n in (0, 1, 2)] == ["0 networks", "1 network", "2 networks"]


def test_one_step_is_one_step() -> None:
    target = new_engine()
    desired = load("""
        apiVersion: reconciler/v1
        kind: Volume
        metadata: {name: data, stack: shop}
    """)
    plan = plan_for(target, desired)
    assert plan.summary() == "Plan: 1 to create (1 step)."
    outcome = executing.execute(plan, target)
    assert outcome.summary() == "1 done, 0 failed, 0 skipped of 1 step"


def test_validate_counts_in_the_singular_and_plural(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(stack)]) == 0
    assert capsys.readouterr().out == "valid: 4 objects (2 containers, 1 network, 1 volume) in stack shop\n"


def test_one_error_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v, stack: s}\nspec: {drivr: x}\n")
    assert cli.main(["validate", "-f", str(bad)]) == 1
    assert capsys.readouterr().err.endswith("\n1 error; nothing was changed.\n")


def test_validate_json(stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(stack), "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is True and document["stacks"] == ["shop"]
    assert set(document) == {"valid", "stacks", "containers", "networks", "volumes"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v, stack: s}\nspec: {drivr: x}\n")
    assert cli.main(["validate", "-f", str(bad), "-o", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is False
    assert document["errors"][0]["file"] == str(bad) and document["errors"][0]["line"] == 4


# ---------------------------------------------------------------------------------------------
# The restart-policy warning of a native apply
# ---------------------------------------------------------------------------------------------

ONE_CONTAINER = f"""\
apiVersion: reconciler/v1
kind: Container
metadata: {{name: job, stack: batch}}
spec:
  image: {IMAGE}
  command: [sh, -c, "true"]
"""


@pytest.mark.parametrize("restart", ["", "  restart: {policy: 'no'}\n", "  restart: {policy: always}\n"])
def test_no_restart_warning_the_native_engine_restarts_without_a_daemon(
    restart: str, tmp_path: Path, engine: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "batch.yaml"
    manifest.write_text(ONE_CONTAINER + restart)
    assert cli.main(["--engine", "native", "apply", "-f", str(manifest)]) == 0
    assert "restart polic" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Colour: on a terminal only, never with NO_COLOR
# ---------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_colour_when_piped(stack: Path, engine: memory.MemoryEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "-f", str(stack)]) == 2
    assert cli.main(["apply", "-f", str(stack)]) == 0
    assert "\033[" not in capsys.readouterr().out


def test_colour_on_a_terminal(stack: Path, engine: memory.MemoryEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert cli.main(["plan", "-f", str(stack)]) == 2
    plan_text = terminal.getvalue()
    assert "  \033[32m+\033[0m container web (shop): create" in plan_text
    assert cli.main(["apply", "-f", str(stack)]) == 0
    assert "  \033[32m✓\033[0m 1. " in terminal.getvalue()


def test_no_colour_with_no_color(stack: Path, engine: memory.MemoryEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli.main(["plan", "-f", str(stack)]) == 2
    assert cli.main(["apply", "-f", str(stack)]) == 0
    assert "\033[" not in terminal.getvalue() and "+ container" in terminal.getvalue()


def test_colour_of_a_changed_field(stack: Path, engine: memory.MemoryEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_desired(engine, load(STACK))
    stack.write_text(STACK.replace("FOO: a", "FOO: b"))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert cli.main(["plan", "-f", str(stack)]) == 2
    assert "      \033[33m~\033[0m env.FOO: " in terminal.getvalue()
