"""Compose files in, as they are: a Compose Specification file read as the manifests it means.

Sits above :mod:`reconciler.manifests` (it builds manifest documents and hands them to the
manifest loader, so that one set of rules validates both) and below the CLI, the daemon's
operations and the controller's folder, which call :mod:`.loader`. The modules, in import order:

- ``located``: plain values with the file, line and column of every path;
- ``interpolation``: ``${VAR}`` and its forms, ``$$``, and the ``.env`` files variables come from;
- ``shorthands``: compose's short syntaxes (ports, volumes, ``depends_on``, command strings ...) as long ones;
- ``shapes``: each field's shape (a mapping, a list, a string ...), checked before translating;
- ``merging``: several ``-f`` files with compose's override rules, and ``extends``;
- ``translating``: the project's names, networks and volumes, and the documents being written;
- ``attachments``, ``deploy``: a service's networks, ports, mounts, files, logging; ``deploy`` and ``scale``;
- ``services``: one service as a Container document, every field mapped or refused;
- ``loader``: which texts are compose files, the project's name and environment, and the whole load.

It reads YAML only through :mod:`reconciler.manifests` (``yaml_documents``: the manifests'
position-keeping reader, with its limits) and validates only through the manifest loader, so
pydantic and YAML stay in that package; it must not talk to an engine.
"""
