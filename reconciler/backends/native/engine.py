"""The native engine (the embedded default): no daemon, the project's own container-creation path.

:class:`NativeEngine` ties together the modules that do the work, over a state root (``--root``,
default ``/var/lib/reconciler``; root-only, 0600 files in 0700 directories):

* **create** (:mod:`assembly`): the image from :mod:`images` (pulled, verified, unpacked into
  overlay snapshots), the overlay rootfs, the network, the ``/etc`` files, volumes
  (:mod:`volumes`), the OCI ``config.json`` (:mod:`bundles`), and last the record (:mod:`records`).
* **start / stop** (:mod:`runs`): a keeper per run, conmon (:mod:`supervision`), spawned detached;
  it runs ``runc create`` with the container's stdio, reports the init pid, and the engine then runs
  ``runc start``. conmon writes the logs (k8s-file, :mod:`logs` reads them) and, when the init
  exits, its exit code, then runs its exit command (:mod:`restarter`: the restart policy when no
  controller runs). A stop sends the stop signal, waits, then SIGKILLs every process.
* **observe / events**: state comes from the files and from the keeper's liveness (pid and
  start time, so that a reused pid is not mistaken for it); :mod:`events` waits on the
  keepers' pidfds, so a ``die`` arrives as soon as the process exits, not at a poll tick.
* **remove**: the runtime state, the network, the rootfs mount and the directory (named volumes
  stay); once no container uses the implicit ``default`` network, it goes too.
* **networks**: bridges, veths, addresses and namespaces in :mod:`networks`, forwarding and
  published ports in :mod:`firewall`, names in :mod:`dns` (a server per network that forwards
  what it does not own upstream: ``dns_upstream``, else the host's), tied together by
  :mod:`network_services`.

Health checks are the controller's job (``reconcile watch``), and so are restart policies while it
runs (without it, each keeper's exit command applies them). The engine only makes restarts quick:
asked by the controller (:meth:`NativeEngine.prepare_next_run`), it prepares a container's next run
during the restart's backoff (:mod:`prepared`), and the start is then only ``runc start``. Nothing
else starts runtime work: reading events in particular only reads.

Mutations take the engine's lock (``<root>/.engine.lock``, an flock, so the CLI and the controller
exclude each other too); a crash half-way leaves files that the next call reads back or cleans up.
Most take it exclusive. A create and a start take it *shared*, so that those of an apply overlap:
a create holds the assembly lock (``<root>/.assembly.lock``) while it takes from shared state
(names, host ports, addresses, name tables) and not while it makes what is only its container's
(its network namespace, files, config); a start holds the container's own lock (``.start.lock``
in its directory). Whoever takes the lock exclusive, and the remains collector (which needs it
free), waits for them all.
Like every backend, this module must not import the planner, the controller or the CLI.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import errors, files, manifests, observed
from reconciler.backends.native import (
    image_index,
    networks,
    records,
    remains,
    runtime,
    snapshots,
    volumes,
)

# What only a mutation, the logs or the events use is imported where it is used: assembly, bundles
# and images (with layers and registry settings), events, handover, logs, mounts, prepared, runs,
# secret_files and shared_memory. Observing, all a no-op apply does, needs none of them (they were
# about half of a no-op's import time).
if TYPE_CHECKING:
    from reconciler import engine, plans
    from reconciler.backends.native import assembly, images

# Re-exported: the implicit network of bridge-mode containers that name none.
DEFAULT_NETWORK = networks.DEFAULT_NETWORK
# In a container's directory: held while a run of it starts (see NativeEngine.start_container).
START_LOCK = ".start.lock"


class NativeEngine:
    """The embedded engine over a state directory (``--root``, default ``/var/lib/reconciler``)."""

    name = "native"

    def __init__(
        self, root: Path, *, runtime_binary: str = runtime.DEFAULT_RUNTIME, dns_upstream: Sequence[str] = ()
    ) -> None:
        self.root = root
        # Where the networks' DNS servers forward outside names (``--dns-upstream``); none: the host's.
        self.dns_upstream = _parsed_upstreams(dns_upstream)
        self.runtime_binary = runtime_binary
        self.records = records.Records(root / "containers")
        self.volumes = volumes.Volumes(root / "volumes")
        self.networks = networks.Networks(root / "networks")
        self._images: images.ImageStore | None = None
        self._runtime: runtime.Runtime | None = None
        self._lock = threading.RLock()
        self._remains = remains.Collector(self.records, root / "runtime", runner=lambda: self.runtime,
                                          discard=lambda d, i: self._assembly().discard(d, i),
                                          snapshotter=snapshots.of_root(root))  # fmt: skip

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def image_store(self) -> images.ImageStore:
        # Created lazily: `reconcile validate` and `plan` of a stack without containers need no store.
        if self._images is None:
            from reconciler.backends.native import images

            files.make_private_dir(self.root)
            self._images = images.ImageStore(self.root)
        return self._images

    @property
    def runtime(self) -> runtime.Runtime:
        if self._runtime is None:
            self._runtime = runtime.Runtime(runtime.ensure_state_dir(self.root / "runtime"), binary=self.runtime_binary)
        return self._runtime

    @property
    def lock_path(self) -> Path:
        return self.root / ".engine.lock"

    @property
    def assembly_lock_path(self) -> Path:
        return self.root / ".assembly.lock"

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One mutation at a time per root, across threads and processes (CLI and controller)."""
        with self._lock, files.file_lock(self.lock_path):
            yield

    def _assembly(self) -> assembly.Assembly:
        from reconciler.backends.native import assembly

        return assembly.Assembly(self.records, self.volumes, self.networks, self.image_store, self.runtime,
                                 dns_upstream=self.dns_upstream)  # fmt: skip

    # -- observe ----------------------------------------------------------------------------------

    def observe(self, *, images: Sequence[str] = (), stacks: Collection[str] | None = None) -> observed.Observed:
        self._remains.collect(self._lock, self.lock_path)  # what a killed process left (see remains)
        local: dict[str, str | None] = {}
        if images:  # the index alone answers which are here (the image store is not loaded for it)
            index = image_index.ImageIndex(self.root)
            data = index.load()
            for ref in images:
                image_id = index.resolve(ref, data)
                local[ref] = image_id if image_id is not None and image_id in data["images"] else None
        containers = {
            record.name: _observed_container(record)
            for record in self.records.all()
            if observed.LABEL_KIND in record.labels
        }
        owned_networks = {
            network.name: observed.ObservedNetwork(
                name=network.name,
                labels=dict(network.labels),
                network_id=network.bridge,
                subnet=network.subnet,
                gateway=network.gateway,
            )
            for network in self.networks.all()
            if observed.LABEL_KIND in network.labels
        }
        return observed.Observed(
            containers=containers, networks=owned_networks, volumes=self.volumes.observed(), images=local
        )

    # -- images, volumes, networks ----------------------------------------------------------------

    def pull_image(self, image: str, *, policy: engine.PullPolicy = "IfNotPresent") -> str:
        return self.image_store.pull(image, policy=policy).id

    def create_volume(self, request: plans.VolumeRequest) -> None:
        if request.spec.options:
            raise errors.RuntimeFailed(f"volume {request.name}: the local driver takes no options yet")
        with self._exclusive():
            self.volumes.create(request.name, dict(request.labels))

    def remove_volume(self, name: str) -> None:
        with self._exclusive():
            self.volumes.remove(name, volumes.users(self.records, name))

    def create_network(self, request: plans.NetworkRequest) -> None:
        from reconciler.backends.native import network_services

        with self._exclusive():
            existing = self.networks.get(request.name)
            if existing is None:
                network_services.create(self.networks, request.name, request.spec, dict(request.labels),
                                        upstreams=self.dns_upstream)  # fmt: skip
            elif all(existing.labels.get(k) == request.labels.get(k) for k in observed.OWNER_LABELS):
                network_services.ensure(self.networks, existing, upstreams=self.dns_upstream)
            else:
                raise errors.Conflict(f"network {request.name} exists and is owned by someone else")

    def remove_network(self, name: str) -> None:
        from reconciler.backends.native import network_services

        with self._exclusive():
            if self.networks.get(name) is None:
                return
            users = sorted(record.name for record in self.records.all() if name in record.networks)
            if users:
                raise errors.RuntimeFailed(f"network {name} is in use by {', '.join(users)}")
            network_services.remove(self.networks, name)

    # -- containers -------------------------------------------------------------------------------

    def create_container(self, request: plans.ContainerRequest) -> str:
        """Made in three steps (see :class:`assembly.Assembly`): what is shared under the assembly
        lock, what is the container's own (its network namespace, files, config) without it, so
        that the creates of an apply overlap there, then the record under the lock again. A
        container publishing ports is made under the lock throughout: its host ports are
        chosen from the records, where a create under way is not yet."""
        maker = self._assembly()
        with files.file_lock(self.lock_path, shared=True):
            if request.spec.ports:
                with files.file_lock(self.assembly_lock_path):
                    return maker.create(request)
            with files.file_lock(self.assembly_lock_path):
                draft = maker.begin(request)
            if isinstance(draft, str):
                return draft
            try:
                maker.build(draft)
                with files.file_lock(self.assembly_lock_path):
                    return maker.finish(draft)
            except BaseException:
                with files.file_lock(self.assembly_lock_path):
                    maker.discard(draft.directory, draft.container_id)
                raise

    def start_container(self, name: str) -> None:
        from reconciler.backends.native import bundles, runs

        record = self.records.get(name)
        if bundles.shared_namespaces(record.spec):
            # Its peers' /proc paths, written into its config, must hold until its init runs:
            # no peer may start or go meanwhile, so the whole start holds the lock exclusive.
            with self._exclusive():
                record = self.records.get(name)
                if not records.is_running(record):
                    self._ready_to_run(record)
                    runs.start(record, self.runtime)
            return
        # The run itself (conmon, ``runtime create``, ``runtime start``) touches only this
        # container's files and runtime state: it holds the engine's lock *shared* and the
        # container's own lock, so that the starts of an apply overlap with each other and with
        # the creates, while every change to shared state that takes the lock exclusive (a
        # removal, a network's) and the remains collector (which needs the lock free) wait.
        with self._starting(name) as record:
            if not records.is_running(record):
                self._ready_to_run(record)
                runs.start(record, self.runtime)

    @contextlib.contextmanager
    def _starting(self, name: str) -> Iterator[records.Record]:
        """The engine's lock shared, then the container's own lock; its record, read under both."""
        with files.file_lock(self.lock_path, shared=True):
            record = self.records.get(name)
            with files.file_lock(record.directory / START_LOCK):
                yield self.records.load(record.container_id) or record  # as another start may have left it

    def _ready_to_run(self, record: records.Record) -> None:
        """What a run needs besides its keeper, made again if a host reboot took it. The rootfs
        mount and the network are made under the assembly lock (they take addresses and rules);
        the rest is the container's own."""
        from reconciler.backends.native import mounts, secret_files, shared_memory

        rootfs = record.directory / "rootfs"
        gone = record.spec.network_mode == "bridge" and not Path(networks.netns_path(record.container_id)).exists()
        if gone or not mounts.is_mounted(rootfs):  # after a host reboot
            with files.file_lock(self.assembly_lock_path):
                self._remount(record)
                self._assembly().reconnect(record)  # its network namespace is gone
        # After a host reboot the secrets' tmpfs is gone too: made again from the record.
        secret_files.materialise(record.directory, record.spec, secret_files.from_record(record.data))
        shared_memory.ensure(record.directory, record.spec)  # after a host reboot
        self._join_peers(record)

    def _remount(self, record: records.Record) -> None:
        from reconciler.backends.native import mounts

        if mounts.is_mounted(record.directory / "rootfs"):
            return
        image = self.image_store.get(str(record.data["image_id"]))
        if image is None:
            raise errors.NotFound(f"container {record.name}: its image {record.data['image_id'][:19]} is gone")
        mounts.mount(self.image_store.rootfs_mount(image, record.directory))

    def _join_peers(self, record: records.Record) -> None:
        """``ipc``/``pid: container:NAME``: that container's namespaces, through its init's ``/proc``
        entry, written into ``config.json`` at each start (its init changes with each of its runs).
        As with Docker, it must be running, and its IPC namespace is joined only if it is shareable (or
        the host's)."""
        from reconciler.backends.native import bundles, shared_memory

        paths, shm = {}, None
        for kind, name in bundles.shared_namespaces(record.spec).items():
            peer = self.records.get(name)
            info = records.read_json(peer.directory / records.SUPERVISOR) if records.is_running(peer) else None
            if info is None or not info.get("init_pid"):
                raise errors.RuntimeFailed(f"container {record.name}: {kind} container:{name} needs {name} running")
            if kind == "ipc" and peer.spec.ipc not in ("shareable", "host"):
                raise errors.RuntimeFailed(f"container {record.name}: the IPC namespace of {name} is not shareable "
                                           "(give it ipc: shareable)")  # fmt: skip
            paths[kind] = f"/proc/{info['init_pid']}/ns/{kind}"
            if kind == "ipc":  # the peer's /dev/shm: its shared tmpfs, or the host's with the host's IPC
                shm = "/dev/shm" if peer.spec.ipc == "host" else str(shared_memory.folder(peer.directory))  # noqa: S108
        if paths:
            config = records.read_json(record.directory / "config.json") or {}
            bundles.write(record.directory, bundles.with_peer_namespaces(config, paths, shm=shm))

    def stop_container(self, name: str, *, timeout: float | None = None) -> None:
        from reconciler.backends.native import handover, prepared, runs

        # The engine lock only to discard a prepared run: the wait for the exit changes no file of
        # ours (conmon records the exit), and holding the lock would serialise every stop
        # of an apply behind the slowest.
        record = self.records.get(name)
        timeout = record.spec.stop_timeout if timeout is None else timeout
        runs.mark_stopping(record)
        # A rollout's switch: new connections go to NAME.next, the ones in flight end here first.
        handover.before_stop(self.records, record, timeout)
        if (record.directory / records.PREPARED).exists():
            with self._exclusive():
                prepared.drop(record.directory, record.container_id, self.runtime)
        runs.stop(record, self.runtime, timeout)

    def remove_container(self, name: str) -> None:
        from reconciler.backends.native import network_services, runs

        record = self.records.find(name)
        if record is None:
            return
        runs.stop(record, self.runtime, 0.0)
        with self._exclusive():
            record = self.records.find(name)
            if record is None:
                return
            runs.stop(record, self.runtime, 0.0)  # started again meanwhile: kill it now, under the lock
            self._assembly().discard(record.directory, record.container_id)
            remaining = self.records.all()
            network_services.write_names(self.networks, remaining, record.networks)
            self._drop_unused_default_network(remaining)

    def _drop_unused_default_network(self, remaining: Sequence[records.Record]) -> None:
        """The implicit network, gone (bridge, DNS server, rules) once no container uses it.

        Nobody declared it and nothing shows it (it has no owner labels), so no command would ever
        remove it; the next bridge-mode container without networks creates it again. Best effort:
        a removal that fails leaves it for the next one, and the container's removal stands.
        """
        from reconciler.backends.native import network_services

        if self.networks.get(DEFAULT_NETWORK) is None or any(DEFAULT_NETWORK in r.networks for r in remaining):
            return
        with contextlib.suppress(errors.RuntimeFailed):
            network_services.remove(self.networks, DEFAULT_NETWORK)

    def rename_container(self, name: str, new_name: str) -> None:
        from reconciler.backends.native import network_services

        with self._exclusive():
            record = self.records.get(name)
            if self.records.find(new_name) is not None:
                raise errors.Conflict(f"container {new_name} already exists")
            record.data["name"] = new_name
            record.save()
            network_services.write_names(self.networks, self.records.all(), record.networks)

    def update_container(self, name: str, resources: manifests.Resources) -> None:
        from reconciler.backends.native import bundles, prepared

        with self._exclusive():
            record = self.records.get(name)
            if records.is_running(record):
                self.runtime.update(record.container_id, bundles.live_resources(resources))
            prepared.drop(record.directory, record.container_id, self.runtime)  # made with the old limits
            config = records.read_json(record.directory / "config.json") or {}
            bundles.write(record.directory, bundles.with_resources(config, resources))
            record.data["resources"] = {"memory": resources.memory, "cpus": resources.cpus, "pids": resources.pids}
            record.save()

    def prepare_next_run(self, name: str) -> None:
        """Prepare the next run of ``name`` in the background (see :mod:`prepared`); best effort."""
        from reconciler.backends.native import prepared

        threading.Thread(target=self._prepare_next_run, args=(name,), name=prepared.thread_name(name),
                         daemon=True).start()  # fmt: skip

    def _prepare_next_run(self, name: str) -> None:
        from reconciler.backends.native import bundles, prepared

        # Best effort, in a thread of its own: a failure leaves the container as it was, and its
        # start takes the ordinary path.
        with contextlib.suppress(errors.EngineError, OSError, ValueError, KeyError), self._exclusive():
            record = self.records.find(name)
            # Not one that joins another's namespaces: they are looked up when it starts.
            if record is not None and not bundles.shared_namespaces(record.spec):
                prepared.prepare(record, self.runtime)

    # -- inspection -------------------------------------------------------------------------------

    def stats(self, name: str) -> engine.Stats:
        from reconciler import engine

        record = self.records.get(name)
        if not records.is_running(record):
            raise errors.RuntimeFailed(f"container {name} is not running")
        data = self.runtime.stats(record.container_id)
        memory = data.get("memory") or {}
        usage = int((memory.get("usage") or {}).get("usage") or 0)
        details = memory.get("raw") or {}
        # Page cache is not "in use" (as docker stats: inactive_file on cgroup v2, cache on v1).
        cache = details.get("total_inactive_file", details.get("inactive_file", memory.get("cache", 0)))
        limit = (record.data.get("resources") or {}).get("memory")
        return engine.Stats(
            cpu_seconds=int(((data.get("cpu") or {}).get("usage") or {}).get("total") or 0) / 1e9,
            memory_bytes=max(0, usage - int(cache or 0)),
            memory_limit=int(limit) if limit else None,
            pids=int((data.get("pids") or {}).get("current") or 0),
        )

    def logs(self, name: str, *, follow: bool = False, tail: int | None = None) -> Iterator[engine.LogLine]:
        from reconciler.backends.native import logs

        record = self.records.get(name)
        yield from logs.read(record.directory, running=lambda: records.is_running(record), follow=follow, tail=tail)

    def exec(
        self, name: str, argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None
    ) -> engine.ExecResult:
        from reconciler import engine
        from reconciler.backends.native import bundles

        record = self.records.get(name)
        if not records.is_running(record):
            raise errors.RuntimeFailed(f"container {name} is not running")
        process = (records.read_json(record.directory / "config.json") or {}).get("process", {})
        done = self.runtime.exec(record.container_id, bundles.exec_process(process, argv), timeout=timeout, stdin=stdin)
        return engine.ExecResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)

    def exec_attached(self, name: str, argv: Sequence[str]) -> int:
        """``exec -t``: ``argv`` on a new terminal attached to ours (see :class:`engine.AttachesTerminals`)."""
        from reconciler.backends.native import bundles

        record = self.records.get(name)
        if not records.is_running(record):
            raise errors.RuntimeFailed(f"container {name} is not running")
        process = (records.read_json(record.directory / "config.json") or {}).get("process", {})
        return self.runtime.exec_attached(record.container_id, bundles.exec_process(process, argv, terminal=True))

    def events(self, *, stop: threading.Event) -> Iterator[engine.Event]:
        """``start`` and ``die`` events from the keepers' pidfds (see :mod:`events`); read only."""
        from reconciler.backends.native import events

        return events.EventStream(self.records).read(stop=stop)

    def history(self, *, since: float = 0.0) -> list[engine.Event]:
        """Creations, last starts and last exits from the container records (see :mod:`events`)."""
        from reconciler.backends.native import events

        return events.history(self.records, since=since)

    def close(self) -> None:
        return None


def _parsed_upstreams(values: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """``--dns-upstream``'s values, checked now (network_services, with the DNS servers' code, is
    imported only when there are some: observing needs none of it)."""
    if not any(value.strip() for value in values):
        return ()
    from reconciler.backends.native import network_services

    return network_services.parse_upstreams(values)


def _observed_container(record: records.Record) -> observed.ObservedContainer:
    state, exit_info = records.state_of(record)
    # The recorded spec is read as data: validating it into a model would import pydantic, which
    # a no-op apply does not otherwise need (see reconciler.verdicts).
    spec = record.data["spec"]
    limits = record.data.get("resources", {})
    return observed.ObservedContainer(
        name=record.name,
        labels=record.labels,
        container_id=record.container_id,
        image=str(spec["image"]),
        image_id=str(record.data.get("image_id", "")),
        state=state,
        exit_code=None if exit_info is None else int(exit_info["exit_code"]),
        created_at=record.data.get("created_at"),
        started_at=record.data.get("started_at"),
        finished_at=None if exit_info is None else float(exit_info["finished_at"]),
        restart_count=int(record.data.get("restart_count", 0)),
        oom_killed=bool(exit_info and exit_info.get("oom_killed")),
        resources=observed.ObservedResources(
            memory=limits.get("memory"), cpus=limits.get("cpus"), pids=limits.get("pids")
        ),
        networks=tuple(sorted(record.networks)),
        volumes=tuple(sorted(str(m["source"]) for m in spec.get("mounts", []) if m.get("type") == "volume")),
        # The recorded spec holds the host ports chosen at creation for ports that named none.
        ports=tuple(observed.port_text(port) for port in spec.get("ports", [])),
    )
