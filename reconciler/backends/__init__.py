"""The engines behind ``reconciler.engine.Engine``: ``native`` (runc, overlayfs, conmon as each
container's keeper), ``docker`` (a dockerd through the docker SDK) and ``memory`` (a fake for tests).

Each backend imports only the contract's layers (``engine``, ``plans``, ``observed``,
``manifests``, ``files``, ``vocabulary``, ``errors``) and never another backend, the planner, the
controller or the CLI; the CLI picks one by name and imports it lazily.
"""
