"""Firewall rules for the native engine's networks and published ports (iptables, nf_tables backend).

Why iptables and not an nftables table of our own: on a host where Docker runs, the ``FORWARD``
policy is DROP (dockerd sets it), and in nftables a drop in *any* base chain is final, so an
accept in our own table would not let container traffic through. We therefore keep every rule
in chains of our own and insert one jump into each builtin chain (checked with ``-C`` first,
re-checked on every use because dockerd re-inserts its jumps at the top when it starts):

* ``filter RECONCILER-FWD`` (from ``FORWARD``), per network, in this order: replies into the
  bridge; traffic within it; new traffic into it that a published port DNATed (from outside our
  bridges); a drop of traffic to another of our networks (isolated, as Docker's are); out of a
  non-internal network (accepted) or an internal one (dropped); and a final drop of anything
  else into the bridge. So a neighbour that routes the subnet through this host reaches only
  ports published on an address it can reach, never an unpublished port, a port published on
  ``127.0.0.1`` or a container's address directly (Docker 28 does the same with its per-network
  drops and raw-table rules), even where the ``FORWARD`` policy is ACCEPT;
* ``filter RECONCILER-IN`` (from ``INPUT``), per network: a drop of packets from the bridge to
  ``127.0.0.0/8`` unless they are replies or DNATed (the bridge needs ``route_localnet`` for ports
  published on ``127.0.0.1``, which otherwise lets a container reach the host's loopback services:
  CVE-2020-8558; the rule is kube-proxy's), and a drop of DNS queries to the network's gateway
  from anywhere but its bridge (the DNS server serves its own network only);
* ``nat RECONCILER-DNAT`` (from ``PREROUTING`` and ``OUTPUT`` for local destinations): published
  ports, including ``127.0.0.1``;
* ``nat RECONCILER-POST`` (from ``POSTROUTING``): masquerade outgoing traffic of non-internal
  networks, locally originated traffic into a bridge (so localhost clients get replies), and
  hairpin traffic (a container reaching its own published port).

Every rule carries a comment ``rc:<owner>`` (a network's bridge, or a container id), so that removing an
owner's rules is a listing and a delete, never a guess, and rules left by a crash can be found
(:func:`owners`). When the last rule goes, the chains and jumps go too. Changes are serialised
across processes by a lock file (two engines, each with its own root, share the host's tables).
This module runs ``iptables`` and nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence

from reconciler import errors, files

FORWARD_CHAIN = "RECONCILER-FWD"
INPUT_CHAIN = "RECONCILER-IN"
DNAT_CHAIN = "RECONCILER-DNAT"
POST_CHAIN = "RECONCILER-POST"
BRIDGES = "rcbr-+"  # every bridge of every root (networks.bridge_name)
LOCK = "/run/reconciler/firewall.lock"
_LOCAL = ("-m", "addrtype", "--dst-type", "LOCAL")
_JUMPS = (
    ("filter", "FORWARD", FORWARD_CHAIN, ()),
    ("filter", "INPUT", INPUT_CHAIN, ()),
    ("nat", "PREROUTING", DNAT_CHAIN, _LOCAL),
    ("nat", "OUTPUT", DNAT_CHAIN, _LOCAL),
    ("nat", "POSTROUTING", POST_CHAIN, ()),
)
_CHAINS = (("filter", FORWARD_CHAIN), ("filter", INPUT_CHAIN), ("nat", DNAT_CHAIN), ("nat", POST_CHAIN))
Rule = Sequence[str]


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise errors.Unavailable("iptables is not installed (apt-get install iptables)")
    done = subprocess.run([binary, "-w", "5", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise errors.RuntimeFailed(f"iptables {' '.join(args)}", stderr=done.stderr)
    return done


def _ensure_chains() -> None:
    """Our chains exist and each builtin chain jumps to them first (caller holds :data:`LOCK`)."""
    for table, builtin, chain, match in _JUMPS:
        if _iptables("-t", table, "-n", "-L", chain, check=False).returncode != 0:
            _iptables("-t", table, "-N", chain, check=False)
        rule = [*match, "-j", chain]
        if _iptables("-t", table, "-C", builtin, *rule, check=False).returncode != 0:
            _iptables("-t", table, "-I", builtin, "1", *rule)


def _tagged(owner: str, rule: Rule) -> list[str]:
    return [*rule, "-m", "comment", "--comment", f"rc:{owner}"]


def _present(table: str, chain: str, owner: str, rule: Rule) -> bool:
    return _iptables("-t", table, "-C", chain, *_tagged(owner, rule), check=False).returncode == 0


def _add(table: str, chain: str, owner: str, rule: Rule) -> None:
    if not _present(table, chain, owner, rule):
        _iptables("-t", table, "-A", chain, *_tagged(owner, rule))


def _owned(table: str, chain: str, owner: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """``(owner, rule spec)`` of the tagged rules in one of our chains (of ``owner`` only if given)."""
    listing = _iptables("-t", table, "-S", chain, check=False)
    if listing.returncode != 0:
        return
    for line in listing.stdout.splitlines():
        tokens = line.split()
        if "--comment" not in tokens[:-1]:
            continue
        tag = tokens[tokens.index("--comment") + 1].strip('"')
        if tag.startswith("rc:") and owner in (None, tag[3:]):
            yield tag[3:], [part.strip('"') for part in tokens[2:]]  # without "-A CHAIN"


def _delete_owned(table: str, chain: str, owner: str) -> None:
    for _, spec in list(_owned(table, chain, owner)):
        _iptables("-t", table, "-D", chain, *spec, check=False)


def _replace(table: str, chain: str, owner: str, rules: Sequence[Rule]) -> None:
    """``owner``'s rules in ``chain`` are ``rules`` and no others: when one is missing or an extra
    one is left (an upgrade, a crash half-way, a hand edit), all of them are deleted and appended
    again in order, because the final drop must come after the accepts."""
    present = sum(1 for _ in _owned(table, chain, owner))
    if present == len(rules) and all(_present(table, chain, owner, rule) for rule in rules):
        return
    _delete_owned(table, chain, owner)
    for rule in rules:
        _add(table, chain, owner, rule)


def _remove_chains_if_empty() -> None:
    """With no rule of anyone's left in our chains, the jumps and chains go too."""
    for table, chain in _CHAINS:
        listing = _iptables("-t", table, "-S", chain, check=False)
        if listing.returncode == 0 and any(line.startswith("-A ") for line in listing.stdout.splitlines()):
            return
    for table, builtin, chain, match in _JUMPS:
        while _iptables("-t", table, "-D", builtin, *match, "-j", chain, check=False).returncode == 0:
            pass
    for table, chain in _CHAINS:
        _iptables("-t", table, "-X", chain, check=False)


def remove_owner(owner: str) -> None:
    """Delete every rule in our chains whose comment names ``owner``; the chains too when empty."""
    with files.file_lock(LOCK):
        for table, chain in _CHAINS:
            _delete_owned(table, chain, owner)
        _remove_chains_if_empty()


def owners() -> set[str]:
    """Every owner that has a rule in our chains, on the whole host (all roots): a caller that
    knows which owners are alive removes the others' rules (left by a crash) with :func:`remove_owner`."""
    with files.file_lock(LOCK):
        return {owner for table, chain in _CHAINS for owner, _ in _owned(table, chain)}


def network_rules(bridge: str, *, subnet: str, gateway: str, internal: bool) -> dict[tuple[str, str], list[Rule]]:
    """A network's rules per ``(table, chain)``, in order (see the module's docstring)."""
    forward: list[Rule] = [
        ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-i", bridge, "-o", bridge, "-j", "ACCEPT"],
        ["!", "-i", BRIDGES, "-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
        ["-i", bridge, "-o", BRIDGES, "-j", "DROP"],
        ["-i", bridge, "!", "-o", bridge, "-j", "DROP" if internal else "ACCEPT"],
        ["-o", bridge, "-j", "DROP"],
    ]
    not_reply_nor_dnat = ["-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT"]
    inbound: list[Rule] = [
        ["-i", bridge, "-d", "127.0.0.0/8", *not_reply_nor_dnat, "-j", "DROP"],
        ["!", "-i", bridge, "-d", f"{gateway}/32", "-p", "udp", "--dport", "53", "-j", "DROP"],
        ["!", "-i", bridge, "-d", f"{gateway}/32", "-p", "tcp", "--dport", "53", "-j", "DROP"],
    ]
    post: list[Rule] = [["-o", bridge, "-m", "addrtype", "--src-type", "LOCAL", "-j", "MASQUERADE"]]
    if not internal:
        post.insert(0, ["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
    return {("filter", FORWARD_CHAIN): forward, ("filter", INPUT_CHAIN): inbound, ("nat", POST_CHAIN): post}


def add_network(owner: str, *, bridge: str, subnet: str, gateway: str, internal: bool) -> None:
    """A network's rules, tagged ``rc:<owner>`` (see :func:`network_services.rules_owner`)."""
    with files.file_lock(LOCK):
        _ensure_chains()
        rules = network_rules(bridge, subnet=subnet, gateway=gateway, internal=internal)
        for (table, chain), ordered in rules.items():
            _replace(table, chain, owner, ordered)
        # Containers own no forwarding rule any more: one left by an older version (an accept of
        # a published container port from anywhere, DNATed or not) goes.
        for other, spec in list(_owned("filter", FORWARD_CHAIN)):
            if "-o" in spec and spec[spec.index("-o") + 1] == bridge and other != owner:
                _iptables("-t", "filter", "-D", FORWARD_CHAIN, *spec, check=False)


def publish(container_id: str, *, bridge: str, host_ip: str | None, host_port: int, address: str,
            container_port: int, protocol: str) -> None:  # fmt: skip
    """DNAT ``host_ip:host_port`` (all local addresses when None) to ``address:container_port``.

    The bridge's own rules let DNATed traffic in (:func:`network_rules`); nothing else reaches the
    container's port from outside the bridge.
    """
    with files.file_lock(LOCK):
        _ensure_chains()
        destination = ["-d", host_ip] if host_ip and host_ip != "0.0.0.0" else []  # noqa: S104
        target = f"{address}:{container_port}"
        dnat = [*destination, "-p", protocol, "--dport", str(host_port), "-j", "DNAT", "--to-destination", target]
        _add("nat", DNAT_CHAIN, container_id, dnat)
        hairpin = ["-s", f"{address}/32", "-d", f"{address}/32", "-o", bridge, "-p", protocol,
                   "--dport", str(container_port), "-j", "MASQUERADE"]  # fmt: skip
        _add("nat", POST_CHAIN, container_id, hairpin)
