"""Renderers: the loaded manifests as another system's objects, for users who move on.

Where it sits: beside the planner, above the manifests (it reads :class:`manifests.Desired` and the
models), below the CLI, which loads the files, writes the output and prints the messages. A
renderer is pure: desired state in, plain dicts and messages out; it must not read or write files,
print, log, or import an engine or YAML (the manifests package dumps the dicts).
"""
