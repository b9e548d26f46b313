"""Loading compose files: which texts are compose files, the project they make, and its documents.

At the top of :mod:`reconciler.compose`; called by the CLI (``-f``, ``convert``), the daemon's
operations and the controller's folder. :func:`load_sources` takes ``(file, text)`` pairs as
:func:`reconciler.sources.read_sources` gives them: manifest texts go to the manifest loader as
they are; compose texts (:func:`reconciler.sources.is_compose`) are read with the manifests'
position-keeping YAML reader, interpolated, put in their long forms, merged (in the order given:
compose's ``-f`` rules; ``extends`` inside a file), translated, and validated with the manifests,
all errors at once, each at its place in the compose file. This module reads the compose files'
``.env`` and ``--env-file`` files, and the files ``extends`` names; nothing else.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler import errors, manifests, sources
from reconciler.compose import interpolation, merging, reading, services, translating
from reconciler.compose.located import Located, field_text, positions_of

Warn = Callable[[str], None]


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """``-p/--project-name``, ``--env-file`` and ``--profile``, as compose's."""

    project_name: str | None = None
    env_files: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()


def load_sources(
    texts: Sequence[tuple[str, str]],
    options: Options = Options(),
    warn: Warn | None = None,
    *,
    each_file: bool = False,
) -> manifests.Desired:
    """Manifests and compose files as one desired state (:class:`errors.ManifestError`: every
    problem). The compose files make one project, merged in order (``-f`` as compose's), or with
    ``each_file`` one project each (a watched folder: each file stands alone)."""
    plain = [(file, text) for file, text in texts if not sources.is_compose(file, text)]
    compose = [(file, text) for file, text in texts if sources.is_compose(file, text)]
    if not compose:
        return manifests.load_sources(plain)
    diagnostics: list[errors.Diagnostic] = []
    documents: list[tuple[str, object, manifests.Positions]] = []
    for project in [[item] for item in compose] if each_file else [compose]:
        try:
            documents.extend((file, value, where) for file, value, where, _model in _documents(project, options, warn))
        except errors.ManifestError as exc:
            diagnostics.extend(exc.diagnostics)
    try:
        result = manifests.load_documents(plain, documents)
    except errors.ManifestError as exc:
        diagnostics.extend(exc.diagnostics)
    if diagnostics:
        raise errors.ManifestError(diagnostics)
    return result


def load(paths: Sequence[str], options: Options = Options(), warn: Warn | None = None) -> manifests.Desired:
    """:func:`reconciler.manifests.load` with compose files accepted among ``paths``."""
    result = load_sources(sources.read_sources(paths), options, warn)
    manifests.require_objects(result, paths)
    return result


def convert(
    texts: Sequence[tuple[str, str]], options: Options = Options(), warn: Warn | None = None
) -> list[dict[str, object]]:
    """The manifest documents the compose texts mean, validated, defaults left out."""
    found = _documents(texts, options, warn)
    manifests.load_documents([], [(file, value, where) for file, value, where, _model in found])
    documents = [manifests.to_document(model, exclude_defaults=True) for _file, _value, _where, model in found]
    order = {"apiVersion": 0, "kind": 1, "metadata": 2, "spec": 3}
    return [dict(sorted(document.items(), key=lambda item: order.get(item[0], 4))) for document in documents]


def _documents(
    texts: Sequence[tuple[str, str]], options: Options, warn: Warn | None
) -> list[tuple[str, object, manifests.Positions, manifests.Model]]:
    diagnostics: list[errors.Diagnostic] = []
    first = texts[0][0]
    directory = str(Path(first).parent.resolve()) if not first.startswith("<") else os.getcwd()
    environment = _environment(first, directory, options, diagnostics)

    def on_warning(message: str) -> None:
        if warn is not None:
            warn(message)

    reader = reading.Reader(environment, diagnostics, on_warning)
    merged: Located | None = None
    for file, text in texts:
        read = reader.read(file, text)
        if read is not None:
            merged = read if merged is None else merging.merge(merged, read)
    if merged is None:
        raise errors.ManifestError(diagnostics or [errors.Diagnostic(first, 1, 1, "", "the compose file is empty")])
    name = _project_name(options, merged, directory, environment)
    profiles = frozenset(options.profiles or _profiles(environment))
    project = translating.Project(name, directory, environment, profiles, reader.environments)
    translation = services.translate(project, merged)
    for problem in translation.problems:
        file, line, column = problem.where
        field = field_text(problem.field)
        if problem.warning:
            on_warning(f"{file}:{line}:{column}: {field}: {problem.message}")
        else:
            diagnostics.append(errors.Diagnostic(file, line, column, field, problem.message))
    found: list[tuple[str, object, manifests.Positions, manifests.Model]] = []
    for document in translation.documents:
        where = positions_of(document.places, first)
        try:
            model = manifests.validate_document(document.value, where, first)
        except errors.ManifestError as exc:
            diagnostics.extend(exc.diagnostics)
            continue
        found.append((first, document.value, where, model))
    if diagnostics:
        raise errors.ManifestError(_first_at_each_place(diagnostics))
    return found


def _profiles(environment: dict[str, str]) -> tuple[str, ...]:
    return tuple(p for p in environment.get("COMPOSE_PROFILES", "").split(",") if p)


def _environment(first: str, directory: str, options: Options, diagnostics: list[errors.Diagnostic]) -> dict[str, str]:
    """The variables interpolation sees: the process's over the ``.env`` beside the file (or
    ``--env-file``). A problem is reported on the compose file (a watched folder keeps that file's
    last good version), naming the env file."""
    files = [Path(f) for f in options.env_files] or [Path(directory) / ".env"]
    variables: dict[str, str] = {}
    for path in files:
        if not options.env_files and not path.is_file():
            continue
        try:
            variables.update(interpolation.read_env_file(path, {**variables, **os.environ}, lambda _m: None))
        except OSError as exc:
            diagnostics.append(errors.Diagnostic(first, 1, 1, "", f"cannot read {path}: {exc.strerror or exc}"))
        except UnicodeDecodeError:
            diagnostics.append(errors.Diagnostic(first, 1, 1, "", f"{path}: not UTF-8 text"))
        except ValueError as exc:
            diagnostics.append(errors.Diagnostic(first, 1, 1, "", str(exc)))
    return {**variables, **os.environ}


def _project_name(options: Options, merged: Located, directory: str, environment: dict[str, str]) -> str:
    """``-p``, else ``COMPOSE_PROJECT_NAME`` (the process's or the ``.env``'s), else ``name:``, else
    the folder; lowercase, only letters, digits, ``_`` and ``-`` (compose's normalisation)."""
    top = merged.value if isinstance(merged.value, dict) else {}
    raw = options.project_name or environment.get("COMPOSE_PROJECT_NAME") or top.get("name") or Path(directory).name
    return re.sub(r"[^a-z0-9_-]", "", str(raw).lower()).lstrip("_-") or "default"


def _first_at_each_place(diagnostics: list[errors.Diagnostic]) -> list[errors.Diagnostic]:
    """One problem per place: a value that could not be interpolated is left as written, and what
    the models then say of it again at the same place adds nothing."""
    seen: set[tuple[str, int, int]] = set()
    kept = []
    for diagnostic in diagnostics:
        place = (diagnostic.file, diagnostic.line, diagnostic.column)
        if place not in seen:
            seen.add(place)
            kept.append(diagnostic)
    return kept
