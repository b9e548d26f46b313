"""Bridge networks for the native engine, with pyroute2 (the only module that imports it).

A network is a Linux bridge (``rcbr-<8 hex>``, 13 characters: interface names have at most 15)
holding the gateway address; the bridge's name is a hash of the engine's folder and the network's
name (:func:`bridge_name`), so that two roots can each have a network ``web``, and it is recorded
in the network's ``network.json``, which is what every user of the bridge reads: a network created
before names depended on the root keeps its bridge (a hash of its name alone) across an upgrade
and is not recreated; only new networks get root-derived names; a container gets its own network namespace
(``/run/netns/rc-<id12>``) and, per network it joins, a veth pair whose host end is a port of the
bridge (hairpin on, so a container can reach its own published port) and whose peer becomes
``eth<N>`` inside, with its address, a MAC derived from it (``02:42:<ip>``, as Docker 20.10) and,
on the first non-internal network, the default route.

IPAM is a JSON file per network under the engine's lock: the gateway is the first host address,
containers get the next free one from ``.2`` unless the manifest fixes it; subnets not given in
the manifest come from ``10.233.0.0/16`` in /24s, skipping any that overlaps a host route or
another network. State files are root-only and durable (written with ``files.write_json``, which
fsyncs the file and its directory): after a power cut an address is never handed out twice.

This module knows links, addresses and namespaces; it does not know containers' lifecycles,
firewall rules (``firewall``) or DNS (``dns``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors, files

if TYPE_CHECKING:
    from pyroute2 import IPRoute

# pyroute2 is imported in the functions that make netlink calls: importing it costs about 100 ms,
# and a no-op apply or a plan reads the networks' files only.

DEFAULT_POOL = ipaddress.IPv4Network("10.233.0.0/16")
# The implicit network of bridge-mode containers that name none (see network_services).
DEFAULT_NETWORK = "default"
NETNS_DIR = Path("/run/netns")


@dataclasses.dataclass(frozen=True, slots=True)
class Network:
    name: str
    bridge: str
    subnet: str
    gateway: str
    internal: bool
    labels: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bridge": self.bridge, "subnet": self.subnet, "gateway": self.gateway,
                "internal": self.internal, "labels": dict(self.labels)}  # fmt: skip

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Network:
        return Network(
            name=str(data["name"]), bridge=str(data["bridge"]), subnet=str(data["subnet"]),
            gateway=str(data["gateway"]), internal=bool(data.get("internal", False)),
            labels=dict(data.get("labels", {})),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    """One container's place on one network."""

    network: str
    interface: str  # inside the container: eth0, eth1, ...
    host_veth: str
    address: str
    prefixlen: int
    gateway: str
    aliases: tuple[str, ...] = ()


BRIDGE_PREFIX = "rcbr-"


# A bridge's alias (``ip link`` shows it) names the folder of the network it belongs to: proof
# that the bridge is ours, and where to look whether its network still exists.
OWNER_MARK = "reconciler-network:"
_ALIAS_MAX = 255  # IFALIASZ - 1


def owner_mark(directory: Path) -> str | None:
    """The alias of the bridge of the network kept in ``directory``; None when the path is too long
    for an alias (such a bridge is not marked, and never swept)."""
    mark = OWNER_MARK + str(directory.resolve())
    return mark if len(mark.encode()) <= _ALIAS_MAX else None


def sweep_orphan_bridges() -> list[str]:
    """Our bridges whose network's folder is gone (its state root deleted, or a crash's), of any
    root, deleted; their names. A bridge is ours when its name has our prefix and its alias our
    mark (:func:`owner_mark`); a network's folder exists before its bridge is made, so a network
    being created is never hit. Unmarked bridges (made before the mark) are left alone."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    gone: list[str] = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name, alias = link.get_attr("IFLA_IFNAME") or "", link.get_attr("IFLA_IFALIAS") or ""
            if not name.startswith(BRIDGE_PREFIX) or not alias.startswith(OWNER_MARK):
                continue
            if Path(alias.removeprefix(OWNER_MARK)).is_dir():
                continue
            with contextlib.suppress(NetlinkError):  # gone meanwhile
                ipr.link("del", index=link["index"])
                gone.append(name)
    return gone


def link_exists(name: str) -> bool:
    """Whether a link of that name exists on the host (one ioctl: no netlink dump of every link)."""
    import socket  # here: reading the networks' files, all a no-op does, needs no socket

    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def bridge_name(network: str, folder: Path) -> str:
    """The bridge of a new network ``network`` of the engine whose networks live in ``folder``."""
    return "rcbr-" + hashlib.sha256(f"{folder.resolve()}\0{network}".encode()).hexdigest()[:8]


def legacy_bridge_name(network: str) -> str:
    """The bridge a network got before names depended on the root (its name alone): such a
    network's firewall rules are owned by its name (see :mod:`network_services`)."""
    return "rcbr-" + hashlib.sha256(network.encode()).hexdigest()[:8]


def netns_name(container_id: str) -> str:
    return f"rc-{container_id[:12]}"


def netns_path(container_id: str) -> str:
    return str(NETNS_DIR / netns_name(container_id))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _host_routes() -> list[ipaddress.IPv4Network]:
    from pyroute2 import IPRoute

    found = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=2):
            destination = route.get_attr("RTA_DST")
            if destination:
                found.append(ipaddress.IPv4Network(f"{destination}/{route['dst_len']}", strict=False))
    return found


class Networks:
    """The engine's bridge networks under ``<root>/networks``; callers hold the engine's lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- records ----------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / name

    def get(self, name: str) -> Network | None:
        data = _read_json(self._dir(name) / "network.json")
        return Network.from_json(data) if data else None

    def all(self) -> list[Network]:
        if not self.root.is_dir():
            return []
        return [n for n in (self.get(entry.name) for entry in sorted(self.root.iterdir())) if n is not None]

    # -- networks ---------------------------------------------------------------------------------

    def create(self, name: str, *, subnet: str | None, gateway: str | None, internal: bool,
               labels: Mapping[str, str]) -> Network:  # fmt: skip
        others = [ipaddress.IPv4Network(n.subnet) for n in self.all() if n.name != name]
        if subnet is None:
            subnet = str(self._free_subnet(others))
        else:
            wanted = ipaddress.IPv4Network(subnet)
            for other in others:
                if wanted.overlaps(other):
                    raise errors.Conflict(f"network {name}: subnet {subnet} overlaps another network's {other}")
        net = ipaddress.IPv4Network(subnet)
        gateway = gateway or str(next(net.hosts()))
        network = Network(name=name, bridge=bridge_name(name, self.root), subnet=subnet, gateway=gateway,
                          internal=internal, labels=dict(labels))  # fmt: skip
        directory = self._dir(name)
        files.make_private_dir(directory)
        self.ensure_bridge(network)
        files.write_json(directory / "network.json", network.to_json())
        if not (directory / "ipam.json").exists():
            files.write_json(directory / "ipam.json", {})
        return network

    def ensure_bridge(self, network: Network) -> None:
        """The network's bridge, up with the gateway's address and marked as this network's (see
        :func:`sweep_orphan_bridges`): made at create, and made again after a host reboot (which
        leaves the records and takes every link)."""
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        prefixlen = ipaddress.IPv4Network(network.subnet).prefixlen
        mark = owner_mark(self._dir(network.name))
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=network.bridge):
                try:
                    ipr.link("add", ifname=network.bridge, kind="bridge")
                except NetlinkError as exc:
                    raise errors.RuntimeFailed(f"creating bridge {network.bridge}: {exc}") from exc
            index = ipr.link_lookup(ifname=network.bridge)[0]
            if mark is not None:
                ipr.link("set", index=index, ifalias=mark)
            with contextlib.suppress(NetlinkError):  # already there after a half-done create
                ipr.addr("add", index=index, address=network.gateway, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
        # Published ports on 127.0.0.1 are DNATed to the bridge: the kernel must accept loopback
        # sources on it (route_localnet), and forward at all. What route_localnet would also let in
        # (a container's packets for the host's 127.0.0.0/8) the firewall drops (CVE-2020-8558).
        _sysctl(f"net/ipv4/conf/{network.bridge}/route_localnet", "1")
        _sysctl("net/ipv4/ip_forward", "1")

    def _free_subnet(self, others: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
        taken = [*others, *_host_routes()]
        for candidate in DEFAULT_POOL.subnets(new_prefix=24):
            if not any(candidate.overlaps(other) for other in taken):
                return candidate
        raise errors.RuntimeFailed(f"no free /24 left in {DEFAULT_POOL} for a new network")

    def remove(self, name: str) -> None:
        network = self.get(name)
        if network is None:
            return
        in_use = sorted(set(_read_json(self._dir(name) / "ipam.json").values()))
        if in_use:
            raise errors.RuntimeFailed(f"network {name} is in use by container(s) {', '.join(c[:12] for c in in_use)}")
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=network.bridge):
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=index)
        for leftover in ("network.json", "ipam.json", "dns.json"):
            with contextlib.suppress(FileNotFoundError):
                (self._dir(name) / leftover).unlink()
        with contextlib.suppress(OSError):
            self._dir(name).rmdir()

    # -- containers -------------------------------------------------------------------------------

    def allocate(self, name: str, container_id: str, wanted: str | None) -> str:
        network = self.get(name)
        if network is None:
            raise errors.NotFound(f"network {name} not found")
        path = self._dir(name) / "ipam.json"
        table = _read_json(path)
        for address, owner in table.items():
            if owner == container_id:
                return str(address)
        net = ipaddress.IPv4Network(network.subnet)
        if wanted is not None:
            if ipaddress.IPv4Address(wanted) not in net or wanted == network.gateway:
                raise errors.RuntimeFailed(f"address {wanted} is not usable on network {name} ({network.subnet})")
            if wanted in table:
                raise errors.Conflict(f"address {wanted} on network {name} is already in use")
            address = wanted
        else:
            address = next((str(h) for h in net.hosts() if str(h) != network.gateway and str(h) not in table), "")
            if not address:
                raise errors.RuntimeFailed(f"network {name} has no free address left in {network.subnet}")
        table[address] = container_id
        files.write_json(path, table)
        return address

    def release(self, container_id: str) -> None:
        for network in self.all():
            path = self._dir(network.name) / "ipam.json"
            table = _read_json(path)
            kept = {address: owner for address, owner in table.items() if owner != container_id}
            if kept != table:
                files.write_json(path, kept)

    def reserve(self, container_id: str, requests: Iterable[tuple[str, str | None, Sequence[str]]]) -> list[Attachment]:
        """The container's address on each network of ``(network, ipv4 or None, aliases)`` (the one
        it holds already, if any), taken in the networks' IPAM; nothing plugged yet."""
        attachments: list[Attachment] = []
        for position, (network_name, wanted, aliases) in enumerate(requests):
            network = self.get(network_name)
            if network is None:
                raise errors.NotFound(f"network {network_name} not found")
            address = self.allocate(network_name, container_id, wanted)
            attachments.append(Attachment(network=network_name, interface=f"eth{position}",
                                          host_veth=f"rcv{container_id[:9]}{position}", address=address,
                                          prefixlen=ipaddress.IPv4Network(network.subnet).prefixlen,
                                          gateway=network.gateway, aliases=tuple(aliases)))  # fmt: skip
        return attachments

    def plug(self, container_id: str, attachments: Sequence[Attachment]) -> None:
        """The container's network namespace (made if missing) with a veth per attachment. It
        touches only the container's own links and namespace: callers need no lock for it."""
        from pyroute2 import IPRoute

        name = netns_name(container_id)
        routed = False
        with IPRoute() as ipr, _socket_in(name) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            for attachment in attachments:
                network = self.get(attachment.network)
                if network is None:
                    raise errors.NotFound(f"network {attachment.network} not found")
                # The default route goes through the first network that is not internal.
                default_route = not network.internal and not routed
                _plug(ipr, ns, name, network, attachment, default_route=default_route)
                routed = routed or default_route

    def detach(self, container_id: str, host_veths: Iterable[str]) -> None:
        """Remove the container's veths (the peers go with them), its netns and its addresses."""
        from pyroute2 import IPRoute, netns
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ipr:
            for host_veth in host_veths:
                for index in ipr.link_lookup(ifname=host_veth):
                    with contextlib.suppress(NetlinkError):
                        ipr.link("del", index=index)
        name = netns_name(container_id)
        if (NETNS_DIR / name).exists():
            with contextlib.suppress(OSError):
                netns.remove(name)
        self.release(container_id)


def _sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys") / name
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise errors.RuntimeFailed(f"setting {name.replace('/', '.')}={value}: {exc.strerror}") from exc


@contextlib.contextmanager
def _socket_in(name: str) -> Iterator[IPRoute]:
    """An rtnetlink socket in the namespace ``name``, made first if it does not exist. This thread
    enters the namespace (or makes it, as ``ip netns add`` does: an ``unshare`` of this thread
    alone, bound to ``/run/netns/<name>``) only to make the socket, which stays bound to it, and
    comes back at once: no process is forked for it (pyroute2's ``netns.create`` and ``NetNS``
    fork this whole interpreter, a cost per container that an apply of many paid in turn)."""
    from pyroute2 import IPRoute, netns

    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if (NETNS_DIR / name).exists():
            netns.setns(name, flags=0)
        else:
            _unshare_into(NETNS_DIR / name)
        try:
            socket_there = IPRoute()
        finally:
            netns.setns(home)
    finally:
        os.close(home)
    with socket_there:
        yield socket_there


def _unshare_into(path: Path) -> None:
    """This thread in a new network namespace, bound to ``path`` (which must not exist) so that it
    outlives the thread; the caller goes back to its own namespace. ``NETNS_DIR`` is made a shared
    mount first, as iproute2 does, so that the binds show in every mount namespace."""
    import ctypes  # here: observing the networks, all a no-op does, needs no libc call

    libc = ctypes.CDLL(None, use_errno=True)
    folder = str(path.parent).encode()
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if libc.mount(b"", folder, b"none", _MS_SHARED | _MS_REC, None) != 0:
        # Not a mount point yet: bound onto itself, then shared.
        if libc.mount(folder, folder, b"none", _MS_BIND | _MS_REC, None) != 0:
            raise _libc_error(f"bind-mounting {path.parent}")
        if libc.mount(b"", folder, b"none", _MS_SHARED | _MS_REC, None) != 0:
            raise _libc_error(f"sharing {path.parent}")
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    # /proc/thread-self: this thread's namespace (/proc/self would be the main thread's).
    if libc.unshare(_CLONE_NEWNET) != 0 or libc.mount(b"/proc/thread-self/ns/net", str(path).encode(), b"none",
                                                      _MS_BIND, None) != 0:  # fmt: skip
        error = _libc_error(f"a new network namespace at {path}")
        path.unlink()
        raise error


_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20


def _libc_error(what: str) -> errors.RuntimeFailed:
    import ctypes

    code = ctypes.get_errno()
    return errors.RuntimeFailed(f"{what}: {os.strerror(code)}")


def _plug(
    ipr: IPRoute, ns: IPRoute, name: str, network: Network, attachment: Attachment, *, default_route: bool
) -> None:
    """One veth pair: the host end a port of the network's bridge, the peer made inside the
    namespace ``name`` (through ``ns``, a socket there) already named, with its MAC derived from its
    address (``02:42:<ip>``, as Docker 20.10), then addressed, up and, if asked, the default route."""
    for stale in ipr.link_lookup(ifname=attachment.host_veth):
        ipr.link("del", index=stale)
    mac = "02:42:" + ":".join(f"{int(octet):02x}" for octet in attachment.address.split("."))
    ipr.link("add", ifname=attachment.host_veth, kind="veth",
             peer={"ifname": attachment.interface, "net_ns_fd": name, "address": mac})  # fmt: skip
    host_index = ipr.link_lookup(ifname=attachment.host_veth)[0]
    ipr.link("set", index=host_index, master=ipr.link_lookup(ifname=network.bridge)[0])
    ipr.link("set", index=host_index, state="up")
    # Hairpin, so that a container reaches its own published port through the bridge:
    # pyroute2's ``mode`` is the port's IFLA_BRPORT_MODE, and 1 means hairpin.
    ipr.brport("set", index=host_index, mode=1)
    index = ns.link_lookup(ifname=attachment.interface)[0]
    ns.addr("add", index=index, address=attachment.address, prefixlen=attachment.prefixlen)
    ns.link("set", index=index, state="up")
    if default_route:
        ns.route("add", dst="0.0.0.0/0", gateway=network.gateway)
