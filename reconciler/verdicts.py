"""Remembered no-op verdicts: "nothing to do" for inputs the planner has already seen converged.

Where it sits: above :mod:`reconciler.planning` and :mod:`reconciler.caches`, below the CLI, which
asks it before loading any manifest. A plan is a pure function of the desired state, the engine as
observed and the planner's options (no clock, no I/O: see :mod:`reconciler.planning`), and the
desired state is a pure function of the manifests' texts, the files and variables they name, the
current folder and the code. So when an embedded ``apply``/``plan`` made a plan with no step, the
verdict is kept in the user's cache folder (:mod:`reconciler.caches`) under the digest of all of
those inputs; the next run with the very same inputs prints that plan again without importing
pydantic and YAML, validating or planning (they are most of a no-op's time).

Two entries per converged plan, both JSON (nothing here executes what it reads):

* the **question**, named by the texts, their file names, the current folder, the engine and
  its root or host, the pruning flags and the code (every module's size and time, Python's
  version): the stacks, images and containers the texts declare, and the paths and variable
  names that loading them read (env files, secrets and configs);
* the **answer**, named by the question, the digest of each of those files and variables as they
  are now, the engine as the planner sees it (every field of :class:`observed.Observed`, for the
  objects of the stacks in scope and those that bear a declared name: the planner reads no other,
  :mod:`reconciler.planning` says so and a test holds it) and the planner's options (the
  rollbacks remembered among them): the plan's text and JSON.

Any difference is another name, so a miss, and the command plans as before. Plans that refresh
``Always`` images (a registry is asked) or recreate on request are never remembered, and neither
are compose files (their loader reads more than this module tracks) nor plans with warnings.

This module must not import pydantic, YAML or an engine, and must not print.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import caches

if TYPE_CHECKING:
    from reconciler import manifests, observed, planning, plans

FORMAT = "reconciler-verdict/v1"


@dataclasses.dataclass(frozen=True, slots=True)
class Question:
    """What the remembered texts declare and read, for observing the engine as the planner would."""

    key: str
    stacks: frozenset[str]
    images: tuple[str, ...]
    containers: tuple[str, ...]
    paths: tuple[str, ...]
    variables: tuple[str, ...]
    # Every declared object's name, of any kind, and the containers' staging names: objects of
    # other stacks that bear one may conflict.
    declared: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """A remembered converged plan: as ``plan.render()`` wrote it and as ``plan.to_json()``."""

    text: str
    plan: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """Everything besides the texts that names a question: where and how the command runs."""

    engine: str
    place: str  # the engine's root folder or host
    prune: bool
    prune_volumes: bool


def ask(folder: caches.CacheFolder, texts: Sequence[tuple[str, str]], context: Context) -> Question | None:
    """The question remembered for these texts in this context, or None."""
    key = question_key(texts, context)
    data = _read_json(folder, key) if key is not None else None
    if key is None or data is None:
        return None
    try:
        return Question(key, frozenset(data["stacks"]), tuple(data["images"]), tuple(data["containers"]),
                        tuple(data["paths"]), tuple(data["variables"]), tuple(data["declared"]))  # fmt: skip
    except (KeyError, TypeError):
        return None


def answer(
    folder: caches.CacheFolder, question: Question, actual: observed.Observed, options: planning.Options
) -> Answer | None:
    """The converged plan remembered for ``question`` with the engine as ``actual`` and the
    planner's ``options``, or None (then plan as usual)."""
    data = _read_json(folder, answer_key(question, actual, options))
    if data is None or not isinstance(data.get("text"), str) or not isinstance(data.get("plan"), dict):
        return None
    return Answer(data["text"], data["plan"])


def remember(
    folder: caches.CacheFolder,
    texts: Sequence[tuple[str, str]],
    context: Context,
    *,
    desired: manifests.Desired,
    actual: observed.Observed,
    options: planning.Options,
    plan: plans.Plan,
) -> None:
    """Keep the verdict of a plan made from exactly these inputs, when it may be answered again."""
    from reconciler import manifests, planning

    if not plan.converged or options.force_recreate or options.scope is not None:
        return
    if any(container.spec.pull_policy == "Always" for container in desired.containers.values()):
        return
    key = question_key(texts, context)
    if key is None:
        return
    paths, variables = manifests.read_inputs(desired)
    declared = {*desired.containers, *map(planning.staged, desired.containers), *desired.networks, *desired.volumes}
    question = Question(
        key,
        frozenset(desired.stacks),
        tuple(sorted({c.spec.image for c in desired.containers.values()})),
        tuple(sorted(desired.containers)),
        tuple(paths),
        tuple(variables),
        tuple(sorted(declared)),
    )
    asked = {"stacks": sorted(question.stacks), "images": list(question.images),
             "containers": list(question.containers), "paths": paths, "variables": variables,
             "declared": list(question.declared)}  # fmt: skip
    folder.write(question.key, json.dumps(asked).encode())
    answered = {"text": plan.render(), "plan": plan.to_json()}
    folder.write(answer_key(question, actual, options), json.dumps(answered).encode())


def question_key(texts: Sequence[tuple[str, str]], context: Context) -> str | None:
    """The question's name; None when the current folder is gone (relative paths mean nothing)."""
    try:
        here = os.getcwd()
    except OSError:
        return None
    digest = hashlib.sha256(f"{FORMAT}\0question\0{code_stamp()}\0{here}\0".encode("utf-8", "surrogatepass"))
    digest.update(_canonical(dataclasses.asdict(context)).encode() + b"\0")
    for file, text in texts:
        digest.update(file.encode("utf-8", "surrogatepass") + b"\0" + text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def answer_key(question: Question, actual: observed.Observed, options: planning.Options) -> str:
    digest = hashlib.sha256(f"{FORMAT}\0answer\0{question.key}\0".encode())
    for path in question.paths:
        digest.update(f"{path}\0{_file_digest(Path(path))}\0".encode("utf-8", "surrogatepass"))
    for name in question.variables:
        value = os.environb.get(name.encode("utf-8", "surrogatepass"))
        seen = "unset" if value is None else hashlib.sha256(value).hexdigest()
        digest.update(f"{name}\0{seen}\0".encode("utf-8", "surrogatepass"))
    digest.update(_canonical(in_view(actual, question)).encode("utf-8", "surrogatepass") + b"\0")
    digest.update(_canonical(dataclasses.asdict(options)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def in_view(actual: observed.Observed, question: Question) -> dict[str, Any]:
    """What the planner reads of ``actual``: every object of the stacks in scope or of a declared
    name, in full; objects of other stacks (another user's stacks changing) do not count."""
    declared = set(question.declared)

    def seen(objects: Mapping[str, observed.Owned]) -> dict[str, Any]:
        # The objects themselves: _canonical spells each field (a deep asdict copy cost more).
        return {name: item for name, item in objects.items() if item.stack in question.stacks or name in declared}

    return {"containers": seen(actual.containers), "networks": seen(actual.networks),
            "volumes": seen(actual.volumes), "images": dict(actual.images)}  # fmt: skip


def code_stamp() -> str:
    """The code that loads and plans, as files: each module of the package by path, size and
    modification time (as Python validates its bytecode), and the versions of Python and pydantic."""
    parts = [sys.version]
    _stamp_folder(str(Path(__file__).resolve().parent), "", parts)
    parts.append(_pydantic_stamp())
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _stamp_folder(folder: str, relative: str, parts: list[str]) -> None:
    """Each ``.py`` file under ``folder`` as ``path:size:mtime``, in name order, subfolders after
    the files (one listing per folder, one stat per file: this runs on every no-op)."""
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name.endswith(".py") and entry.is_file():
            info = entry.stat()
            parts.append(f"{relative}{entry.name}:{info.st_size}:{info.st_mtime_ns}")
    for entry in entries:
        if entry.name != "__pycache__" and entry.is_dir():
            _stamp_folder(entry.path, f"{relative}{entry.name}/", parts)


def _pydantic_stamp() -> str:
    """pydantic's installed version, by its files (importing it is what this module saves)."""
    import importlib.util

    found = importlib.util.find_spec("pydantic")
    if found is None or found.origin is None:
        return "no pydantic"
    version = Path(found.origin).parent / "version.py"
    try:
        info = version.stat()
    except OSError:
        return "no pydantic version"
    return f"pydantic:{version}:{info.st_size}:{info.st_mtime_ns}"


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable {exc.errno}"


def _read_json(folder: caches.CacheFolder, name: str) -> dict[str, Any] | None:
    data = folder.read(name)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(value: object) -> object:
    """What JSON has no spelling for, spelled: a dataclass instance as its fields (as
    :func:`dataclasses.asdict` would, without copying), sets sorted, other mappings and iterables
    as such."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, Iterable):
        return list(value)
    return repr(value)
