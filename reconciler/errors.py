"""The project's exception tree, sorted by what the caller should do about an error.

::

    ReconcilerError
    ├── ManifestError        terminal: the user's input is wrong; carries every Diagnostic at once
    ├── PlanError            terminal: the desired state cannot be reached as written
    └── EngineError          raised by engines (backends translate their library's errors here)
        ├── NotFound         the object is absent (removal treats this as success)
        ├── Conflict         an object of that name exists and is owned by someone else
        ├── Unavailable      transient: daemon/registry unreachable; retry after ``retry_after``
        ├── RuntimeFailed    the runtime or daemon refused the operation; ``stderr`` says why
        └── DigestMismatch   content did not hash to what was promised (never retried silently)

The controller's retry policy is one ``match`` over these classes: terminal errors wait for the
user to change something; ``Unavailable`` and ``RuntimeFailed`` are retried with backoff.

This module imports nothing from the project and must never do so: every layer depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class ReconcilerError(Exception):
    """Base of every error the project raises on purpose."""


class Diagnostic(NamedTuple):
    """One problem in one manifest file, positioned for an editor (1-based line and column).

    A named tuple rather than a dataclass: every CLI start imports this module, and
    ``dataclasses`` (with ``inspect``) would add about 10 ms to it."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ManifestError(ReconcilerError):
    """The manifests are invalid; ``diagnostics`` lists every problem found, sorted by position."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line, d.column, d.field))
        super().__init__("\n".join(d.render() for d in self.diagnostics))


class NothingNamed(ReconcilerError):
    """What the user named holds nothing to act on (a stack without objects, say): an error, not
    "No changes", so that a typo in a path or a stack name never passes for success in CI."""


class NoManifests(NothingNamed):
    """The files, folders or stdin given declare no object (an empty folder, an empty file)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        super().__init__(f"no manifests found in {', '.join(self.paths) or 'the request'}")


class PlanError(ReconcilerError):
    """The desired state cannot be planned (an ownership conflict, a forbidden volume change).

    ``blame`` names the manifest files at fault, each with its own message (``file:line:col``
    first), so that a watcher can mark those files, not only the stack, as in error."""

    def __init__(self, message: str, *, blame: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.blame = blame


class EngineError(ReconcilerError):
    """Base of the errors an engine raises."""


class NotFound(EngineError):
    """The named object does not exist."""


class Conflict(EngineError):
    """An object of that name exists but is not ours (other owner labels, or none)."""


class Unavailable(EngineError):
    """The engine, daemon or registry cannot be reached right now; worth retrying."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RuntimeFailed(EngineError):
    """The runtime or daemon refused an operation; ``stderr`` carries its own words."""

    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(f"{message}: {stderr.strip()}" if stderr.strip() else message)
        self.stderr = stderr


class DigestMismatch(EngineError):
    """Downloaded or stored content does not match its digest; nothing of it was kept."""
