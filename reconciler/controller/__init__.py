"""The controller: keeps an engine converged on a folder of manifests, for as long as it runs.

Where it sits: ``reconcile watch`` (:mod:`reconciler.daemon`) builds one :class:`Controller`
around an ``Engine`` and feeds it triggers: file events from :mod:`reconciler.watching`, the
engine's own events, timers; the daemon's API serves its status, events, metrics and one-shot
plan/apply. It must not import a backend, watchdog or the CLI, and it never prints.

The package, bottom to top (each module imports only those above it in this list):

* ``queue``: the work queue (client-go's semantics), the injectable clock, the timer's alarm;
* ``state``: the state files a restarted controller reads back (managed stacks, restart counts,
  last good manifests);
* ``report``: events, per-object and per-stack problems, metric samples;
* ``folder``: the manifest folder with per-file error isolation, and what each scan changed;
* ``health``: health probes (Docker's state machine) and the ``dependsOn`` gates;
* ``restarting``: the restart driver (the policy itself is :mod:`reconciler.restarts`);
* ``status``: the status document; ``threads``: the threads around the synchronous core;
* ``passes``: what one pass of a key does (scan, resync, reconcile a stack, due restarts);
* ``controller``: the loop that ties them together: triggers, timers, failures and retries,
  and what the API serves.

This module only re-exports what the daemon, the API and the tests use, so that they need not
know the layout.
"""

from __future__ import annotations

from reconciler.controller.controller import (
    DEFAULT_RELIST,
    DEFAULT_RESYNC,
    RESYNC_KEY,
    SCAN_KEY,
    Controller,
    LockFactory,
)
from reconciler.controller.folder import FileReport, ManifestFolder, Snapshot, only_stack, stack_digests
from reconciler.controller.health import HealthState, probe_argv
from reconciler.controller.queue import Clock, SystemClock, WorkQueue, requeue_delay
from reconciler.controller.report import ControllerEvent, Sample, action_object
from reconciler.controller.restarting import RestartState

__all__ = [
    "DEFAULT_RELIST",
    "DEFAULT_RESYNC",
    "RESYNC_KEY",
    "SCAN_KEY",
    "Clock",
    "Controller",
    "ControllerEvent",
    "FileReport",
    "HealthState",
    "LockFactory",
    "ManifestFolder",
    "RestartState",
    "Sample",
    "Snapshot",
    "SystemClock",
    "WorkQueue",
    "action_object",
    "only_stack",
    "probe_argv",
    "requeue_delay",
    "stack_digests",
]
