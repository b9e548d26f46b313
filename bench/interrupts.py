"""Benches clean up after a SIGTERM or SIGHUP as after Ctrl-C.

Python runs ``finally`` blocks on Ctrl-C (``KeyboardInterrupt``) but dies at once on SIGTERM (a
``timeout``, a CI job cancelled, a closed terminal), which would leave the containers, mounts,
networks and daemons a bench made. :func:`exit_on_termination` turns both signals into a
``SystemExit`` in the main thread, so every bench's ``try``/``finally`` teardown runs. It must not
do anything else: no cleanup of its own (each bench knows what it made).
"""

from __future__ import annotations

import signal
import types


def _exit(signum: int, frame: types.FrameType | None) -> None:
    # Once: a second signal during the teardown must not cut the teardown short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def exit_on_termination() -> None:
    """From now on, SIGTERM and SIGHUP end the main thread with ``SystemExit(128 + signal)``."""
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)
