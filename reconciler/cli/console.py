"""What the command line prints, and how: output streams, exit codes, tables, sizes, steps,
the steps in flight.

Where it sits: at the bottom of the ``reconciler.cli`` package; every command module prints
through it, so that a table, a size or an executed step looks the same whichever command (and
whether the daemon or the embedded engine did the work) shows it. Colour (a plan's marks, a step's
result) only on a terminal and never with ``NO_COLOR``: a pipe gets the same text without it. It
imports only the standard library: the CLI's start-up goes through it. It must not decide
anything: callers pass the rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

# Exit codes, documented for CI (see the package docstring).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_ENGINE_FAILED = 125  # ``exec`` when the engine itself failed, as ``docker exec``
EXIT_INTERRUPTED = 130

Row = dict[str, Any]


def out(text: str = "", stream: TextIO | None = None) -> None:
    """One line to stdout (or ``stream``), flushed: a pipe sees each line as it is printed."""
    print(text, file=stream or sys.stdout, flush=True)


def err(text: str) -> None:
    """One line to stderr, flushed."""
    print(text, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    err(f"warning: {message}")


def stream_named(name: str | None) -> TextIO:
    """stderr for a log line from a container's stderr, stdout for everything else."""
    return sys.stderr if name == "stderr" else sys.stdout


def print_rows(
    rows: Sequence[Row],
    *,
    output: str,
    empty: str,
    header: tuple[str, ...],
    cells: Callable[[Row], tuple[str, ...]],
) -> int:
    """``-o json``: the rows as a JSON list; text: a table, columns padded to their widest cell."""
    if output == "json":
        out(json.dumps(list(rows), indent=2))
        return EXIT_OK
    if not rows:
        out(empty)
        return EXIT_OK
    print_table([header, *(cells(row) for row in rows)])
    return EXIT_OK


def print_table(table: Sequence[tuple[str, ...]]) -> None:
    """Rows of cells (the first is the header), each column padded to its widest cell."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def size(value: float | None) -> str:
    """Bytes in IEC units (1 KiB = 1024 B), one decimal: ``512B``, ``1.5KiB``, ``64.0MiB``; None: ``-``."""
    if value is None:
        return "-"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f}{unit}"
    return f"{value:.0f}B"


# ANSI colours of the marks that start a plan's lines (create, update, remove, recreate, start)
# and a step's result (done, failed): the marks stay, so the text reads the same without colour.
_COLOURS = {"+": "32", "~": "33", "-": "31", "±": "35", ">": "36", "✓": "32", "✗": "31"}
_PLAN_MARK = re.compile(r"^( {2}| {6})([+~\-±>])(?= )", re.MULTILINE)


def colour_on(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set to anything (no-color.org)."""
    return not os.environ.get("NO_COLOR") and (stream or sys.stdout).isatty()


def paint(mark: str) -> str:
    """``mark`` in its colour (see :data:`_COLOURS`), when stdout takes colour; else unchanged."""
    return f"\033[{_COLOURS[mark]}m{mark}\033[0m" if mark in _COLOURS and colour_on() else mark


def plan_text(text: str) -> str:
    """A rendered plan with its change and field marks (``+ ~ - ± >``) coloured on a terminal."""
    if not colour_on():
        return text
    return _PLAN_MARK.sub(lambda match: match[1] + paint(match[2]), text)


def step_line(number: int, status: str, verb: str, target: str, *, seconds: float, error: str | None) -> str:
    """One executed step: ``✓`` done (with its time), ``✗`` failed, ``-`` skipped (with why)."""
    if status == "done":
        return f"  {paint('✓')} {number}. {verb} {target} ({seconds:.2f}s)"
    mark = paint("✗") if status == "failed" else "-"
    return f"  {mark} {number}. {verb} {target}: {error}"


def summary_line(*, ok: bool, summary: str, interrupted: bool = False) -> str:
    """The line that ends an apply's steps (after a blank line)."""
    return f"\n{'Interrupted' if interrupted else 'Done' if ok else 'Failed'}: {summary}."


class InFlight:
    """The steps in flight, on a terminal: one line under the printed steps naming the step that
    has run the longest and its elapsed time (``⠹ stop container shop-web… 4.1s (+2 more)``),
    redrawn a few times a second, as ``docker compose`` shows a long stop. Lines printed meanwhile
    go through :meth:`line`, which clears the status line first and draws it again after.

    ``enabled`` is false for a pipe, a file or JSON output: then nothing is drawn and :meth:`line`
    is :func:`out`. Steps are reported from the executor's threads, hence the lock.
    """

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    # Short steps finish before this and never flicker on the screen.
    SHOW_AFTER = 0.5
    REDRAW_EVERY = 0.2

    def __init__(self, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[object, tuple[str, float]] = {}
        self._drawn = False
        self._frame = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> InFlight:
        if self.enabled:
            self._ticker = threading.Thread(target=self._tick, name="in-flight", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            self._clear()

    def started(self, key: object, text: str) -> None:
        with self._lock:
            self._running[key] = (text, self._clock())

    def ended(self, key: object) -> None:
        with self._lock:
            self._running.pop(key, None)

    @contextlib.contextmanager
    def step(self, key: object, text: str) -> Iterator[None]:
        """The ``with`` block is a step in flight."""
        self.started(key, text)
        try:
            yield
        finally:
            self.ended(key)

    def line(self, text: str) -> None:
        """Print a line above the status line."""
        with self._lock:
            self._clear()
            out(text)
            self._draw()

    def status(self) -> str | None:
        """The status line's text now, or None when no step has run for :data:`SHOW_AFTER`."""
        if not self._running:
            return None
        now = self._clock()
        text, since = min(self._running.values(), key=lambda item: item[1])
        if now - since < self.SHOW_AFTER:
            return None
        more = f" (+{len(self._running) - 1} more)" if len(self._running) > 1 else ""
        spinner = self.SPINNER[self._frame % len(self.SPINNER)]
        return f"  {spinner} {text}… {now - since:.1f}s{more}"

    def _tick(self) -> None:
        while not self._stop.wait(self.REDRAW_EVERY):
            with self._lock:
                self._frame += 1
                self._clear()
                self._draw()

    def _draw(self) -> None:
        if self.enabled and (text := self.status()) is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            # Carriage return, then erase the line: the next text starts at the left margin.
            sys.stdout.write("\r\033[2K")
            sys.stdout.flush()
            self._drawn = False
