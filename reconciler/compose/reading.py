"""One compose file read: parsed with positions, interpolated, in its long forms, its shapes
checked, its ``include`` and ``extends`` resolved.

Sits above :mod:`.merging`, :mod:`.shapes`, :mod:`.shorthands` and :mod:`.interpolation`, under
:mod:`.loader`. Files named by ``include`` and ``extends.file`` are read here (relative to the file
that names them, at most :data:`MAX_NESTING` deep, never in a cycle); their relative paths are made
absolute against their own folder, as compose does. Every problem is a positioned diagnostic.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from reconciler import errors, manifests
from reconciler.compose import interpolation, merging, shapes, shorthands
from reconciler.compose.located import Located, Where, field_text

Warn = Callable[[str], None]
MAX_NESTING = 10
MAX_FILE_BYTES = 4 * 1024 * 1024
_GROUPS = ("services", "networks", "volumes", "secrets", "configs")
_INCLUDE_FIELDS = frozenset({"path", "project_directory", "env_file"})


@dataclasses.dataclass(slots=True)
class Reader:
    """Reads the files of one project with one environment, collecting every problem."""

    environment: dict[str, str]
    diagnostics: list[errors.Diagnostic]
    warn: Warn
    opened: list[str] = dataclasses.field(default_factory=list)
    # The variables of each service of an included project (the env files of services use them).
    environments: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def problem(self, where: Where, path: tuple[str | int, ...], message: str) -> None:
        self.diagnostics.append(errors.Diagnostic(where[0], where[1], where[2], field_text(path), message))

    def read(self, file: str, text: str) -> Located | None:
        """One compose file given as text (``-f``)."""
        found = list(manifests.yaml_documents(text, file, self.diagnostics))
        if not found:
            return None
        if len(found) > 1:
            line, column = found[1][1].values.get((), (1, 1))
            self.diagnostics.append(errors.Diagnostic(file, line, column, "", "a compose file holds one YAML document"))
        value, where = found[0]
        located = Located.read(value, where, file)
        if not isinstance(value, dict):
            self.diagnostics.append(errors.Diagnostic(file, 1, 1, "", "a compose file is a mapping with services:"))
            return None
        located.value = _interpolate_all(located, self.environment, self.diagnostics, self.warn)
        _long_forms(located, self.diagnostics)
        for path, message in shapes.check(located):
            self.problem(located.at(path), path, message)
        self.opened.append(str(Path(file).resolve()) if not file.startswith("<") else file)
        try:
            self._include(located, file)
            self._extends(located, file)
        finally:
            self.opened.pop()
        return located

    def read_file(
        self, path: Path, where: Where, field: tuple[str | int, ...], directory: Path | None = None
    ) -> Located | None:
        """A file named by ``include`` or ``extends.file``, its relative paths made absolute
        against ``directory`` (default: its own folder)."""
        if str(path.resolve()) in self.opened or len(self.opened) > MAX_NESTING:
            self.problem(where, field, f"{path}: files include or extend each other in a cycle (or deeper "
                         f"than {MAX_NESTING})")  # fmt: skip
            return None
        try:
            with path.open("rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES >> 20} MiB")
            text = data.decode("utf-8")
        except OSError as exc:
            self.problem(where, field, f"cannot read {path}: {exc.strerror or exc}")
            return None
        except ValueError as exc:  # UnicodeDecodeError too
            self.problem(where, field, f"cannot read {path}: {exc}")
            return None
        located = self.read(str(path), text)
        if located is not None:
            _rebase(located, str((directory or path.parent).resolve()))
        return located

    def _include(self, located: Located, file: str) -> None:
        """``include: [path, {path: PATH or [PATHS], project_directory, env_file}]``: each entry's
        files (several: merged in order, as ``-f``) add their services, networks ...; a name
        already there is an error (compose's rule)."""
        top = located.value
        assert isinstance(top, dict)
        entries = top.pop("include", None) or []
        folder = Path(file).parent if not file.startswith("<") else Path.cwd()
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            here = ("include", index)
            options = entry if isinstance(entry, dict) else {"path": entry}
            paths = options.get("path")
            names = [str(n) for n in (paths if isinstance(paths, list) else [paths]) if isinstance(n, str)]
            if not names or names not in (paths, [paths]) or set(options) - _INCLUDE_FIELDS:
                self.problem(located.at(here), here, "include: a path, or {path: PATH or [PATHS], "
                             "project_directory, env_file}")  # fmt: skip
                continue
            directory = folder / str(options.get("project_directory") or Path(names[0]).parent)
            reader = self._included_reader(options.get("env_file"), folder, directory, located.at(here), here)
            if reader is None:
                continue
            included: Located | None = None
            for name in names:
                read = reader.read_file(folder / name, located.at(here), here, directory)
                if read is not None:
                    included = read if included is None else merging.merge(included, read)
            if included is not None:
                found = included.value.get("services") if isinstance(included.value, dict) else None
                for service in found if isinstance(found, dict) else []:
                    self.environments.setdefault(service, reader.environment)  # the innermost project's
                self._add(located, included, here)

    def _included_reader(
        self, env_files: object, folder: Path, directory: Path, where: Where, here: tuple[str | int, ...]
    ) -> Reader | None:
        """The reader of an included project: its variables are this project's over its env files
        (``env_file``, relative to the including file; default the ``.env`` of its project directory)."""
        given = [env_files] if isinstance(env_files, str) else env_files
        if given is not None and (not isinstance(given, list) or not all(isinstance(f, str) for f in given)):
            self.problem(where, (*here, "env_file"), "env_file: a path or a list of paths")
            return None
        paths = [folder / f for f in given] if given else [p for p in [directory / ".env"] if p.is_file()]
        variables: dict[str, str] = {}
        for path in paths:
            try:
                variables.update(interpolation.read_env_file(path, {**variables, **self.environment}, lambda _m: None))
            except OSError as exc:
                self.problem(where, (*here, "env_file"), f"cannot read {path}: {exc.strerror or exc}")
                return None
            except ValueError as exc:  # UnicodeDecodeError too
                self.problem(where, (*here, "env_file"), str(exc))
                return None
        return dataclasses.replace(self, environment={**variables, **self.environment})

    def _add(self, located: Located, included: Located, here: tuple[str | int, ...]) -> None:
        top, other = located.value, included.value
        assert isinstance(top, dict) and isinstance(other, dict)
        for group in _GROUPS:
            members = other.get(group)
            for name, member in members.items() if isinstance(members, dict) else []:
                existing = top.setdefault(group, {}) if isinstance(top.get(group), dict | None) else None
                if existing is None or (top[group] is not None and name in top[group]):
                    self.problem(located.at(here), here, f"{group[:-1]} {name} is defined both here and in the "
                                 "included file")  # fmt: skip
                    continue
                if top[group] is None:
                    top[group] = {}
                top[group][name] = member
                located.graft((group, name), included.sub((group, name)), included.sub_keys((group, name)))

    def _extends(self, located: Located, file: str) -> None:
        """``extends: {service: base[, file: other.yaml]}`` (or ``extends: base``), bases first."""
        top = located.value
        assert isinstance(top, dict)
        found = top.get("services")
        services: dict[str, object] = found if isinstance(found, dict) else {}
        folder = Path(file).parent if not file.startswith("<") else Path.cwd()
        done: set[str] = set()

        def resolve(name: str, chain: tuple[str, ...]) -> None:
            service = services.get(name)
            if name in done or not isinstance(service, dict) or "extends" not in service:
                return
            path = ("services", name, "extends")
            spec = service["extends"]
            base = spec if isinstance(spec, str) else spec.get("service") if isinstance(spec, dict) else None
            if isinstance(spec, dict) and set(spec) - {"service", "file"}:
                self.problem(located.at(path), path, "extends: service and file only")
            if isinstance(spec, dict) and isinstance(spec.get("file"), str):
                base_located = self._base_from_file(folder / spec["file"], str(base), located.at(path), path)
            elif base not in services or base in chain or not isinstance(base, str):
                why = "is a cycle" if base in chain else f"names {base!r}, which is not a service of this file"
                self.problem(located.at(path), path, f"extends {why}")
                base_located = None
            else:
                resolve(base, (*chain, name))
                base_located = Located(services[base], located.sub(("services", base)),
                                       located.sub_keys(("services", base)))  # fmt: skip
            done.add(name)
            if base_located is None:
                service.pop("extends", None)
                return
            own = Located(service, located.sub(("services", name)), located.sub_keys(("services", name)))
            merged = merging.extend(own, base_located)
            services[name] = merged.value
            located.graft(("services", name), merged.places, merged.keys)

        for service_name in list(services):
            resolve(service_name, ())

    def _base_from_file(self, path: Path, base: str, where: Where, field: tuple[str | int, ...]) -> Located | None:
        other = self.read_file(path, where, field)
        if other is None:
            return None
        found = other.value.get("services") if isinstance(other.value, dict) else None
        if not isinstance(found, dict) or not isinstance(found.get(base), dict):
            self.problem(where, field, f"extends names {base!r}, which is not a service of {path}")
            return None
        return Located(found[base], other.sub(("services", base)), other.sub_keys(("services", base)))


def _rebase(located: Located, folder: str) -> None:
    """Relative paths of a file read from another folder, made absolute against its own folder."""
    top = located.value
    assert isinstance(top, dict)

    def absolute(path: object) -> object:
        if isinstance(path, str) and not path.startswith(("/", "~")):
            return os.path.normpath(os.path.join(folder, path))
        return path

    for service in (top.get("services") or {}).values() if isinstance(top.get("services"), dict) else []:
        for mount in service.get("volumes") or [] if isinstance(service, dict) else []:
            if isinstance(mount, dict) and mount.get("type") == "bind":
                mount["source"] = absolute(mount.get("source"))
        for env_file in service.get("env_file") or [] if isinstance(service, dict) else []:
            if isinstance(env_file, dict):
                env_file["path"] = absolute(env_file.get("path"))
    for group in ("secrets", "configs"):
        for item in (top.get(group) or {}).values() if isinstance(top.get(group), dict) else []:
            if isinstance(item, dict) and "file" in item:
                item["file"] = absolute(item["file"])


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
