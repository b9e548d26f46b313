"""Manifest sources: which files a ``-f`` argument names, and their texts. Nothing is parsed here.

Split from :mod:`reconciler.manifests` so that a CLI talking to the daemon can read and send the
manifests without importing YAML or pydantic (the daemon validates them): a no-op ``apply``
through the daemon is measured against ``docker compose``, start-up included.

This module must not parse, validate or import anything heavier than the standard library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler import errors


def manifest_files(path: Path) -> list[Path]:
    """A folder's manifests: ``*.yaml``/``*.yml``, not dotfiles, sorted, non-recursive."""
    return sorted(
        p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def read_sources(paths: Sequence[str]) -> list[tuple[str, str]]:
    """``(display name, text)`` for each manifest file named by ``paths`` (files, folders, ``-``)."""
    sources: list[tuple[str, str]] = []
    problems: list[errors.Diagnostic] = []
    for raw in paths:
        if raw == "-":
            sources.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(raw)
        try:
            files = manifest_files(path) if path.is_dir() else [path]
            for file in files:
                sources.append((str(file), file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(errors.Diagnostic(raw, 1, 1, "", f"cannot read: {reason}"))
    if problems:
        raise errors.ManifestError(problems)
    return sources
