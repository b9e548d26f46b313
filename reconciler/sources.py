"""Manifest sources: which files are manifests, which stack a file stands for, and their texts.

Nothing is parsed here. The naming rules live here once, for every caller: the CLI's ``-f``, the
controller's folder and the watcher all ask :func:`is_manifest_name`, and the loader and the
controller ask :func:`default_stack` (a file's stack, when a document names none, is its stem).

Split from :mod:`reconciler.manifests` so that a CLI talking to the daemon can read and send the
manifests without importing YAML or pydantic (the daemon validates them): a no-op ``apply``
through the daemon is measured against ``docker compose``, start-up included.

This module must not parse, validate or import anything heavier than the standard library.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler import errors

# Dotfiles and what editors leave beside a file while it is edited: vim's swap files and its
# "4913" write probe, emacs' "#file#" autosaves and "file~" backups, and generic .bak/.tmp files.
# A half-written temporary copy must never be applied as a manifest.
_EDITOR_ARTEFACT = re.compile(r"(^\.|~$|\.swp$|\.swx$|^4913$|\.bak$|\.tmp$|^#.*#$)")
_STACK_FIELD = re.compile(r"^\s*stack:\s*['\"]?([a-z0-9][a-z0-9-]*)", re.MULTILINE)
_NOT_IN_A_LABEL = re.compile(r"[^a-z0-9-]+")


def is_manifest_name(name: str) -> bool:
    """``*.yaml``/``*.yml`` that is no dotfile and no editor artefact (vim, emacs, backups)."""
    return name.endswith((".yaml", ".yml")) and not _EDITOR_ARTEFACT.search(name)


# Compose's own file names; any other YAML file is a compose file when it has top-level services:.
COMPOSE_NAMES = frozenset({"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"})
_SERVICES = re.compile(r"^services[ \t]*:", re.MULTILINE)
_PROJECT_NAME = re.compile(r"^name:[ \t]*['\"]?([A-Za-z0-9][A-Za-z0-9_-]*)", re.MULTILINE)


def is_compose(file: str, text: str) -> bool:
    """A Compose Specification file, by its name or its shape (a top-level ``services:``)."""
    return Path(file).name in COMPOSE_NAMES or _SERVICES.search(text) is not None


def manifest_files(path: Path) -> list[Path]:
    """A folder's manifests (:func:`is_manifest_name`), sorted, non-recursive."""
    return sorted(p for p in path.iterdir() if is_manifest_name(p.name) and p.is_file())


def default_stack(file: str) -> str:
    """The stack of a document that names none: its file's stem as a DNS label (``<stdin>``: default)."""
    if file.startswith("<"):
        return "default"
    stem = _NOT_IN_A_LABEL.sub("-", Path(file).stem.lower()).strip("-")[:63].strip("-")
    return stem or "default"


def declared_stacks(file: str, text: str) -> set[str]:
    """The stacks a file may stand for even if it does not parse: its stem and every ``stack:`` in
    it; for a compose file, its project too (its ``name:``, else its folder's name)."""
    stacks = {match.group(1) for match in _STACK_FIELD.finditer(text)} | {default_stack(file)}
    if is_compose(file, text):
        named = _PROJECT_NAME.search(text)
        project = named.group(1) if named else Path(file).resolve().parent.name
        stacks.add(_NOT_IN_A_LABEL.sub("-", project.lower()).strip("-") or "default")
    return stacks


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
