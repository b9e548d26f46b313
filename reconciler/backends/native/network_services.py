"""What a native network needs besides its bridge: firewall rules, a DNS server and its name table.

A network (:mod:`networks`: bridge, addresses, namespaces) works only with its forwarding rules
(:mod:`firewall`) and its DNS server (:mod:`dns`, one process per network on the gateway).
:func:`ensure` sets both up and is run again whenever a network is used, so that both come back
after a host reboot or after dockerd rewrote the firewall (the rules are read again at most every
:data:`RULES_RECHECK` seconds for the containers that join it: one read per apply, not per
container). Each check first deletes the bridges of deleted roots (marked ours, their network's
folder gone: :func:`networks.sweep_orphan_bridges`), and their rules go with the check's change.
The server's table, ``dns.json``, maps every name of every container attached to the network (its
name, short id, ``<name>.<network>`` and aliases) to its addresses; the engine rewrites it, under
its lock, whenever a container is created, renamed or removed, and the server re-reads it when it
changes.

What the server forwards goes to the resolvers in ``upstreams.json``, which the engine keeps the
same way: the network's (written by :func:`ensure`: the engine's ``--dns-upstream``, else the
host's, see :func:`host_upstreams`; none for an internal network, as Docker's internal networks
resolve no outside name) and, by address, those of each container with its own ``dns:`` list
(written with the names). The gateways of our networks are never upstreams: that would be a loop.

The firewall rules of a network are owned (tagged) by its bridge, which is unique per root
(:func:`networks.bridge_name`): removing root A's network ``web`` leaves root B's ``web`` alone. A
network older than root-derived bridge names keeps owning its rules by its name, as it did.

A bridge-mode container that names no network joins the implicit ``default`` one, as Docker's
join its default bridge; it carries no owner labels, so the planner never sees or prunes it.

Callers hold the engine's lock exclusive, or shared with the assembly lock (one create at a
time, see :mod:`engine`). This module must not know containers' lifecycles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import errors, files, manifests, vocabulary
from reconciler.backends.native import firewall, networks, processes, records

DEFAULT_NETWORK = networks.DEFAULT_NETWORK
NAMES = "dns.json"
UPSTREAMS = "upstreams.json"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
# systemd-resolved's stub listens on the host's loopback, which no container reaches; its own
# upstream servers are listed here (Docker reads the same file when it sees the stub).
SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
SYSTEMD_STUB = "127.0.0.53"
# Docker's default servers when the host lists none that is not on its loopback.
FALLBACK_SERVERS = ("8.8.8.8", "8.8.4.4")

Upstream = tuple[str, int]
DNS_PID = "dns.pid"
DNS_START_TIMEOUT = 10.0
DNS_STOP_TIMEOUT = 5.0
# Seconds during which a network's rules, once checked by this process, count as in place for the
# containers that join it (see ensure); the network's own create and apply always check them.
RULES_RECHECK = 30.0
_RULES_CHECKED: dict[tuple[str, str], float] = {}  # (network directory, its record) -> when
_RULES_CHECKED_LOCK = threading.Lock()


def create(
    store: networks.Networks,
    name: str,
    spec: manifests.NetworkSpec,
    labels: Mapping[str, str],
    *,
    upstreams: Sequence[Upstream] = (),
) -> networks.Network:
    """A new network with its services."""
    network = store.create(name, subnet=spec.subnet, gateway=spec.gateway, internal=spec.internal, labels=labels)
    ensure(store, network, upstreams=upstreams)
    return network


def ensure(
    store: networks.Networks, network: networks.Network, *, upstreams: Sequence[Upstream] = (), joining: bool = False
) -> None:
    """The network's firewall rules and DNS server, (again) in place; its server forwards to
    ``upstreams`` (default: the host's resolvers, see :func:`host_upstreams`).

    ``joining``: for a container that joins the network, whose rules this process put in place or
    found in place less than :data:`RULES_RECHECK` seconds ago are not read again (a read is an
    ``iptables-save``; an apply of many containers checks its networks once, not once each)."""
    directory = store.root / network.name
    key = (str(directory), json.dumps(network.to_json(), sort_keys=True))
    with _RULES_CHECKED_LOCK:
        fresh = joining and time.monotonic() - _RULES_CHECKED.get(key, -RULES_RECHECK) < RULES_RECHECK
    if not fresh:
        # Bridges of deleted roots go first, so that their rules go in the same change (_bridge_gone).
        networks.sweep_orphan_bridges()
        firewall.add_network(rules_owner(network), bridge=network.bridge, subnet=network.subnet,
                             gateway=network.gateway, internal=network.internal, remove=_bridge_gone)  # fmt: skip
        with _RULES_CHECKED_LOCK:
            _RULES_CHECKED[key] = time.monotonic()
    if not (directory / NAMES).exists():
        files.write_json(directory / NAMES, {})
    servers = [] if network.internal else list(upstreams) or host_upstreams()
    _update_upstreams(directory, "servers", _not_ours(store, servers))
    if _dns_server_alive(directory):
        return
    with contextlib.suppress(FileNotFoundError):
        (directory / DNS_PID).unlink()
    server = subprocess.Popen(
        [sys.executable, "-S", "-m", "reconciler.backends.native.dns", str(directory), network.gateway],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/",
        env=processes.helper_environment(),
    )  # fmt: skip
    processes.reap_in_background(server)
    deadline = time.monotonic() + DNS_START_TIMEOUT
    while time.monotonic() < deadline and not _dns_server_alive(directory):
        time.sleep(0.02)
    if not _dns_server_alive(directory):
        why = _port_taken(network.gateway)
        raise errors.RuntimeFailed(f"network {network.name}: its DNS server did not start on {network.gateway}:53{why}")


def _port_taken(address: str) -> str:
    """Why a server could not bind ``<address>:53``, when another process holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 53))
        except OSError as exc:
            return f" ({exc.strerror}: another process holds it, e.g. a DNS server of a network that was not removed)"
    return ""


def remove(store: networks.Networks, name: str) -> None:
    """The network, its DNS server and its firewall rules, gone."""
    directory = store.root / name
    with _RULES_CHECKED_LOCK:
        for key in [key for key in _RULES_CHECKED if key[0] == str(directory)]:
            del _RULES_CHECKED[key]
    network = store.get(name)
    if _dns_server_alive(directory):
        pid = int((directory / DNS_PID).read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DNS_STOP_TIMEOUT
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and _dns_server_alive(directory):
            time.sleep(0.02)
    if network is not None:
        firewall.remove_owner(rules_owner(network))
    store.remove(name)
    # The server's files are this module's: they go too, and the network's folder with them.
    for leftover in (DNS_PID, UPSTREAMS, NAMES):
        with contextlib.suppress(FileNotFoundError):
            (directory / leftover).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


def _bridge_gone(owner: str) -> bool:
    """Rules of a bridge that no longer exists are a crash's (or a deleted root's) leftovers, of
    any root: they can only do harm, e.g. a later network on the same subnet would find its DNS
    port dropped by the old network's "only from my bridge" rule. A network's bridge exists
    before its rules are written (``create``, ``reconnect``), so a live network is never hit."""
    return owner.startswith(networks.BRIDGE_PREFIX) and not networks.link_exists(owner)


def rules_owner(network: networks.Network) -> str:
    """Whose firewall rules a network's are: its bridge, or its name when it predates root-derived
    bridge names (its rules were tagged so then)."""
    return network.name if network.bridge == networks.legacy_bridge_name(network.name) else network.bridge


def _dns_server_alive(directory: Path) -> bool:
    try:
        pid = int((directory / DNS_PID).read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    # The pid file could be stale and the pid reused: check it is our server for this network.
    return b"reconciler.backends.native.dns" in command and str(directory).encode() in command


def write_names(store: networks.Networks, containers: Sequence[records.Record], network_names: Sequence[str]) -> None:
    """Rewrite the name tables of these networks from the containers attached to them."""
    for network_name in network_names:
        table: dict[str, list[str]] = {}
        for record in containers:
            for attachment in record.data.get("attachments", []):
                if attachment["network"] != network_name:
                    continue
                # A replica answers its service's name too (declared networks list it as an alias).
                service = record.labels.get(vocabulary.SERVICE_LABEL)
                names = [record.name, record.container_id[:12], f"{record.name}.{network_name}",
                         *attachment.get("aliases", []), *([service] if service else [])]  # fmt: skip
                for alias in dict.fromkeys(name.lower() for name in names):
                    table.setdefault(alias.lower(), []).append(attachment["address"])
        directory = store.root / network_name
        if directory.is_dir():
            files.write_json(directory / NAMES, table)
            _update_upstreams(directory, "clients", _own_servers(store, containers, network_name))


def _own_servers(
    store: networks.Networks, containers: Sequence[records.Record], network_name: str
) -> dict[str, list[Upstream]]:
    """The containers on a network with their own ``dns:`` servers: their address there → those
    servers (Docker's embedded DNS forwards a container's queries to its own ``--dns``). None on
    an internal network: it resolves no outside name, whatever a container asks (as Docker's)."""
    clients: dict[str, list[Upstream]] = {}
    network = store.get(network_name)
    if network is None or network.internal:
        return clients
    for record in containers:
        servers = [(str(server), 53) for server in record.data.get("spec", {}).get("dns", [])]
        for attachment in record.data.get("attachments", []):
            if servers and attachment["network"] == network_name:
                clients[attachment["address"]] = _not_ours(store, servers)
    return clients


def _update_upstreams(directory: Path, key: str, value: object) -> None:
    """One part of ``upstreams.json`` replaced (callers hold the engine's lock); unchanged, the
    file is left alone (the server re-reads it when its time changes)."""
    path = directory / UPSTREAMS
    current: dict[str, Any] = records.read_json(path) or {}
    updated = {**current, key: json_ready(value)}
    if updated != current:
        files.write_json(path, updated)


def json_ready(value: object) -> object:
    """Tuples as lists, as they read back from JSON (so that an unchanged table compares equal)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _not_ours(store: networks.Networks, servers: Iterable[Upstream]) -> list[Upstream]:
    """``servers`` without our networks' gateways: each is a DNS server of ours (a forwarding loop)."""
    gateways = {network.gateway for network in store.all()}
    return [server for server in servers if server[0] not in gateways]


# ---------------------------------------------------------------------------------------------
# The host's resolvers
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvConf:
    """What a ``resolv.conf`` says: its nameservers, search domains and options."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"nameserver {server}" for server in self.nameservers]
        lines += [f"search {' '.join(self.search)}"] if self.search else []
        lines += [f"options {' '.join(self.options)}"] if self.options else []
        return "".join(f"{line}\n" for line in lines)


def read_resolv_conf(path: Path) -> ResolvConf:
    """A resolv.conf's nameservers, search list (``domain`` counts as one) and options; a missing
    or unreadable file says nothing."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ResolvConf()
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver" and _is_address(words[1]):
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]  # the last one wins, as in glibc
        elif words[0] == "options":
            options += words[1:]
    return ResolvConf(tuple(nameservers), tuple(search), tuple(options))


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def host_resolv_conf(path: Path = HOST_RESOLV_CONF, systemd: Path = SYSTEMD_RESOLV_CONF) -> ResolvConf:
    """The host's resolv.conf, or systemd-resolved's own when the host's names only its stub (as
    Docker's ``resolvconf.Path``)."""
    conf = read_resolv_conf(path)
    if conf.nameservers == (SYSTEMD_STUB,) and systemd.exists():
        return read_resolv_conf(systemd)
    return conf


def host_upstreams(path: Path = HOST_RESOLV_CONF, systemd: Path = SYSTEMD_RESOLV_CONF) -> list[Upstream]:
    """The host's nameservers that are not on its loopback (Docker drops those: a container does
    not reach them), else Docker's fallback, Google's public servers."""
    servers = [
        s for s in host_resolv_conf(path, systemd).nameservers if not ipaddress.ip_address(s.split("%")[0]).is_loopback
    ]
    return [(server, 53) for server in servers or FALLBACK_SERVERS]


def parse_upstreams(values: Iterable[str]) -> tuple[Upstream, ...]:
    """``HOST[:PORT]`` items (``[v6]:PORT`` for IPv6), e.g. from ``--dns-upstream``; an IP address
    each, as Docker's ``--dns``."""
    parsed: list[Upstream] = []
    for value in (v.strip() for v in values):
        if not value:
            continue
        host, port = value, "53"
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif value.count(":") == 1:
            host, port = value.split(":")
        if not _is_address(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise errors.ReconcilerError(f"DNS upstream {value!r}: write an IP address, IP:PORT or [IPv6]:PORT")
        parsed.append((host, int(port)))
    return tuple(parsed)
