"""The native engine: containers run with runc, overlayfs and a conmon per run as keeper, no daemon.

The rest of the project uses :mod:`engine` (``NativeEngine``) and, for ``reconcile image``, the
image store; the modules, by what they are:

* containers: ``records`` (``container.json`` and the state derived from the files),
  ``assembly`` (create and remove), ``runs`` (start, stop), ``supervision`` (launching a run's
  keeper, conmon), ``restarter`` (the keepers' exit command: restart policies with no controller),
  ``prepared`` (next runs readied during a restart's backoff), ``events`` (the read-only event
  stream), ``logs``, ``volumes``, ``processes`` (helper processes told apart from reused pids);
* the OCI runtime: ``bundles`` (``config.json``), ``seccomp``, ``runtime`` (runc's command line),
  ``mounts`` (the rootfs overlay);
* networks: ``networks`` (bridges, veths, namespaces, addresses), ``firewall``, ``dns`` (a name
  server per network), ``network_services`` (what ties those to a network);
* images: ``images`` (the store's facade) and the modules its docstring names.

Like every backend, nothing here imports the planner, the controller, the CLI or another backend.
"""
