"""The CLI through the daemon: same outputs and exit codes as embedded; JSON logs."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.cli import apply, daemon, status
from tests.unit.controller_support import Harness, container_yaml, served_controller


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    with served_controller(tmp_path) as serving:
        yield serving


def _args(socket_path: str, **values: object) -> argparse.Namespace:
    defaults: dict[str, object] = {"engine": "memory", "root": "/nonexistent", "socket": socket_path, "output": "text",
                                   "prune": True, "prune_volumes": False, "parallelism": 2, "wait": False, "yes": False,
                                   "force_recreate": []}  # fmt: skip
    defaults.update(values)
    return argparse.Namespace(**defaults)


def test_no_daemon_means_embedded(tmp_path: Path) -> None:
    assert status.status_via_daemon(_args(str(tmp_path / "none.sock"))) is None


def test_a_daemon_of_another_engine_is_not_used(served: tuple[Harness, str]) -> None:
    _, socket_path = served
    assert status.status_via_daemon(_args(socket_path, engine="docker")) is None


def test_status_shows_objects_and_broken_files(served: tuple[Harness, str], capsys: pytest.CaptureFixture[str]) -> None:
    harness, socket_path = served
    harness.write("blog.yaml", "kind: [\n")
    harness.settle()
    assert status.status_via_daemon(_args(socket_path)) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["KIND", "NAME", "STACK", "STATE", "HEALTH", "EXIT", "RESTARTS", "IMAGE",
                                            "PORTS", "AGE", "BACKOFF", "DRIFT"]  # fmt: skip
    assert "web" in text and "blog.yaml:2:1: YAML syntax error" in text
    assert status.status_via_daemon(_args(socket_path, output="json")) == 0
    rows = json.loads(capsys.readouterr().out)["objects"]
    assert {row["kind"] for row in rows} == {"Container", "File"}


def test_plan_and_apply_exit_codes(
    served: tuple[Harness, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    harness, socket_path = served
    manifest = tmp_path / "blog.yaml"
    manifest.write_text(container_yaml("blog"))
    assert apply.plan_via_daemon(_args(socket_path, file=[str(manifest)])) == 2
    assert "Plan: 1 to create" in capsys.readouterr().out
    assert apply.apply_via_daemon(_args(socket_path, file=[str(manifest)])) == 0
    out = capsys.readouterr().out
    assert "Applying:" in out and "✓" in out and "Done: 2 done" in out
    assert harness.engine.containers["blog"].state == "running"
    assert apply.plan_via_daemon(_args(socket_path, file=[str(manifest)], output="json")) == 0
    assert json.loads(capsys.readouterr().out)["converged"] is True


def test_json_log_lines_carry_the_controllers_fields() -> None:
    record = logging.LogRecord("reconciler.controller", logging.INFO, __file__, 1, "restart of %s", ("web",), None)
    record.stack, record.container = "shop", "web"
    line = json.loads(daemon.JsonFormatter().format(record))
    assert line["message"] == "restart of web" and line["stack"] == "shop" and line["container"] == "web"
    assert line["level"] == "info" and line["time"].endswith("+00:00")


def test_the_daemon_validates_and_errors_print_as_embedded(
    served: tuple[Harness, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI sends the texts unvalidated (it never loads the models); the daemon's diagnostics
    come back positioned, under the file names the user typed, and nothing is applied."""
    harness, socket_path = served
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(container_yaml("bad").replace("image:", "imagee:"))
    before = dict(harness.engine.containers)
    with pytest.raises(errors.ManifestError) as caught:
        apply.apply_via_daemon(_args(socket_path, file=["bad.yaml"]))
    rendered = [d.render() for d in caught.value.diagnostics]
    assert rendered and all(line.startswith("bad.yaml:") for line in rendered), rendered
    assert any("unknown field `imagee`" in line for line in rendered), rendered
    assert harness.engine.containers == before
    with pytest.raises(errors.ManifestError):
        apply.plan_via_daemon(_args(socket_path, file=["bad.yaml"]))


def test_watch_help_states_the_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """The parser does not import the controller (start-up), so its help repeats the defaults."""
    from reconciler import cli, controller, watching

    with pytest.raises(SystemExit):
        cli.main(["watch", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert f"(default {controller.DEFAULT_RESYNC:g})" in flat
    assert f"(default {controller.DEFAULT_RELIST:g})" in flat
    assert f"(default {watching.DEFAULT_DEBOUNCE:g})" in flat
