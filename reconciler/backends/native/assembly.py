"""Assembling a native container at create, and taking one apart at remove.

``create_container`` makes, under ``<root>/containers/<id>/`` (a fresh 64-hex id):

1. the **rootfs**: an overlay of the image's layers (read-only) and a per-container upper dir,
   mounted at ``rootfs/`` (:mod:`images`, :mod:`mounts`);
2. the **network**: the container's own namespace with a veth per network it joins, and its
   published ports; or the host's; or another container's (:mod:`networks`, :mod:`firewall`);
3. ``hostname``, ``hosts`` and ``resolv.conf``, bind-mounted over the rootfs's ``/etc`` files (on
   a network its own DNS server is the only nameserver, and it forwards what it does not own:
   :mod:`dns`; ``host`` mode gets the host's resolvers, ``container:NAME`` that container's files);
4. volumes (copy-up, anonymous volumes, ``volumesFrom``: :mod:`volumes`), the tmpfs of its
   secrets and configs (:mod:`secret_files`), then the OCI
   ``config.json`` (:mod:`bundles`), and last the record, ``container.json`` (:mod:`records`):
   a directory without a record is a create that did not finish.

A create runs in three steps, so that creates overlap where they can (:mod:`engine` holds the
assembly lock for the first and the last): :meth:`Assembly.begin` takes what is shared (the name,
host ports, volumes, the addresses on its networks) and mounts the rootfs, :meth:`Assembly.build`
makes what is the container's own (network namespace and veths, ``/etc`` files, secrets, the
config), :meth:`Assembly.finish` writes the record and the networks' name tables (a container of
the same name recorded meanwhile wins). A create that fails half-way is undone by
:meth:`Assembly.discard`, which also finishes a remove: the prepared run, the runtime state, the
network (veths, namespace, addresses, rules), the rootfs mount, the secrets' tmpfs and the
directory. This module must not start or stop runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import errors, files, manifests, observed, plans
from reconciler.backends.native import (
    bundles,
    firewall,
    images,
    layers,
    mounts,
    network_services,
    networks,
    prepared,
    records,
    runtime,
    secret_files,
    shared_memory,
    volumes,
)

ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
# runc leaves the (empty) container directory in the cgroup v2 tree of a hybrid host.
HYBRID_CGROUP_PARENT = Path("/sys/fs/cgroup/unified/reconciler")


@dataclasses.dataclass(slots=True)
class Draft:
    """A create under way, between :meth:`Assembly.begin` and :meth:`Assembly.finish`: a directory
    without a record, which the remains collector discards if the process dies meanwhile."""

    request: plans.ContainerRequest
    image: images.Image
    directory: Path
    container_id: str
    volume_paths: dict[str, str]
    attachments: list[networks.Attachment]
    netns: str | None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Assembly:
    """The stores a container is assembled from."""

    containers: records.Records
    volume_store: volumes.Volumes
    network_store: networks.Networks
    image_store: images.ImageStore
    runner: runtime.Runtime
    # Where the networks' DNS servers forward outside names; empty: the host's resolvers.
    dns_upstream: tuple[network_services.Upstream, ...] = ()

    def create(self, request: plans.ContainerRequest) -> str:
        """The container asked for, created (not started); its id. See the module docstring.
        The three steps of :meth:`begin`, :meth:`build` and :meth:`finish` in one go."""
        draft = self.begin(request)
        if isinstance(draft, str):
            return draft
        try:
            self.build(draft)
            return self.finish(draft)
        except BaseException:
            self.discard(draft.directory, draft.container_id)
            raise

    def _existing(self, request: plans.ContainerRequest) -> str | None:
        """The id of the container of that name when it is the same owner's (create is idempotent)."""
        existing = self.containers.find(request.name)
        if existing is None:
            return None
        if all(existing.labels.get(k) == request.labels.get(k) for k in observed.OWNER_LABELS):
            return existing.container_id
        raise errors.Conflict(f"container {request.name} exists and is owned by someone else")

    def begin(self, request: plans.ContainerRequest) -> Draft | str:
        """What a create takes from shared state (the caller holds the assembly lock): the checks,
        host ports, volumes, the rootfs mount, the addresses on its networks, the copy-up into
        its volumes. The id of the existing container instead, when it exists (see _existing)."""
        existing = self._existing(request)
        if existing is not None:
            return existing
        if request.spec.ports and request.spec.network_mode != "bridge":
            raise errors.RuntimeFailed(f"container {request.name}: ports need networkMode bridge")
        self._check_ports(request)
        request = self._with_host_ports(request)
        request = volumes.with_volumes_from(request, self.containers)
        image = self.image_store.get(request.spec.image)
        if image is None:
            raise errors.NotFound(f"image {request.spec.image} is not present (pull it first)")
        volume_paths = self.volume_store.paths_for(request.spec)
        container_id = records.new_container_id()
        directory = self.containers.base / container_id
        directory.mkdir(mode=0o700, parents=True)
        try:
            rootfs = self.image_store.rootfs_mount(image, directory)
            mounts.mount(rootfs)
            attachments, netns = self._reserve(request, container_id)
            if request.spec.working_dir:
                layers.resolve_in_root(Path(rootfs.target), request.spec.working_dir.lstrip("/"), create=True)
            request = volumes.with_image_volumes(request, image, directory, Path(rootfs.target), volume_paths)
        except BaseException:
            self.discard(directory, container_id)
            raise
        return Draft(request, image, directory, container_id, dict(volume_paths), attachments, netns)

    def build(self, draft: Draft) -> None:
        """What is the container's own (no lock needed; :meth:`discard` undoes it): its network
        namespace and veths, published ports, ``/etc`` files, secrets and ``config.json``."""
        request, directory, container_id = draft.request, draft.directory, draft.container_id
        if draft.netns == networks.netns_path(container_id):  # its own (bridge, or none: lo alone)
            self._plug(request, container_id, draft.attachments)
        mode = request.spec.network_mode
        peer = self.containers.get(mode.removeprefix("container:")).directory if mode.startswith("container:") else None
        rootfs_path = directory / "rootfs"
        texts = etc_texts(request.spec, container_id, draft.attachments, peer=peer)
        etc = _write_etc_files(directory, rootfs_path, texts)
        secret_binds = secret_files.materialise(directory, request.spec, request.files)
        environment = bundles.Environment(container_id=container_id, rootfs=str(rootfs_path),
                                          volume_paths=draft.volume_paths, files=etc, netns_path=draft.netns,
                                          secret_files=secret_binds,
                                          shm_path=shared_memory.ensure(directory, request.spec))  # fmt: skip
        draft.config = bundles.build_config(request, draft.image.config, environment)
        bundles.write(directory, draft.config)

    def finish(self, draft: Draft) -> str:
        """The record, last, and the name tables (the caller holds the assembly lock): a
        container of the same name made meanwhile wins, and this one is discarded."""
        request, container_id = draft.request, draft.container_id
        try:
            existing = self._existing(request)
        except errors.Conflict:
            self.discard(draft.directory, container_id)
            raise
        if existing is not None:
            self.discard(draft.directory, container_id)
            return existing
        spec = request.spec
        record = records.Record(container_id, draft.directory, {
            "name": request.name,
            "id": container_id,
            "labels": dict(request.labels),
            "spec": manifests.to_document(spec),
            "env": dict(request.env),
            secret_files.RECORD_KEY: secret_files.to_record(request.files),
            "image_id": draft.image.id,
            "created_at": time.time(),
            "started_at": None,
            "restart_count": 0,
            "stop_signal": bundles.stop_signal(spec, draft.image.config),
            "resources": {"memory": spec.resources.memory, "cpus": spec.resources.cpus, "pids": spec.resources.pids},
            "cgroups_path": draft.config["linux"]["cgroupsPath"],
            "attachments": [dataclasses.asdict(a) for a in draft.attachments],
        })  # fmt: skip
        record.save()
        network_services.write_names(self.network_store, self.containers.all(), [a.network for a in draft.attachments])
        return container_id

    def _published(self) -> dict[tuple[str, int, str], str]:
        """Every host port our containers publish: (address, port, protocol) → the container."""
        return {
            (str(port.get("hostIP") or "0.0.0.0"), int(port["hostPort"]), str(port.get("protocol", "tcp"))): r.name  # noqa: S104
            for r in self.containers.all()
            for port in r.data["spec"].get("ports", [])
            if port.get("hostPort")
        }

    def _with_host_ports(self, request: plans.ContainerRequest) -> plans.ContainerRequest:
        """Ports without a host port get a free one, as Docker's allocator does: the kernel picks
        it (a bind to port 0), and one another container of ours publishes is never chosen. The
        choice is written into the container's recorded spec, so restarts keep it and ``status``
        shows it."""
        if all(port.host_port is not None for port in request.spec.ports):
            return request
        taken = {(port, protocol) for (_, port, protocol) in self._published()}
        document = manifests.to_document(request.spec)
        for port in document["ports"]:
            if port.get("hostPort") is None:
                port["hostPort"] = _free_port(port.get("hostIP") or "0.0.0.0", port.get("protocol") or "tcp", taken)  # noqa: S104
                taken.add((port["hostPort"], port.get("protocol") or "tcp"))
        return dataclasses.replace(request, spec=manifests.container_spec_from_document(document))

    def _check_ports(self, request: plans.ContainerRequest) -> None:
        """A host port taken by another container of ours, or by any process, fails the create."""
        if not request.spec.ports:
            return  # without reading every record
        taken = self._published()
        for port in request.spec.ports:
            if port.host_ip is not None and ":" in port.host_ip:
                raise errors.RuntimeFailed(f"host address {port.host_ip}: the native engine publishes on IPv4 only")
            if port.host_port is None:
                continue
            ip = port.host_ip or "0.0.0.0"  # noqa: S104
            for (other_ip, other_port, protocol), owner in taken.items():
                if owner.removesuffix(".next") == request.name.removesuffix(".next"):
                    # A replacement (NAME.next) takes NAME's ports over: its DNAT rules come after
                    # NAME's, so NAME serves them until it is removed (plan_inputs.HANDS_OVER_PORTS).
                    continue
                same_address = ip == other_ip or "0.0.0.0" in (ip, other_ip)  # noqa: S104
                if other_port == port.host_port and protocol == port.protocol and same_address:
                    raise errors.Conflict(f"host port {port.host_port}/{port.protocol} is already published by {owner}")
            kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind((ip, port.host_port))
                except OSError as exc:
                    raise errors.RuntimeFailed(
                        f"host port {ip}:{port.host_port}/{port.protocol} is already in use ({exc.strerror})"
                    ) from None

    def _reserve(
        self, request: plans.ContainerRequest, container_id: str
    ) -> tuple[list[networks.Attachment], str | None]:
        """The container's places on its networks (addresses taken, services in place) and the
        path of the network namespace it will have: its own, the host's (None) or a peer's."""
        spec = request.spec
        if spec.network_mode == "host":
            return [], None
        if spec.network_mode.startswith("container:"):
            peer = self.containers.get(spec.network_mode.removeprefix("container:"))
            return [], networks.netns_path(peer.container_id)
        wanted: list[tuple[str, str | None, list[str]]] = []
        if spec.network_mode == "bridge":
            if spec.networks:
                wanted = [(n.name, n.ipv4_address, list(n.aliases)) for n in spec.networks]
            else:
                if self.network_store.get(network_services.DEFAULT_NETWORK) is None:
                    network_services.create(self.network_store, network_services.DEFAULT_NETWORK,
                                            manifests.NetworkSpec(), {}, upstreams=self.dns_upstream)  # fmt: skip
                wanted = [(network_services.DEFAULT_NETWORK, None, [])]
        external = {n.name for n in spec.networks if n.external}
        for name, _, _ in wanted:
            network = self.network_store.get(name)
            if network is None:
                raise errors.NotFound(f"{'external network' if name in external else 'network'} {name} not found")
            network_services.ensure(self.network_store, network, upstreams=self.dns_upstream, joining=True)
        return self.network_store.reserve(container_id, wanted), networks.netns_path(container_id)

    def _plug(self, request: plans.ContainerRequest, container_id: str, attachments: list[networks.Attachment]) -> None:
        """The container's own network namespace with its veths, and its published ports."""
        self.network_store.plug(container_id, attachments)
        if attachments:
            first = attachments[0]
            # The recorded bridge, never a recomputed name: a network older than root-derived
            # names keeps its own (see :mod:`networks`).
            recorded = self.network_store.get(first.network)
            if recorded is None:
                raise errors.NotFound(f"network {first.network} not found")
            for port in request.spec.ports:
                firewall.publish(container_id, bridge=recorded.bridge, host_ip=port.host_ip,
                                 host_port=port.host_port or 0, address=first.address,
                                 container_port=port.container_port, protocol=port.protocol)  # fmt: skip

    def reconnect(self, record: records.Record) -> None:
        """After a host reboot: the container's network namespace is gone (``/run`` is a tmpfs),
        and so are the bridges, veths and firewall rules. They are made again as at creation,
        with the addresses and host ports the container was given then (its record keeps them)."""
        spec = record.spec
        if spec.network_mode != "bridge" or Path(networks.netns_path(record.container_id)).exists():
            return
        for name in record.networks:
            network = self.network_store.get(name)
            if network is not None:
                self.network_store.ensure_bridge(network)
        request = plans.ContainerRequest(name=record.name, spec=spec, env={}, labels=dict(record.labels))
        attachments, _ = self._reserve(request, record.container_id)  # the addresses it holds
        self._plug(request, record.container_id, attachments)

    def discard(self, directory: Path, container_id: str) -> None:
        """Undo a create or finish a remove: runtime state, network, rootfs mount, directory."""
        prepared.drop(directory, container_id, self.runner)
        with contextlib.suppress(errors.EngineError):
            self.runner.delete(container_id, force=True)
        record = records.read_json(directory / records.RECORD) or {}
        attachments = record.get("attachments", [])
        firewall.remove_owner(container_id)
        self.network_store.detach(container_id, [a["host_veth"] for a in attachments])
        # A create that failed half-way may have veths the record does not list yet.
        self.network_store.detach(container_id, [f"rcv{container_id[:9]}{n}" for n in range(8)])
        rootfs = directory / "rootfs"
        if mounts.is_mounted(rootfs):
            mounts.unmount(rootfs, detach=True)
        secret_files.unmount(directory)
        shared_memory.unmount(directory)
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(HYBRID_CGROUP_PARENT / container_id)


LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
HOST_HOSTS = Path("/etc/hosts")
HOST_GATEWAY = "host-gateway"  # in extraHosts: the host's address on the container's network


def etc_texts(
    spec: manifests.ContainerSpec,
    container_id: str,
    attachments: list[networks.Attachment],
    *,
    peer: Path | None = None,
) -> dict[str, str]:
    """The container's ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``; ``peer``: the
    directory of the container whose network it shares (``container:NAME``)."""
    hostname, domainname = spec.uts_names
    hostname = hostname or container_id[:12]
    return {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": _hosts(spec, f"{hostname}.{domainname}" if domainname else hostname, attachments, peer),
        "/etc/resolv.conf": _resolv_conf(spec, attachments, peer),
    }


def _hosts(spec: manifests.ContainerSpec, fqdn: str, attachments: list[networks.Attachment], peer: Path | None) -> str:
    """``localhost``, the container's own address and ``extraHosts``; the host's file in ``host``
    mode and the peer's in ``container:NAME`` mode (as Docker's)."""
    if peer is not None:
        return _text(peer / "hosts", LOCALHOST)
    if spec.network_mode == "host":
        lines, gateway = _text(HOST_HOSTS, LOCALHOST), "127.0.0.1"  # the container is on the host
    else:
        names = " ".join(dict.fromkeys([fqdn, fqdn.split(".", 1)[0]]))
        lines = LOCALHOST + "".join(f"{a.address}\t{names}\n" for a in attachments[:1])
        gateway = attachments[0].gateway if attachments else ""
    for entry in spec.extra_hosts:
        name, _, address = entry.partition(":")
        if address == HOST_GATEWAY and not gateway:
            raise errors.RuntimeFailed(f"extraHosts {entry}: host-gateway needs a network, not {spec.network_mode}")
        lines += f"{gateway if address == HOST_GATEWAY else address.strip('[]')}\t{name}\n"
    return lines


def _resolv_conf(spec: manifests.ContainerSpec, attachments: list[networks.Attachment], peer: Path | None) -> str:
    """On a network: its DNS server, the search list and options (``dnsSearch``/``dnsOptions``,
    else the host's, as Docker copies them) and ``ndots:0`` unless an ndots is given. ``host``
    mode: the host's resolvers (systemd-resolved's real ones for its stub) unless ``dns`` names
    others. ``container:NAME``: that container's file. ``none``: only what the manifest says."""
    if peer is not None:
        return _text(peer / "resolv.conf", "")
    host = network_services.host_resolv_conf()
    search = tuple(spec.dns_search) or host.search
    search = () if search == (".",) else search  # Docker's "no search domain"
    if spec.network_mode == "host":
        servers, options = tuple(spec.dns) or host.nameservers, tuple(spec.dns_options) or host.options
    elif attachments:
        servers = (attachments[0].gateway,)  # the network's DNS server: it forwards what it does not own
        options = tuple(spec.dns_options) or tuple(o for o in host.options if not o.startswith("ndots:"))
        options = options if any(o.startswith("ndots:") for o in options) else ("ndots:0", *options)
    elif spec.dns or spec.dns_search or spec.dns_options:
        servers, search, options = tuple(spec.dns), tuple(spec.dns_search), tuple(spec.dns_options)
    else:
        return "# reconciler: no network, no DNS\n"
    return network_services.ResolvConf(servers, search, options).render()


def _text(path: Path, default: str) -> str:
    """A file's text, ending with a newline, or ``default`` when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return default
    return text if text.endswith("\n") or not text else f"{text}\n"


def _write_etc_files(directory: Path, rootfs: Path, texts: Mapping[str, str]) -> dict[str, str]:
    """``texts`` (:func:`etc_texts`) in the container's directory, and their mount points in the
    rootfs; returns target in the container → file on the host."""
    written: dict[str, str] = {}
    for target, text in texts.items():
        path = directory / Path(target).name
        # Not fsynced: a container whose create did not finish has no record and is not used.
        files.write_atomic(path, text.encode(), durable=False)
        os.chmod(path, 0o644)  # read inside the container, by any user
        written[target] = str(path)
    for target in ETC_FILES:
        # A bind mount needs its mount point to exist, and a read-only rootfs cannot get one
        # later: create each as an empty file now, inside the rootfs (no symlink followed out).
        parent = layers.resolve_in_root(rootfs, "etc", create=True)
        point = parent / Path(target).name
        if not point.exists() and not point.is_symlink():
            point.touch(mode=0o644)
    return written


def _free_port(address: str, protocol: str, taken: set[tuple[int, str]]) -> int:
    """A host port free on ``address`` now (the kernel's choice) and not in ``taken``."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    for _ in range(64):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((address, 0))
            port = int(probe.getsockname()[1])
        if (port, protocol) not in taken:
            return port
    raise errors.RuntimeFailed(f"no free host port for {protocol} on {address}")
