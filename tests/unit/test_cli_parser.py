"""The parser a run builds: its own command's group only, everything for help or an unknown word."""

from __future__ import annotations

import argparse

import pytest

from reconciler.cli import entry


def choices(parser: argparse.ArgumentParser) -> set[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["apply", "-f", "x.yaml"], "apply"),
        (["--engine", "docker", "--root", "/tmp/r", "plan", "-f", "x"], "plan"),
        (["--engine=docker", "status"], "status"),
        (["--socket", "none", "exec", "web", "--", "sh"], "exec"),
        (["--help", "apply"], None),
        (["--version"], None),
        ([], None),
    ],
)
def test_the_command_word_skips_global_options_and_their_values(argv: list[str], word: str | None) -> None:
    assert entry.command_word(argv) == word


def test_a_known_command_builds_only_its_group() -> None:
    assert choices(entry.build_parser(["apply", "-f", "x.yaml", "--engine", "docker"])) == {"plan", "apply", "delete"}
    assert choices(entry.build_parser(["image", "ls"])) == {"image"}


def test_help_a_bare_call_and_an_unknown_word_get_every_command() -> None:
    everything = choices(entry.build_parser())
    assert {"validate", "apply", "status", "exec", "restart", "image", "watch", "events", "schema"} <= everything
    assert choices(entry.build_parser(["--help"])) == everything
    assert choices(entry.build_parser(["aply", "-f", "x"])) == everything


def test_an_unknown_command_is_a_usage_error_naming_the_real_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        entry.main(["aply", "-f", "x.yaml"])
    assert exited.value.code == 1
    assert "invalid choice: 'aply'" in capsys.readouterr().err
