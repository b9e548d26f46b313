"""The ``reconcile`` command line: the user's contract.

Where it sits: the top of the project. Every manifest command follows one path, through
:mod:`reconciler.operations`: load and validate manifests → observe the engine once → plan (pure)
→ print → execute (``apply``/``delete`` only). ``plan``, ``apply``, ``status``, ``logs`` and
``events`` go through the daemon when its socket answers and it drives the same engine, and run
embedded otherwise, with the same output. Exit codes are documented for CI:

* ``validate``: 0 valid, 1 any error (each as ``file:line:col: field: message``);
* ``plan``: 0 converged, 2 changes pending, 1 error;
* ``apply``/``delete``: 0 every step succeeded, 1 otherwise;
* ``exec``: the command's own exit code (125 when the engine itself failed, as ``docker exec``);
* a usage error (an unknown option, a missing argument): 1, never 2, which only ``plan`` means;
* ``-f`` naming no manifest at all, or ``delete`` of a stack that owns nothing: 1.

The package, bottom to top (each module imports only those before it in this list, but ``watch``
imports ``daemon`` when the command runs):

* ``console``: output streams, exit codes, the table printer, sizes (IEC units), step lines;
* ``options``: the global options (before or after the command), shared options, the engine;
* ``remote``: finding the daemon, sending it manifests, reading its errors;
* the commands: ``manifest_commands`` (validate, hash, schema), ``apply`` (plan, apply,
  delete), ``status``, ``containers`` (logs, exec, stats), ``image``, ``events``, ``watch``;
* ``daemon``: the process ``reconcile watch`` runs (imported only when it starts);
* ``entry``: the parser and the error messages; ``main``.

The commands print (through ``console``); nothing they call prints (the native engine's helper
programs, run as their own processes, print only their usage). Heavy modules (the
models, the planner, an engine's client) are imported inside the handlers that use them: a
command the daemon serves starts without them.
"""

from __future__ import annotations

from reconciler.cli import entry

main = entry.main
build_parser = entry.build_parser

__all__ = ["build_parser", "main"]
