"""What a native network needs besides its bridge: firewall rules, a DNS server and its name table.

A network (:mod:`networks`: bridge, addresses, namespaces) works only with its forwarding rules
(:mod:`firewall`) and its DNS server (:mod:`dns`, one process per network on the gateway, which
never forwards a query). :func:`ensure` sets both up and is run again whenever a network is used,
so that both come back after a host reboot or after dockerd rewrote the firewall. The server's
table, ``dns.json``, maps every name of every container attached to the network (its name, short
id, ``<name>.<network>`` and aliases) to its addresses; the engine rewrites it, under its lock,
whenever a container is created, renamed or removed, and the server re-reads it when it changes.

The firewall rules of a network are owned (tagged) by its bridge, which is unique per root
(:func:`networks.bridge_name`): removing root A's network ``web`` leaves root B's ``web`` alone. A
network older than root-derived bridge names keeps owning its rules by its name, as it did.

A bridge-mode container that names no network joins the implicit ``default`` one, as Docker's
join its default bridge; it carries no owner labels, so the planner never sees or prunes it.

Callers hold the engine's lock. This module must not know containers' lifecycles.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler import errors, files, manifests, vocabulary
from reconciler.backends.native import firewall, networks, processes, records

DEFAULT_NETWORK = "default"
NAMES = "dns.json"
DNS_PID = "dns.pid"
DNS_START_TIMEOUT = 10.0
DNS_STOP_TIMEOUT = 5.0


def create(
    store: networks.Networks, name: str, spec: manifests.NetworkSpec, labels: Mapping[str, str]
) -> networks.Network:
    """A new network with its services."""
    network = store.create(name, subnet=spec.subnet, gateway=spec.gateway, internal=spec.internal, labels=labels)
    ensure(store, network)
    return network


def ensure(store: networks.Networks, network: networks.Network) -> None:
    """The network's firewall rules and DNS server, (again) in place."""
    firewall.add_network(rules_owner(network), bridge=network.bridge, subnet=network.subnet, gateway=network.gateway,
                         internal=network.internal)  # fmt: skip
    directory = store.root / network.name
    if not (directory / NAMES).exists():
        files.write_json(directory / NAMES, {})
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
        raise errors.RuntimeFailed(f"network {network.name}: its DNS server did not start on {network.gateway}:53")


def remove(store: networks.Networks, name: str) -> None:
    """The network, its DNS server and its firewall rules, gone."""
    directory = store.root / name
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
