"""DESIRED state: the manifest models (pydantic, strict, frozen) and the loader that positions every error.

A manifest file holds one or more YAML documents, each a ``Container``, ``Network`` or ``Volume``
of ``apiVersion: reconciler/v1``. :func:`load` turns files, folders or stdin into a
:class:`Desired` value, or raises :class:`errors.ManifestError` carrying **every** problem found,
each as ``file:line:col: field.path: message``.

The package's modules, in import order (each imports only modules listed before it):

- ``units``: durations, sizes and signals, parsed and formatted (standard library only);
- ``fields``: the field types of the models, with their validators and JSON schema spellings;
- ``models``: the pydantic models, and the three functions that turn them into data and back;
- ``desired``: the loaded desired state (``Desired``, ``DesiredContainer``, ...), plain dataclasses;
- ``positions``: YAML text to plain values that remember the line and column of every path;
- ``messages``: how problems are worded (field paths, did-you-mean hints, pydantic's errors);
- ``checks``: checks across documents (ports, references, cycles) and ``container_dependencies``;
- ``loader``: ``load``/``load_text``/``load_sources``, the parse cache and env files;
- ``schema``: the JSON schema export.

What the rest of the project may use is exactly ``__all__`` below, imported from this package (not
from its modules): the models as frozen values (read their attributes, compare them, build them
in tests), the ``Desired*`` dataclasses, the loaders and the unit parsers; and, to turn a model
into data or data into a model, only :func:`to_document` (a JSON-ready document),
:func:`container_spec_from_document` (its inverse for a container spec), :func:`bind_mount` and
:func:`with_mounts` (the mounts an engine adds). Other modules must not call pydantic's API
on the models (``model_dump``, ``model_validate``, ``model_copy``, ...) nor import pydantic or
YAML: both libraries are this package's alone, so that a change of either stays here.

The package must not talk to an engine, the network or the planner; it reads only the manifest
files and the env files they name.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    # Re-exports: the names outside code uses, from the module that defines each.
    from reconciler.manifests.checks import container_dependencies
    from reconciler.manifests.desired import Desired, DesiredContainer, DesiredNetwork, DesiredVolume, Source
    from reconciler.manifests.loader import (
        load,
        load_documents,
        load_sources,
        load_text,
        read_inputs,
        require_objects,
        validate_document,
    )
    from reconciler.manifests.models import (
        Backoff,
        BindMount,
        ContainerSpec,
        Healthcheck,
        Logging,
        Model,
        MountedFile,
        NetworkAttachment,
        NetworkSpec,
        Resources,
        Restart,
        TmpfsMount,
        VolumeMount,
        VolumeSpec,
        bind_mount,
        container_spec_from_document,
        mounted_files,
        to_document,
        with_mounts,
    )
    from reconciler.manifests.positions import Positions
    from reconciler.manifests.positions import documents as yaml_documents
    from reconciler.manifests.positions import dump as yaml_text
    from reconciler.manifests.schema import json_schemas
    from reconciler.manifests.units import format_size, parse_duration, parse_signal, parse_size

# The package is imported by nearly every module (for its types), but pydantic and YAML cost
# about 200 ms of a command's start: each name is imported from its module on first use, so a
# command that reads no manifest and builds no model (a no-op apply answered from
# reconciler.verdicts, ``status`` without ``-f``) never loads them.
_HOME = {
    "container_dependencies": "checks",
    **dict.fromkeys(("Desired", "DesiredContainer", "DesiredNetwork", "DesiredVolume", "Source"), "desired"),
    **dict.fromkeys(
        ("load", "load_documents", "load_sources", "load_text", "read_inputs", "require_objects", "validate_document"),
        "loader",
    ),
    "Positions": "positions",
    "json_schemas": "schema",
    **dict.fromkeys(("format_size", "parse_duration", "parse_signal", "parse_size"), "units"),
}
_RENAMED = {"yaml_documents": ("positions", "documents"), "yaml_text": ("positions", "dump")}


def __getattr__(name: str) -> object:
    if name in _RENAMED:
        module, attribute = _RENAMED[name]
    elif name in __all__:
        module, attribute = _HOME.get(name, "models"), name  # the models' names are the rest
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value  # the next use is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Backoff",
    "BindMount",
    "ContainerSpec",
    "Desired",
    "DesiredContainer",
    "DesiredNetwork",
    "DesiredVolume",
    "Healthcheck",
    "Logging",
    "Model",
    "MountedFile",
    "NetworkAttachment",
    "NetworkSpec",
    "Positions",
    "Resources",
    "Restart",
    "Source",
    "TmpfsMount",
    "VolumeMount",
    "VolumeSpec",
    "bind_mount",
    "container_dependencies",
    "container_spec_from_document",
    "format_size",
    "json_schemas",
    "load",
    "load_documents",
    "load_sources",
    "load_text",
    "mounted_files",
    "parse_duration",
    "parse_signal",
    "parse_size",
    "read_inputs",
    "require_objects",
    "to_document",
    "validate_document",
    "with_mounts",
    "yaml_documents",
    "yaml_text",
]
