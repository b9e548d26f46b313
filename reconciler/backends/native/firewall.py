"""Firewall rules for the native engine's networks and published ports (iptables, nf_tables backend).

Why iptables and not an nftables table of our own: on a host where Docker runs, the ``FORWARD``
policy is DROP (dockerd sets it), and in nftables a drop in *any* base chain is final, so an
accept in our own table would not let container traffic through. We therefore keep every rule
in three chains of our own and insert one jump into each builtin chain (checked with ``-C``
first, re-checked on every use because dockerd re-inserts its jumps at the top when it starts):

* ``filter RECONCILER-FWD`` (from ``FORWARD``): traffic within a network, out of a non-internal
  network, replies, and the published ports; traffic between two of our networks is dropped;
* ``nat RECONCILER-DNAT`` (from ``PREROUTING`` and ``OUTPUT`` for local destinations): published
  ports, including ``127.0.0.1`` (the bridge has ``route_localnet=1``);
* ``nat RECONCILER-POST`` (from ``POSTROUTING``): masquerade outgoing traffic of non-internal
  networks, locally originated traffic into a bridge (so localhost clients get replies), and
  hairpin traffic (a container reaching its own published port).

Every rule carries a comment ``rc:<owner>`` (a network's bridge, or a container id), so that removing an
owner's rules is a listing and a delete, never a guess. This module runs ``iptables`` and
nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Sequence

from reconciler import errors

FORWARD_CHAIN = "RECONCILER-FWD"
DNAT_CHAIN = "RECONCILER-DNAT"
POST_CHAIN = "RECONCILER-POST"
_JUMPS = (
    ("filter", "FORWARD", FORWARD_CHAIN, ()),
    ("nat", "PREROUTING", DNAT_CHAIN, ("-m", "addrtype", "--dst-type", "LOCAL")),
    ("nat", "OUTPUT", DNAT_CHAIN, ("-m", "addrtype", "--dst-type", "LOCAL")),
    ("nat", "POSTROUTING", POST_CHAIN, ()),
)
_lock = threading.Lock()


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise errors.Unavailable("iptables is not installed (apt-get install iptables)")
    done = subprocess.run([binary, "-w", "5", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise errors.RuntimeFailed(f"iptables {' '.join(args)}", stderr=done.stderr)
    return done


def ensure_chains() -> None:
    """Our chains exist and each builtin chain jumps to them first."""
    with _lock:
        for table, builtin, chain, match in _JUMPS:
            if _iptables("-t", table, "-n", "-L", chain, check=False).returncode != 0:
                _iptables("-t", table, "-N", chain, check=False)
            rule = [*match, "-j", chain]
            if _iptables("-t", table, "-C", builtin, *rule, check=False).returncode != 0:
                _iptables("-t", table, "-I", builtin, "1", *rule)


def _add(table: str, chain: str, owner: str, rule: Sequence[str]) -> None:
    full = [*rule, "-m", "comment", "--comment", f"rc:{owner}"]
    if _iptables("-t", table, "-C", chain, *full[:-1], full[-1], check=False).returncode != 0:
        _iptables("-t", table, "-A", chain, *full)


def remove_owner(owner: str) -> None:
    """Delete every rule in our chains whose comment names ``owner``."""
    tags = {f"rc:{owner}", f'"rc:{owner}"'}
    with _lock:
        for table, chain in (("filter", FORWARD_CHAIN), ("nat", DNAT_CHAIN), ("nat", POST_CHAIN)):
            listing = _iptables("-t", table, "-S", chain, check=False)
            if listing.returncode != 0:
                continue
            for line in listing.stdout.splitlines():
                tokens = line.split()
                if tags & set(tokens):
                    spec = tokens[2:]  # drop "-A CHAIN"
                    _iptables("-t", table, "-D", chain, *[part.strip('"') for part in spec], check=False)


def add_network(owner: str, *, bridge: str, subnet: str, internal: bool) -> None:
    """A network's rules, tagged ``rc:<owner>`` (see :func:`network_services.rules_owner`)."""
    ensure_chains()
    with _lock:
        _add("filter", FORWARD_CHAIN, owner, ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                                             "-j", "ACCEPT"])  # fmt: skip
        _add("filter", FORWARD_CHAIN, owner, ["-i", bridge, "-o", bridge, "-j", "ACCEPT"])
        # Networks are isolated from each other, as Docker's bridge networks are.
        _add("filter", FORWARD_CHAIN, owner, ["-i", bridge, "-o", "rcbr-+", "-j", "DROP"])
        if not internal:
            _add("filter", FORWARD_CHAIN, owner, ["-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"])
            _add("nat", POST_CHAIN, owner, ["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
        else:
            _add("filter", FORWARD_CHAIN, owner, ["-i", bridge, "!", "-o", bridge, "-j", "DROP"])
        _add("nat", POST_CHAIN, owner, ["-o", bridge, "-m", "addrtype", "--src-type", "LOCAL", "-j", "MASQUERADE"])


def publish(container_id: str, *, bridge: str, host_ip: str | None, host_port: int, address: str,
            container_port: int, protocol: str) -> None:  # fmt: skip
    """DNAT ``host_ip:host_port`` (all local addresses when None) to ``address:container_port``."""
    ensure_chains()
    with _lock:
        destination = ["-d", host_ip] if host_ip and host_ip != "0.0.0.0" else []  # noqa: S104
        target = f"{address}:{container_port}"
        dnat = [*destination, "-p", protocol, "--dport", str(host_port), "-j", "DNAT", "--to-destination", target]
        _add("nat", DNAT_CHAIN, container_id, dnat)
        _add("filter", FORWARD_CHAIN, container_id, ["-d", f"{address}/32", "-o", bridge, "-p", protocol,
                                                     "--dport", str(container_port), "-j", "ACCEPT"])  # fmt: skip
        _add("nat", POST_CHAIN, container_id, ["-s", f"{address}/32", "-d", f"{address}/32", "-p", protocol,
                                               "--dport", str(container_port), "-j", "MASQUERADE"])  # fmt: skip
