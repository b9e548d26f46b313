"""The ``reconcile`` process: what the console script runs.

Where it sits: above :mod:`reconciler.cli`, whose :func:`reconciler.cli.entry.main` it calls; the
only module that treats the interpreter as its own (``python -m reconciler.cli`` calls ``main``
directly, without what follows). Tests and other callers of ``main`` in their own process must
not come through here.

Two settings of the cyclic garbage collector, for a command that is mostly imports and, for a
no-op, a few milliseconds of work (measured: a 50-container no-op apply, installed as the README
installs it, spent ~9 ms of its ~68 ms in the collector):

* it is off while the command's modules are imported (about ten thousand tracked objects and
  next to no cyclic garbage: the 25 collections that ran there freed 127 objects in all), and on
  again before the command runs, so a long ``apply`` or the daemon collect as usual;
* what is alive when the command returns is frozen (:func:`gc.freeze`): the interpreter's last
  collection at exit then skips it. The operating system takes the memory back anyway; files are
  closed by their ``with`` blocks, and standard streams and logging handlers are flushed at exit
  as before (they do not depend on the collector).

It must not do anything else: parsing, output and errors are ``entry``'s.
"""

from __future__ import annotations

import gc
import sys
from typing import NoReturn


def main() -> NoReturn:
    gc.disable()
    try:
        from reconciler.cli import entry
    finally:
        gc.enable()
    code = entry.main()
    gc.freeze()
    sys.exit(code)
