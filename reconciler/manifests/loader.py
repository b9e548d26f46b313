"""Loading manifests: texts → positioned values → validated documents → the cross-checked desired state.

At the top of the package, with :mod:`.schema`. :func:`load` turns files, folders or stdin into a
:class:`~.desired.Desired` value, or raises :class:`errors.ManifestError` carrying **every**
problem found, each as ``file:line:col: field.path: message``: YAML problems from
:mod:`.positions`, one document's problems from validating it against :mod:`.models` (worded by
:mod:`.messages`), problems across documents from :mod:`.checks`. Env files named by a container
are read here, on every load, and their digests recorded for the spec hash; so are the files
and variables its secrets and configs name (their content goes to the engine, never to a label).

A daemon loads the same texts again and again, so parsing and validating one text (a pure
function of the text and its file name) is cached in memory; and every ``reconcile`` command
starts a new process, so a valid text's result is also kept on disk (:class:`DiskCache`, keyed by
the text, its file name and the code that validates it). This module must not talk to an engine,
the network or the planner; it reads only the manifest files, the env files they name and its
own cache, and writes only that cache.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import os
import pickle
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

import pydantic

from reconciler import caches, errors, sources
from reconciler.manifests import checks, desired, fields, messages, models, positions, replicas


@dataclasses.dataclass(slots=True)
class _Parsed:
    document: models.Document
    positions: positions.Positions
    file: str


def load(paths: Sequence[str]) -> desired.Desired:
    """Load and validate manifests from files, folders or ``-`` (stdin); all errors at once.
    Paths that declare no object at all raise :class:`errors.NoManifests` (see :func:`require_objects`)."""
    result = load_sources(sources.read_sources(paths))
    require_objects(result, paths)
    return result


def require_objects(result: desired.Desired, paths: Sequence[str]) -> None:
    """Raise :class:`errors.NoManifests` naming ``paths`` when ``result`` declares no object.

    A user's ``-f`` (or a request to the daemon) that names an empty folder or an empty file is a
    mistake, not an empty desired state: applying it would only prune, and planning it says "No
    changes". The controller's folder loads through :func:`load_sources`, where empty is valid."""
    if not (result.containers or result.networks or result.volumes):
        raise errors.NoManifests(paths)


def load_text(text: str, file: str = "<string>") -> desired.Desired:
    """Load one manifest text (tests, the API); env files resolve against the current folder."""
    return load_sources([(file, text)])


def load_sources(texts: Sequence[tuple[str, str]]) -> desired.Desired:
    """The core of :func:`load`: parse, validate, resolve env files, cross-check; all errors at once."""
    return load_documents(texts, [])


def load_documents(
    texts: Sequence[tuple[str, str]], documents: Sequence[tuple[str, object, positions.Positions]]
) -> desired.Desired:
    """:func:`load_sources` with documents already read (``(file, value, positions)``: compose files
    translated by :mod:`reconciler.compose`), validated and cross-checked with the texts' own."""
    diagnostics: list[errors.Diagnostic] = []
    parsed: list[_Parsed] = []
    invalid: set[tuple[str, str]] = set()
    for file, text in texts:
        file_parsed, file_diagnostics, file_invalid = _parse_cached(text, file)
        parsed.extend(file_parsed)
        diagnostics.extend(file_diagnostics)
        invalid.update(file_invalid)
    for file, value, where in documents:
        document = _validate_document(value, where, file, diagnostics)
        if document is not None:
            parsed.append(_Parsed(document, where, file))
        elif (declared := _declared_name(value)) is not None:
            invalid.add(declared)
    result = _assemble(parsed, diagnostics, invalid)
    if diagnostics:
        raise errors.ManifestError(diagnostics)
    return result


def validate_document(value: object, where: positions.Positions, file: str) -> models.Document:
    """One document read elsewhere (a translated compose service), validated; every problem raised."""
    diagnostics: list[errors.Diagnostic] = []
    document = _validate_document(value, where, file, diagnostics)
    if document is None:
        raise errors.ManifestError(diagnostics)
    return document


_ParseResult: TypeAlias = tuple[tuple[_Parsed, ...], tuple[errors.Diagnostic, ...], frozenset[tuple[str, str]]]
# A daemon loads the same texts again and again (every resync, every ``apply`` through its API);
# parsing and validating is a pure function of (text, file name), so the last results are kept.
# Env files are not part of it: ``_assemble`` reads them on every load.
_PARSE_CACHE: collections.OrderedDict[tuple[str, str], _ParseResult] = collections.OrderedDict()
_PARSE_CACHE_SIZE = 64
_PARSE_CACHE_LOCK = threading.Lock()


def forget_parsed() -> None:
    """Empty the in-memory cache (this process then reads each text as a new process would)."""
    with _PARSE_CACHE_LOCK:
        _PARSE_CACHE.clear()


def _parse_cached(text: str, file: str) -> _ParseResult:
    key = (text, file)
    with _PARSE_CACHE_LOCK:
        if (hit := _PARSE_CACHE.get(key)) is not None:
            _PARSE_CACHE.move_to_end(key)
            return hit
    disk = DiskCache.default()
    result = disk.get(text, file) if disk is not None else None
    if result is None:
        diagnostics: list[errors.Diagnostic] = []
        invalid: set[tuple[str, str]] = set()
        parsed = _parse_text(text, file, diagnostics, invalid)
        result = (tuple(parsed), tuple(diagnostics), frozenset(invalid))
        if disk is not None and not diagnostics:  # a text with mistakes is parsed again, to be shown again
            disk.put(text, file, result)
    with _PARSE_CACHE_LOCK:
        _PARSE_CACHE[key] = result
        while len(_PARSE_CACHE) > _PARSE_CACHE_SIZE:
            _PARSE_CACHE.popitem(last=False)
    return result


# The code that decides what a text validates to: the result of a text cached by an older version
# of any of these is never read (see DiskCache.key). The package's own modules, and those it imports.
_VALIDATING_MODULES = ("errors.py", "references.py", "sources.py", "vocabulary.py")


class DiskCache(caches.CacheFolder):
    """Valid texts' parse results on disk, so that a new process need not parse and validate a
    manifest it saw before (``reconcile apply`` of 50 containers spends about 10 ms there, 200
    containers about 60 ms; reading a result back takes a tenth of that).

    One entry per text in the user's cache folder (:mod:`reconciler.caches`: where it is, when it
    is trusted, how entries are written and pruned), named by the SHA-256 of the validating code's
    fingerprint, the file name and the text: a changed text, a renamed file or a new version of
    the models is a new name, never a stale hit. Entries are pickles, read only from a folder that
    is this user's own and closed to every other; one that does not read back is a miss.
    """

    def key(self, text: str, file: str) -> str:
        digest = hashlib.sha256(code_fingerprint())
        for part in (file, text):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()

    def get(self, text: str, file: str) -> _ParseResult | None:
        data = self.read(self.key(text, file))
        if data is None:
            return None
        try:
            # Only this user can have written it (a trusted folder), with the code the key names.
            result = pickle.loads(data)  # noqa: S301
        except Exception:  # a torn, truncated or foreign entry is a miss, never an error
            return None
        return result if isinstance(result, tuple) and len(result) == 3 else None

    def put(self, text: str, file: str, result: _ParseResult) -> None:
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return  # a cache that cannot be written is only slower
        self.write(self.key(text, file), data)


@functools.cache
def code_fingerprint() -> bytes:
    """What the validating code is: the bytes of its modules, pydantic's and Python's versions."""
    import pydantic.version

    digest = hashlib.sha256(f"{pydantic.version.VERSION}\0{sys.version}\0".encode())
    package = Path(__file__).resolve().parent
    modules = sorted(package.glob("*.py")) + [package.parent / name for name in _VALIDATING_MODULES]
    for module in modules:
        digest.update(module.name.encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.digest()


def _parse_text(
    text: str, file: str, diagnostics: list[errors.Diagnostic], invalid: set[tuple[str, str]]
) -> list[_Parsed]:
    """The valid documents of one text; a problem goes to ``diagnostics``, an invalid object's name to ``invalid``."""
    parsed: list[_Parsed] = []
    for value, where in positions.documents(text, file, diagnostics):
        document = _validate_document(value, where, file, diagnostics)
        if document is not None:
            parsed.append(_Parsed(document, where, file))
        elif (declared := _declared_name(value)) is not None:
            invalid.add(declared)
    return parsed


def _validate_document(
    value: object, where: positions.Positions, file: str, diagnostics: list[errors.Diagnostic]
) -> models.Document | None:
    def report(path: Sequence[str | int], message: str, *, key: bool = False) -> None:
        found, (line, column) = where.nearest(path, key=key)
        field = messages.field_text(where.written(found, path))
        diagnostics.append(errors.Diagnostic(where.file_of(found, file), line, column, field, message))

    if not isinstance(value, dict):
        report((), "a manifest document must be a mapping with apiVersion, kind, metadata and spec")
        return None
    kind = value.get("kind")
    if kind is None:
        report((), "required field `kind` is missing (Container, Network or Volume)")
        return None
    model = models.DOCUMENT_MODELS.get(str(kind))
    if model is None:
        report(("kind",), f"unknown kind {kind!r}; expected one of Container, Network, Volume"
               + messages.did_you_mean(str(kind), models.KINDS))  # fmt: skip
        return None
    try:
        document = model.model_validate(value)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            loc = where.clean([e for e in error["loc"] if isinstance(e, str | int)])
            report(loc, messages.pydantic_message(error, model), key=error["type"] == "extra_forbidden")
        return None
    assert isinstance(document, models.ContainerDocument | models.NetworkDocument | models.VolumeDocument)
    return document


def _declared_name(value: object) -> tuple[str, str] | None:
    """``(kind, name)`` of a document that failed validation, to silence cascading "not declared"."""
    if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
        name = value["metadata"].get("name")
        if isinstance(name, str):
            return str(value.get("kind")), name
    return None


_Report: TypeAlias = Callable[[_Parsed, Sequence[str | int], str], None]


def _assemble(
    parsed: list[_Parsed], diagnostics: list[errors.Diagnostic], invalid: set[tuple[str, str]]
) -> desired.Desired:
    """The valid documents of every text as one desired state; duplicates and cross-document problems reported."""
    containers: dict[str, desired.DesiredContainer] = {}
    networks: dict[str, desired.DesiredNetwork] = {}
    volumes: dict[str, desired.DesiredVolume] = {}
    positions_of: dict[tuple[str, str], _Parsed] = {}

    def report(item: _Parsed, path: Sequence[str | int], message: str) -> None:
        found, (line, column) = item.positions.nearest(path)
        field = messages.field_text(item.positions.written(found, path))
        diagnostics.append(errors.Diagnostic(item.positions.file_of(found, item.file), line, column, field, message))

    for item in parsed:
        doc = item.document
        name = doc.metadata.name
        stack = doc.metadata.stack or sources.default_stack(item.file)
        line, column = item.positions.values.get((), (1, 1))
        source = desired.Source(item.file, line, column)
        previous = positions_of.get((doc.kind, name))
        if previous is not None:
            first = previous.positions.values.get(("metadata", "name"), (1, 1))
            where = f"{previous.file}:{first[0]}:{first[1]}"
            report(item, ("metadata", "name"), f"duplicate {doc.kind} {name!r} (first declared at {where})")
            continue
        positions_of[(doc.kind, name)] = item
        labels = dict(doc.metadata.labels)
        if isinstance(doc, models.ContainerDocument):
            effective, digests = _environment(item, doc.spec, report)
            contents = _contents(item, doc.spec, report)
            containers[name] = desired.DesiredContainer(
                name, stack, doc.spec, labels, source, effective, digests, contents
            )
        elif isinstance(doc, models.NetworkDocument):
            networks[name] = desired.DesiredNetwork(name, stack, doc.spec, labels, source)
        else:
            volumes[name] = desired.DesiredVolume(name, stack, doc.spec, labels, source)

    for finding in checks.cross_check(containers, networks, volumes, invalid):
        report(positions_of[("Container", finding.container)], finding.path, finding.message)
    containers, findings = replicas.expand(containers)
    for finding in findings:
        report(positions_of[("Container", finding.container)], finding.path, finding.message)
    stacks = frozenset(
        [c.stack for c in containers.values()]
        + [n.stack for n in networks.values()]
        + [v.stack for v in volumes.values()]
    )
    return desired.Desired(containers=containers, networks=networks, volumes=volumes, stacks=stacks)


def _environment(item: _Parsed, spec: models.ContainerSpec, report: _Report) -> tuple[dict[str, str], dict[str, str]]:
    """The container's environment (env files in order, then ``env`` over them) and each env file's digest.

    Env files resolve against the manifest's folder (the current folder for stdin and strings).
    Each is read once: the digest is of the bytes that were parsed. A problem names the env file
    and the line, never the line's text, which may hold a secret.
    """
    if not spec.env_files:
        return dict(spec.env), {}
    effective: dict[str, str] = {}
    digests: dict[str, str] = {}
    base = _folder_of(item.file)
    for index, env_file in enumerate(spec.env_files):
        env_path = base / env_file
        try:
            data = _read_limited(env_path)
            effective.update(_parse_env_file(data, env_path))
        except OSError as exc:
            report(item, ("spec", "envFiles", index), f"cannot read {env_path}: {exc.strerror or exc}")
            continue
        except ValueError as exc:
            report(item, ("spec", "envFiles", index), str(exc))
            continue
        digests[env_file] = "sha256:" + hashlib.sha256(data).hexdigest()
    effective.update(spec.env)
    return effective, digests


def _contents(item: _Parsed, spec: models.ContainerSpec, report: _Report) -> dict[str, bytes]:
    """The content of each secret and config, by its path in the container.

    A ``file`` resolves against the manifest's folder, as env files do; an ``env`` is a variable
    of the process that loads the manifest (the daemon's, when the daemon loads it). A problem
    names the file or the variable, never the content."""
    contents: dict[str, bytes] = {}
    base = _folder_of(item.file)
    for field, mounted_files in (("secrets", spec.secrets), ("configs", spec.configs)):
        for index, mounted in enumerate(mounted_files):
            if mounted.env is not None:
                value = os.environb.get(mounted.env.encode())
                if value is None:
                    report(item, ("spec", field, index, "env"), f"environment variable {mounted.env} is not set")
                else:
                    contents[mounted.path] = value
                continue
            path = base / str(mounted.file)
            try:
                contents[mounted.path] = _read_limited(path)
            except OSError as exc:
                report(item, ("spec", field, index, "file"), f"cannot read {path}: {exc.strerror or exc}")
            except ValueError as exc:
                report(item, ("spec", field, index, "file"), str(exc))
    return contents


def _folder_of(file: str) -> Path:
    """Where the files a manifest names resolve: its folder (the current folder for stdin and strings)."""
    return Path(file).parent if not file.startswith("<") else Path.cwd()


def read_inputs(result: desired.Desired) -> tuple[list[str], list[str]]:
    """What loading ``result`` read besides the manifests' texts, which decides it as much as they
    do: the paths of the env files and of the secrets' and configs' files (as they resolved), and
    the names of the environment variables its secrets and configs name; each sorted, each once."""
    paths: set[str] = set()
    variables: set[str] = set()
    for container in result.containers.values():
        base = _folder_of(container.source.file)
        paths.update(str(base / env_file) for env_file in container.spec.env_files)
        for mounted in [*container.spec.secrets, *container.spec.configs]:
            if mounted.env is not None:
                variables.add(mounted.env)
            else:
                paths.add(str(base / str(mounted.file)))
    return sorted(paths), sorted(variables)


def _read_limited(path: Path) -> bytes:
    """The bytes of a file named by a manifest, refused beyond the size a manifest may have."""
    with path.open("rb") as file:
        data = file.read(positions.MAX_TEXT_BYTES + 1)
    if len(data) > positions.MAX_TEXT_BYTES:
        raise ValueError(f"{path}: larger than {positions.MAX_TEXT_BYTES >> 20} MiB")
    return data


def _parse_env_file(data: bytes, path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments and blank lines skipped; ``export`` prefix allowed.

    Quotes around a whole value are removed as docker compose does; nothing is interpolated.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{bad_line}: not UTF-8 text") from None
    env: dict[str, str] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not fields.ENV_KEY.match(key):
            raise ValueError(f"{path}:{number}: expected KEY=VALUE (the line is not shown: it may hold a secret)")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env
