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

Each call costs one ``iptables-save`` (the tables read once, :class:`Tables`) and, only when
something is missing or extra, one ``iptables-restore --noflush`` with every change at once (one
transaction per table, nothing else in the tables touched): a process per rule and per check
made a 50-container apply spend seconds here. Our rules are written in the form ``iptables-save``
prints them (:func:`network_rules`, :func:`publish`), so that a rule in place compares equal.
This module runs ``iptables-save`` and ``iptables-restore`` and nothing else.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Collection, Iterator, Sequence

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
_TABLES = ("filter", "nat")
# The chains whose rules are read: ours, and the builtin ones that jump to them.
_READ = frozenset(chain for _, chain in _CHAINS) | frozenset(builtin for _, builtin, _, _ in _JUMPS)
_QUOTED_SPACE = re.compile(r'"[^"]*\s[^"]*"')
Rule = Sequence[str]
Place = tuple[str, str]  # (table, chain)


def _binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        raise errors.Unavailable(f"{name} is not installed (apt-get install iptables)")
    return binary


@dataclasses.dataclass(frozen=True, slots=True)
class Tables:
    """The ``filter`` and ``nat`` tables as ``iptables-save`` printed them: the chains and, per
    chain, its rules in order (each the words after ``-A CHAIN``, quotes removed)."""

    chains: frozenset[Place]
    rules: dict[Place, list[list[str]]]

    @staticmethod
    def read() -> Tables:
        done = subprocess.run([_binary("iptables-save")], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise errors.RuntimeFailed("iptables-save", stderr=done.stderr)
        return Tables.parse(done.stdout)

    @staticmethod
    def parse(text: str) -> Tables:
        chains: set[Place] = set()
        rules: dict[Place, list[list[str]]] = {}
        table = ""
        for line in text.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith(":") and table in _TABLES:
                chains.add((table, line[1:].split()[0]))
            elif line.startswith("-A ") and table in _TABLES and line.split(" ", 2)[1] in _READ:
                words = _words(line)
                rules.setdefault((table, words[1]), []).append(words[2:])
        return Tables(frozenset(chains), rules)

    def owned(self, table: str, chain: str, owner: str | None = None) -> Iterator[tuple[str, list[str]]]:
        """``(owner, rule)`` of the tagged rules in one chain (of ``owner`` only, if given)."""
        for rule in self.rules.get((table, chain), []):
            tag = _tag_of(rule)
            if tag is not None and owner in (None, tag):
                yield tag, rule


def _words(line: str) -> list[str]:
    """A listing's line split into words; shlex (slow) only for a quoted word with a space in it."""
    if '"' in line and _QUOTED_SPACE.search(line):
        return shlex.split(line)
    return [word.strip('"') for word in line.split()]


def _tag_of(rule: Sequence[str]) -> str | None:
    for position, word in enumerate(rule[:-1]):
        if word == "--comment" and rule[position + 1].startswith("rc:"):
            return rule[position + 1][3:]
    return None


class Changes:
    """Edits to the tables, sent in one ``iptables-restore --noflush`` (:meth:`commit`)."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {table: [] for table in _TABLES}

    def add(self, table: str, *words: str) -> None:
        self.lines[table].append(" ".join(_quoted(word) for word in words))

    def script(self) -> str:
        """The ``iptables-restore`` input: only the tables that change ("" when none does)."""
        return "".join(f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
                       for table, lines in self.lines.items() if lines)  # fmt: skip

    def commit(self) -> None:
        script = self.script()
        if not script:
            return
        done = subprocess.run([_binary("iptables-restore"), "--noflush", "-w", "5"], input=script,
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise errors.RuntimeFailed("iptables-restore", stderr=f"{done.stderr.strip()}\n{script}")


def _quoted(word: str) -> str:
    return f'"{word}"' if not word or any(c.isspace() or c in "\"'" for c in word) else word


def _tagged(owner: str, rule: Rule) -> list[str]:
    """The rule with its owner's comment where ``iptables-save`` prints it: before the target."""
    at = list(rule).index("-j") if "-j" in rule else len(rule)
    return [*rule[:at], "-m", "comment", "--comment", f"rc:{owner}", *rule[at:]]


def _ensure_chains(tables: Tables, changes: Changes) -> None:
    """Our chains exist and each builtin chain jumps to them (first, when the jump is missing)."""
    for table, chain in _CHAINS:
        if (table, chain) not in tables.chains:
            changes.add(table, "-N", chain)
    for table, builtin, chain, match in _JUMPS:
        if [*match, "-j", chain] not in tables.rules.get((table, builtin), []):
            changes.add(table, "-I", builtin, "1", *match, "-j", chain)


def _delete(changes: Changes, table: str, chain: str, rule: Rule) -> None:
    changes.add(table, "-D", chain, *rule)


def _replace(tables: Tables, changes: Changes, place: Place, owner: str, rules: Sequence[Rule]) -> None:
    """``owner``'s rules in the chain are ``rules``, in order, and no others: when one is missing,
    extra or out of place (an upgrade, a crash half-way, a hand edit), all of them are deleted and
    appended again in order, because the final drop must come after the accepts."""
    table, chain = place
    present = [rule for _, rule in tables.owned(table, chain, owner)]
    wanted = [_tagged(owner, rule) for rule in rules]
    if present == wanted:
        return
    for rule in present:
        _delete(changes, table, chain, rule)
    for rule in wanted:
        changes.add(table, "-A", chain, *rule)


def removal_changes(tables: Tables, owners: Collection[str]) -> Changes:
    """The deletion of the rules of ``owners``; of the jumps and chains too when no rule of
    anyone's would be left in them."""
    changes = Changes()
    left = False
    for table, chain in _CHAINS:
        for owner, rule in tables.owned(table, chain):
            if owner in owners:
                _delete(changes, table, chain, rule)
        left = left or any(_tag_of(rule) not in owners for rule in tables.rules.get((table, chain), []))
    if left:
        return changes
    for table, builtin, chain, match in _JUMPS:
        for rule in tables.rules.get((table, builtin), []):
            if rule == [*match, "-j", chain]:
                _delete(changes, table, builtin, rule)
    for table, chain in _CHAINS:
        if (table, chain) in tables.chains:
            changes.add(table, "-X", chain)
    return changes


def remove_owner(owner: str) -> None:
    """Delete every rule in our chains whose comment names ``owner``; the chains too when empty."""
    with files.file_lock(LOCK):
        tables = Tables.read()
        if any(other == owner for table, chain in _CHAINS for other, _ in tables.owned(table, chain)):
            removal_changes(tables, {owner}).commit()


def owners() -> set[str]:
    """Every owner that has a rule in our chains, on the whole host (all roots): a caller that
    knows which owners are alive removes the others' rules (left by a crash) with :func:`remove_owner`."""
    with files.file_lock(LOCK):
        tables = Tables.read()
    return {owner for table, chain in _CHAINS for owner, _ in tables.owned(table, chain)}


def network_rules(bridge: str, *, subnet: str, gateway: str, internal: bool) -> dict[Place, list[Rule]]:
    """A network's rules per ``(table, chain)``, in order (see the module's docstring), each in the
    form ``iptables-save`` prints it (addresses, interfaces, protocol, then matches and target)."""
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
        ["-d", "127.0.0.0/8", "-i", bridge, *not_reply_nor_dnat, "-j", "DROP"],
        ["-d", f"{gateway}/32", "!", "-i", bridge, "-p", "udp", "-m", "udp", "--dport", "53", "-j", "DROP"],
        ["-d", f"{gateway}/32", "!", "-i", bridge, "-p", "tcp", "-m", "tcp", "--dport", "53", "-j", "DROP"],
    ]
    post: list[Rule] = [["-o", bridge, "-m", "addrtype", "--src-type", "LOCAL", "-j", "MASQUERADE"]]
    if not internal:
        post.insert(0, ["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"])
    return {("filter", FORWARD_CHAIN): forward, ("filter", INPUT_CHAIN): inbound, ("nat", POST_CHAIN): post}


def add_network(owner: str, *, bridge: str, subnet: str, gateway: str, internal: bool,
                remove: Callable[[str], bool] = lambda _: False) -> None:  # fmt: skip
    """A network's rules, tagged ``rc:<owner>`` (see :func:`network_services.rules_owner`); the
    rules of every other owner that ``remove`` says is gone go in the same change."""
    with files.file_lock(LOCK):
        network_changes(Tables.read(), owner, bridge=bridge, subnet=subnet, gateway=gateway, internal=internal,
                        remove=remove).commit()  # fmt: skip


def network_changes(tables: Tables, owner: str, *, bridge: str, subnet: str, gateway: str, internal: bool,
                    remove: Callable[[str], bool] = lambda _: False) -> Changes:  # fmt: skip
    """What :func:`add_network` changes in ``tables`` (nothing when every rule is in place)."""
    changes = Changes()
    _ensure_chains(tables, changes)
    rules = network_rules(bridge, subnet=subnet, gateway=gateway, internal=internal)
    for place, ordered in rules.items():
        _replace(tables, changes, place, owner, ordered)
    # Containers own no forwarding rule any more: one left by an older version (an accept of a
    # published container port from anywhere, DNATed or not) goes, and so do the rules of the gone.
    for table, chain in _CHAINS:
        for other, rule in tables.owned(table, chain):
            old_accept = chain == FORWARD_CHAIN and "-o" in rule and rule[rule.index("-o") + 1] == bridge
            if other != owner and (old_accept or remove(other)):
                _delete(changes, table, chain, rule)
    return changes


def publish(container_id: str, *, bridge: str, host_ip: str | None, host_port: int, address: str,
            container_port: int, protocol: str) -> None:  # fmt: skip
    """DNAT ``host_ip:host_port`` (all local addresses when None) to ``address:container_port``.

    The bridge's own rules let DNATed traffic in (:func:`network_rules`); nothing else reaches the
    container's port from outside the bridge.
    """
    rules = port_rules(bridge=bridge, host_ip=host_ip, host_port=host_port, address=address,
                       container_port=container_port, protocol=protocol)  # fmt: skip
    with files.file_lock(LOCK):
        publish_changes(Tables.read(), container_id, rules).commit()


def port_rules(*, bridge: str, host_ip: str | None, host_port: int, address: str, container_port: int,
               protocol: str) -> dict[str, Rule]:  # fmt: skip
    """A published port's rules per ``nat`` chain: its DNAT, and the masquerade of hairpin traffic."""
    destination = ["-d", f"{host_ip}/32"] if host_ip and host_ip != "0.0.0.0" else []  # noqa: S104
    by_port = ["-p", protocol, "-m", protocol]
    return {
        DNAT_CHAIN: [*destination, *by_port, "--dport", str(host_port), "-j", "DNAT", "--to-destination",
                     f"{address}:{container_port}"],
        POST_CHAIN: ["-s", f"{address}/32", "-d", f"{address}/32", "-o", bridge, *by_port,
                     "--dport", str(container_port), "-j", "MASQUERADE"],
    }  # fmt: skip


def publish_changes(tables: Tables, container_id: str, rules: dict[str, Rule]) -> Changes:
    """What :func:`publish` changes in ``tables``: the rules that are not there yet."""
    changes = Changes()
    _ensure_chains(tables, changes)
    for chain, rule in rules.items():
        tagged = _tagged(container_id, rule)
        if tagged not in tables.rules.get(("nat", chain), []):
            changes.add("nat", "-A", chain, *tagged)
    return changes
