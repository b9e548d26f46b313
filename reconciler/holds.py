"""Containers stopped on purpose: the record that keeps the restart manager's hands off them.

``reconcile stop`` records each container it stops here before stopping it; the controller's
restart driver then leaves that container stopped, whatever its restart policy (Docker's
``unless-stopped`` and a manual ``docker stop`` behave the same way). ``reconcile start`` and
``restart`` release the record, and so does an explicit ``reconcile apply`` of the container's
files: an apply means "make the files true", as ``docker compose up`` starts what ``docker compose
stop`` stopped. A recreated container is a new one, so a record holds one container id only and
is void for any other.

Where it sits: beside ``operations`` and the controller, which ask it; it knows file names and the
container id, nothing of policies or engines. One file per container name under the root's
``stopped/`` directory (root-only, written by :func:`reconciler.files.write_atomic`), so that the
CLI and a running daemon, two processes, never rewrite each other's records.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from reconciler import files, observed


class Holds:
    """The stopped-on-purpose records under ``directory`` (``None``: nothing is ever held)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def hold(self, name: str, container_id: str) -> None:
        """Record that ``name`` (this very container) is stopped on purpose."""
        if self.directory is not None:
            files.write_atomic(self.directory / name, container_id.encode())

    def release(self, names: Iterable[str]) -> None:
        """Forget the records of ``names`` (their restart policy applies again)."""
        if self.directory is None:
            return
        try:  # one listing instead of a failed unlink per name: an apply releases every container's
            present = set(os.listdir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if name in present:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / name)

    def held_id(self, name: str) -> str | None:
        """The container id recorded for ``name``, or None."""
        if self.directory is None:
            return None
        try:
            return (self.directory / name).read_text().strip() or None
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None

    def is_held(self, name: str, container_id: str) -> bool:
        """Whether the container ``name`` with this id was stopped on purpose."""
        return self.held_id(name) == container_id

    def held(self, actual: observed.Observed) -> frozenset[str]:
        """The containers of ``actual`` that are stopped on purpose (one directory listing)."""
        if self.directory is None:
            return frozenset()
        try:
            recorded = [name for name in os.listdir(self.directory) if not files.is_temporary(name)]
        except (FileNotFoundError, NotADirectoryError):
            return frozenset()
        return frozenset(
            name
            for name in recorded
            if (present := actual.containers.get(name)) is not None and self.is_held(name, present.container_id)
        )

    def forget_stale(self, actual: observed.Observed) -> None:
        """Remove the records of containers that are gone or were recreated since."""
        if self.directory is None or not self.directory.is_dir():
            return
        for name in os.listdir(self.directory):
            present = actual.containers.get(name)
            if not files.is_temporary(name) and (present is None or not self.is_held(name, present.container_id)):
                self.release([name])
