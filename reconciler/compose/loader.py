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
from reconciler.compose import interpolation, merging, services, shapes, shorthands, translating
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

    merged: Located | None = None
    for file, text in texts:
        read = _read(file, text, environment, diagnostics, on_warning)
        if read is not None:
            merged = read if merged is None else merging.merge(merged, read)
    if merged is None:
        raise errors.ManifestError(diagnostics or [errors.Diagnostic(first, 1, 1, "", "the compose file is empty")])
    name = _project_name(options, merged, directory)
    project = translating.Project(name, directory, environment, frozenset(options.profiles or _profiles(environment)))
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


def _project_name(options: Options, merged: Located, directory: str) -> str:
    top = merged.value if isinstance(merged.value, dict) else {}
    raw = options.project_name or os.environ.get("COMPOSE_PROJECT_NAME") or top.get("name") or Path(directory).name
    return re.sub(r"[^a-z0-9_-]", "", str(raw).lower()).lstrip("_-") or "default"


def _read(
    file: str, text: str, environment: dict[str, str], diagnostics: list[errors.Diagnostic], warn: Warn
) -> Located | None:
    """One compose file: read with positions, interpolated, in its long forms, ``extends`` resolved."""
    found = list(manifests.yaml_documents(text, file, diagnostics))
    if not found:
        return None
    if len(found) > 1:
        line, column = found[1][1].values.get((), (1, 1))
        diagnostics.append(errors.Diagnostic(file, line, column, "", "a compose file holds one YAML document"))
    value, where = found[0]
    located = Located.read(value, where, file)
    if not isinstance(value, dict):
        diagnostics.append(errors.Diagnostic(file, 1, 1, "", "a compose file is a mapping with services:"))
        return None
    located.value = _interpolate_all(located, environment, diagnostics, warn)
    _long_forms(located, diagnostics)
    for path, message in shapes.check(located):
        where_file, line, column = located.at(path)
        diagnostics.append(errors.Diagnostic(where_file, line, column, field_text(path), message))
    _extends(located, diagnostics)
    return located


def _interpolate_all(
    located: Located, environment: dict[str, str], diagnostics: list[errors.Diagnostic], warn: Warn
) -> object:
    """Every string value (no key) of the file with its variables replaced; a problem at its place."""

    def walk(path: tuple[str | int, ...], value: object) -> object:
        if isinstance(value, dict):
            return {k: walk((*path, k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk((*path, i), v) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value
        file, line, column = located.at(path)

        def say(message: str) -> None:
            warn(f"{file}:{line}:{column}: {message}")

        try:
            return interpolation.interpolate(value, environment, say)
        except interpolation.InterpolationError as exc:
            diagnostics.append(errors.Diagnostic(file, line, column, field_text(path), str(exc)))
            return value

    return walk((), located.value)


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


def _long_forms(located: Located, diagnostics: list[errors.Diagnostic]) -> None:
    top = located.value
    assert isinstance(top, dict)
    for name, service in (top.get("services") or {}).items() if isinstance(top.get("services"), dict) else []:
        if not isinstance(service, dict):
            file, line, column = located.at(("services", name))
            diagnostics.append(errors.Diagnostic(file, line, column, f"services.{name}", "a service is a mapping"))
            continue
        for field, short_form in shorthands.SERVICE.items():
            if field not in service:
                continue
            try:
                service[field] = short_form(service[field])
            except shorthands.ShortFormError as exc:
                del service[field]  # reported here, not again by the translation
                file, line, column = located.at(("services", name, field))
                diagnostics.append(errors.Diagnostic(file, line, column, f"services.{name}.{field}", str(exc)))


def _extends(located: Located, diagnostics: list[errors.Diagnostic]) -> None:
    """``extends: {service: base}`` (or ``extends: base``) within the file, bases first."""
    top = located.value
    assert isinstance(top, dict)
    found = top.get("services")
    services_map: dict[str, object] = found if isinstance(found, dict) else {}
    done: set[str] = set()

    def resolve(name: str, chain: tuple[str, ...]) -> None:
        service = services_map.get(name)
        if name in done or not isinstance(service, dict) or "extends" not in service:
            return
        path = ("services", name, "extends")
        spec = service["extends"]
        base = spec if isinstance(spec, str) else spec.get("service") if isinstance(spec, dict) else None
        file, line, column = located.at(path)
        if isinstance(spec, dict) and "file" in spec:
            diagnostics.append(
                errors.Diagnostic(
                    file,
                    line,
                    column,
                    ".".join(path),
                    "extends with file: is not supported yet; merge the files with several -f",
                )
            )
            return
        if base not in services_map or base in chain:
            reason = "is a cycle" if base in chain else f"names {base!r}, which is not a service of this file"
            diagnostics.append(errors.Diagnostic(file, line, column, ".".join(path), f"extends {reason}"))
            return
        resolve(str(base), (*chain, name))
        base_located = Located(
            services_map[base], located.sub(("services", str(base))), located.sub_keys(("services", str(base)))
        )
        own = Located(service, located.sub(("services", name)), located.sub_keys(("services", name)))
        merged = merging.extend(own, base_located)
        services_map[name] = merged.value
        located.graft(("services", name), merged.places, merged.keys)
        done.add(name)

    for service_name in list(services_map):
        resolve(service_name, ())
