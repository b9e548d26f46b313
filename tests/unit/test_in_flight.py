"""The status line of the steps in flight (``console.InFlight``), on a fake clock."""

from __future__ import annotations

import pytest

from reconciler.cli import console


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_longest_running_step_is_shown_after_half_a_second() -> None:
    clock = Clock()
    status = console.InFlight(True, clock)
    status.started(1, "stop container web")
    assert status.status() is None, "a short step never shows"
    clock.now += 0.3
    status.started(2, "stop container db")
    clock.now += 3.8
    assert status.status() == "  ⠋ stop container web… 4.1s (+1 more)"
    status.ended(1)
    assert status.status() == "  ⠋ stop container db… 3.8s"
    status.ended(2)
    assert status.status() is None


def test_a_printed_line_erases_the_status_line_and_draws_it_again(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    status = console.InFlight(True, clock)
    status.started(1, "stop container web")
    clock.now += 1.0
    status.line("  ✓ 1. remove container old (0.10s)")
    status.line("  ✓ 2. remove network n (0.01s)")
    assert capsys.readouterr().out == (
        "  ✓ 1. remove container old (0.10s)\n  ⠋ stop container web… 1.0s"
        "\r\x1b[2K  ✓ 2. remove network n (0.01s)\n  ⠋ stop container web… 1.0s"
    )
    with status:
        pass
    assert capsys.readouterr().out == "\r\x1b[2K", "leaving erases it"


def test_disabled_it_only_prints_the_lines(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    with console.InFlight(False, clock) as status:
        status.started(1, "stop container web")
        clock.now += 5
        status.line("done")
    assert capsys.readouterr().out == "done\n"
