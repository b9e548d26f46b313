"""``apply`` asks before removing or recreating containers on a terminal, as terraform does."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import cli
from reconciler.backends import memory
from reconciler.cli import apply, options
from tests.unit.controller_support import Harness, container_yaml, served_controller
from tests.unit.helpers import new_engine
from tests.unit.test_planner_golden import STACK

PARTIAL = "---\n".join(STACK.split("---\n")[:3])  # network, volume and db: web is dropped


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> memory.MemoryEngine:
    shared = new_engine()
    monkeypatch.setattr(options, "open_engine", lambda chosen: shared)
    return shared


def on_terminal(monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal(answer))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)


def applied_then_partial(engine: memory.MemoryEngine, tmp_path: Path) -> Path:
    full, partial = tmp_path / "shop.yaml", tmp_path / "partial.yaml"
    full.write_text(STACK)
    partial.write_text(PARTIAL)
    assert cli.main(["apply", "-f", str(full)]) == 0
    return partial


def test_no_answers_yes_cancels_and_changes_nothing(
    engine: memory.MemoryEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = applied_then_partial(engine, tmp_path)
    capsys.readouterr()
    on_terminal(monkeypatch, "y\n")
    assert cli.main(["apply", "-f", str(partial)]) == 1
    captured = capsys.readouterr()
    assert "container web (shop): remove, orphan (not in the files given: removed)" in captured.out
    assert apply.CONFIRM_PROMPT in captured.out
    assert "Apply cancelled; nothing was changed." in captured.err
    assert "web" in engine.containers


def test_yes_applies(
    engine: memory.MemoryEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = applied_then_partial(engine, tmp_path)
    on_terminal(monkeypatch, "yes\n")
    assert cli.main(["apply", "-f", str(partial)]) == 0
    assert apply.CONFIRM_PROMPT in capsys.readouterr().out
    assert "web" not in engine.containers


def test_dash_y_and_scripts_do_not_ask(
    engine: memory.MemoryEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = applied_then_partial(engine, tmp_path)
    on_terminal(monkeypatch, "")
    assert cli.main(["apply", "-y", "-f", str(partial)]) == 0
    assert apply.CONFIRM_PROMPT not in capsys.readouterr().out
    assert "web" not in engine.containers
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)  # stdin a TTY, stdout piped
    assert cli.main(["apply", "-f", str(tmp_path / "shop.yaml")]) == 0
    assert cli.main(["apply", "-f", str(partial)]) == 0
    assert apply.CONFIRM_PROMPT not in capsys.readouterr().out
    assert "web" not in engine.containers


def test_a_plan_that_only_creates_does_not_ask(
    engine: memory.MemoryEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    full = tmp_path / "shop.yaml"
    full.write_text(STACK)
    on_terminal(monkeypatch, "")
    assert cli.main(["apply", "-f", str(full)]) == 0
    assert apply.CONFIRM_PROMPT not in capsys.readouterr().out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    with served_controller(tmp_path) as serving:
        yield serving


def test_through_the_daemon_the_cli_asks_before_sending_apply(
    served: tuple[Harness, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    harness, socket_path = served
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(container_yaml("web", extra="env: {FOO: b}\n"))  # web recreated
    args = argparse.Namespace(engine="memory", root="/nonexistent", socket=socket_path, output="text", prune=True,
                              prune_volumes=False, parallelism=2, wait=False, yes=False, file=[str(manifest)],
                              force_recreate=[])  # fmt: skip
    on_terminal(monkeypatch, "no\n")
    assert apply.apply_via_daemon(args) == 1
    captured = capsys.readouterr()
    assert apply.CONFIRM_PROMPT in captured.out and "Apply cancelled" in captured.err
    assert "FOO" not in str(harness.engine.containers["web"].request)
    on_terminal(monkeypatch, "yes\n")
    assert apply.apply_via_daemon(args) == 0
    assert capsys.readouterr().out.count("Plan: ") == 1  # the plan confirmed is not printed twice
    assert "FOO" in str(harness.engine.containers["web"].request)
