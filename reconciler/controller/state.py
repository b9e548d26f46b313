"""The controller's state files: what it must remember across its own restarts.

Where it sits: under the loop, the folder and the restart driver, which hand it plain JSON values;
it knows their file names and layout, nothing of what the values mean. Three kinds of record live
in the state directory (root-only):

* ``stacks.json``: the stacks this folder manages, so that a manifest deleted while the
  controller was down still prunes its stack;
* ``restarts.json``: restart counts, so that a restarted controller does not give an
  ``on-failure`` container that used up its ``maxRetries`` a fresh set;
* ``last-good/<digest>.json``: the last version of each manifest that parsed, kept in force
  while the file on disk is broken.

Every write goes through :func:`reconciler.files.write_json` (atomic, private). A controller
without a state directory persists nothing. This module must not import the rest of the
controller, and a failed write is logged, never raised: losing a record costs a little memory of
the past, while raising would stop a reconcile pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler import files

log = logging.getLogger("reconciler.controller")

STACKS_FILE = "stacks.json"
RESTARTS_FILE = "restarts.json"
LAST_GOOD_DIR = "last-good"


class ControllerState:
    """Reads and writes the controller's records in ``directory`` (``None``: keep nothing)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _read(self, path: Path) -> object:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text(encoding="utf-8"))
        return None

    def _write(self, path: Path, value: object, *, durable: bool) -> None:
        try:
            files.write_json(path, value, durable=durable)
        except OSError as exc:
            log.warning("cannot persist %s: %s", path.name, exc)

    # -- managed stacks -------------------------------------------------------------------------

    def load_managed(self) -> set[str]:
        if self.directory is None:
            return set()
        value = self._read(self.directory / STACKS_FILE)
        if not isinstance(value, dict):
            return set()
        return {str(stack) for stack in value.get("stacks", [])}

    def save_managed(self, folder: Path, stacks: Iterable[str]) -> None:
        if self.directory is not None:
            self._write(self.directory / STACKS_FILE, {"folder": str(folder), "stacks": sorted(stacks)}, durable=True)

    # -- restart counts -------------------------------------------------------------------------

    def load_restarts(self) -> dict[str, object]:
        """``name → record`` as last saved (records are the restart driver's to interpret)."""
        if self.directory is None:
            return {}
        value = self._read(self.directory / RESTARTS_FILE)
        return {str(name): record for name, record in value.items()} if isinstance(value, dict) else {}

    def save_restarts(self, records: Mapping[str, object]) -> None:
        # Rewritten on every restart, so without fsync: the rename keeps it whole across a crash
        # of the process, and a power cut costs at most the last few counts.
        if self.directory is not None:
            # Durable: a restart count lost to a power cut would give a container that used up
            # its maxRetries a fresh set.
            self._write(self.directory / RESTARTS_FILE, dict(records), durable=True)

    # -- last good manifests --------------------------------------------------------------------

    def load_last_good(self) -> dict[str, str]:
        """``manifest path → text`` of every last good version kept."""
        kept: dict[str, str] = {}
        if self.directory is None or not (self.directory / LAST_GOOD_DIR).is_dir():
            return kept
        for entry in (self.directory / LAST_GOOD_DIR).glob("*.json"):
            record = self._read(entry)
            if isinstance(record, dict) and "path" in record and "text" in record:
                kept[str(record["path"])] = str(record["text"])
        return kept

    def save_last_good(self, file: str, text: str) -> None:
        target = self._last_good_path(file)
        if target is not None:
            self._write(target, {"path": file, "text": text}, durable=True)

    def forget_last_good(self, file: str) -> None:
        target = self._last_good_path(file)
        if target is not None:
            with contextlib.suppress(OSError):
                target.unlink()

    def _last_good_path(self, file: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / LAST_GOOD_DIR / (hashlib.sha256(file.encode()).hexdigest()[:32] + ".json")
