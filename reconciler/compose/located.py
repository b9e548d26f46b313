"""Plain values that remember where each of their paths was written: file, line and column.

At the bottom of :mod:`reconciler.compose`. Compose files are merged (several ``-f``, ``extends``,
``include``), so one value may come from several files: :class:`Located` keeps, for every path
of a value, the file and mark it came from, and follows the value when it moves (a list appended
after another, a service copied from the one it extends). This module must not read files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from reconciler import manifests

Path = tuple[str | int, ...]
Where = tuple[str, int, int]


@dataclasses.dataclass(slots=True)
class Located:
    """A plain value and the place of each of its paths (relative to the value)."""

    value: object
    places: dict[Path, Where] = dataclasses.field(default_factory=dict)
    keys: dict[Path, Where] = dataclasses.field(default_factory=dict)

    @classmethod
    def read(cls, value: object, where: manifests.Positions, file: str) -> Located:
        places = {path: (file, *mark) for path, mark in where.values.items()}
        keys = {path: (file, *mark) for path, mark in where.keys.items()}
        return cls(value, places, keys)

    def at(self, path: Path) -> Where:
        """The place of ``path``, or of its deepest recorded prefix."""
        for end in range(len(path), -1, -1):
            found = self.places.get(path[:end])
            if found is not None:
                return found
        return ("<compose>", 1, 1)

    def key_at(self, path: Path) -> Where:
        return self.keys.get(path) or self.at(path)

    def sub(self, path: Path) -> dict[Path, Where]:
        """The places under ``path``, relative to it."""
        size = len(path)
        return {p[size:]: w for p, w in self.places.items() if p[:size] == path}

    def sub_keys(self, path: Path) -> dict[Path, Where]:
        size = len(path)
        return {p[size:]: w for p, w in self.keys.items() if p[:size] == path}

    def graft(self, path: Path, places: dict[Path, Where], keys: dict[Path, Where] | None = None) -> None:
        """Record ``places`` (relative) under ``path``, replacing what was recorded there."""
        self.drop(path)
        self.places.update({(*path, *p): w for p, w in places.items()})
        self.keys.update({(*path, *p): w for p, w in (keys or {}).items() if p})

    def drop(self, path: Path) -> None:
        size = len(path)
        for table in (self.places, self.keys):
            for p in [p for p in table if p[:size] == path]:
                del table[p]


def shifted(places: dict[Path, Where], offset: int) -> dict[Path, Where]:
    """Places of a list's items moved ``offset`` items on (the list appended after another)."""
    moved: dict[Path, Where] = {}
    for path, where in places.items():
        if path and isinstance(path[0], int):
            moved[(path[0] + offset, *path[1:])] = where
    return moved


def positions_of(places: Iterable[tuple[Path, Path, Where]], file: str) -> manifests.Positions:
    """Manifest positions from ``(document path, compose path, place)`` triples: the mark, the file
    (where not ``file``) and the compose path each document path is reported as."""
    result = manifests.Positions()
    written = list(places)
    for doc_path, compose_path, where in written:
        _record(result, doc_path, compose_path, where, file)
    # A path's parents too (``spec.resources`` for ``spec.resources.memory``), where no field of
    # their own is written: the manifest loader finds a problem's place by walking down a path.
    for doc_path, compose_path, where in written:
        for end in range(1, len(doc_path)):
            if doc_path[:end] not in result.values:
                _record(result, doc_path[:end], compose_path, where, file)
    return result


def _record(result: manifests.Positions, doc_path: Path, compose_path: Path, where: Where, file: str) -> None:
    where_file, line, column = where
    result.values[doc_path] = (line, column)
    result.names[doc_path] = compose_path
    if where_file != file:
        result.files[doc_path] = where_file


def field_text(path: Path) -> str:
    """A path as problems name it: ``services.web.ports[0]``."""
    text = ""
    for element in path:
        text += f"[{element}]" if isinstance(element, int) else f".{element}" if text else str(element)
    return text
