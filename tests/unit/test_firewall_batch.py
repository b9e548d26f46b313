"""The native firewall's changes as one ``iptables-restore`` (issue 13): computed from one
``iptables-save`` listing, nothing when every rule is in place, and the whole set again, in order,
when one is missing or out of place. The real tables are in
``tests/integration/native/test_firewall_batch.py``."""

from __future__ import annotations

from reconciler.backends.native import firewall

BRIDGE = "rcbr-0badf00d"
NETWORK = {"bridge": BRIDGE, "subnet": "10.233.77.0/24", "gateway": "10.233.77.1", "internal": False}


def _listing(*tagged: tuple[str, str, str, firewall.Rule]) -> str:
    """An ``iptables-save`` text with our chains and jumps, and the given ``(table, chain, owner, rule)``."""
    lines = {"filter": [":FORWARD ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", f":{firewall.FORWARD_CHAIN} - [0:0]",
                        f":{firewall.INPUT_CHAIN} - [0:0]", f"-A FORWARD -j {firewall.FORWARD_CHAIN}",
                        f"-A INPUT -j {firewall.INPUT_CHAIN}"],
             "nat": [f":{firewall.DNAT_CHAIN} - [0:0]", f":{firewall.POST_CHAIN} - [0:0]",
                     f"-A PREROUTING -m addrtype --dst-type LOCAL -j {firewall.DNAT_CHAIN}",
                     f"-A OUTPUT -m addrtype --dst-type LOCAL -j {firewall.DNAT_CHAIN}",
                     f"-A POSTROUTING -j {firewall.POST_CHAIN}"]}  # fmt: skip
    for table, chain, owner, rule in tagged:
        words = [*rule]
        at = words.index("-j")
        words[at:at] = ["-m", "comment", "--comment", f'"rc:{owner}"']
        lines[table].append(f"-A {chain} {' '.join(words)}")
    return "".join(f"*{table}\n" + "\n".join(body) + "\nCOMMIT\n" for table, body in lines.items())


def _all_rules(owner: str) -> list[tuple[str, str, str, firewall.Rule]]:
    return [(table, chain, owner, rule) for (table, chain), rules in firewall.network_rules(**NETWORK).items()
            for rule in rules]  # fmt: skip


def test_rules_in_place_change_nothing() -> None:
    tables = firewall.Tables.parse(_listing(*_all_rules(BRIDGE)))
    assert firewall.network_changes(tables, BRIDGE, **NETWORK).script() == ""


def test_an_empty_host_gets_chains_jumps_and_rules_in_one_script() -> None:
    script = firewall.network_changes(firewall.Tables.parse(""), BRIDGE, **NETWORK).script()
    assert script.count("COMMIT") == 2  # one transaction per table, one process for all
    for chain in (firewall.FORWARD_CHAIN, firewall.INPUT_CHAIN, firewall.DNAT_CHAIN, firewall.POST_CHAIN):
        assert f"-N {chain}\n" in script
    assert f"-I FORWARD 1 -j {firewall.FORWARD_CHAIN}\n" in script
    forward = [line for line in script.splitlines() if line.startswith(f"-A {firewall.FORWARD_CHAIN}")]
    assert len(forward) == 6 and forward[-1].endswith("-j DROP") and f"-o {BRIDGE} " in forward[-1]


def test_a_missing_rule_puts_the_whole_chain_back_in_order() -> None:
    rules = _all_rules(BRIDGE)
    dnat_accept = next(r for r in rules if "DNAT" in r[3])
    tables = firewall.Tables.parse(_listing(*[r for r in rules if r is not dnat_accept]))
    lines = firewall.network_changes(tables, BRIDGE, **NETWORK).script().splitlines()
    deleted = [line for line in lines if line.startswith(f"-D {firewall.FORWARD_CHAIN}")]
    added = [line for line in lines if line.startswith(f"-A {firewall.FORWARD_CHAIN}")]
    assert len(deleted) == 5 and len(added) == 6
    assert lines.index(deleted[-1]) < lines.index(added[0])  # deleted first, then appended in order
    assert added[-1].endswith("-j DROP")
    assert not any(line.startswith(f"-A {firewall.INPUT_CHAIN}") for line in lines)  # the others stay


def test_rules_of_gone_owners_and_old_container_accepts_go_in_the_same_change() -> None:
    gone = "rcbr-00000000"
    old_accept = ("filter", firewall.FORWARD_CHAIN, "c" * 64, ["-o", BRIDGE, "-p", "tcp", "-m", "tcp", "--dport", "80",
                                                               "-j", "ACCEPT"])  # fmt: skip
    other = _all_rules(gone)
    tables = firewall.Tables.parse(_listing(*_all_rules(BRIDGE), *other, old_accept))
    script = firewall.network_changes(tables, BRIDGE, **NETWORK, remove=lambda owner: owner == gone).script()
    assert script.count(f"rc:{gone}") == len(other)
    assert script.count(f"rc:{'c' * 64}") == 1
    assert all(line.startswith("-D ") for line in script.splitlines() if line[:1] == "-")


def test_the_last_owners_removal_takes_jumps_and_chains() -> None:
    tables = firewall.Tables.parse(_listing(*_all_rules(BRIDGE)))
    script = firewall.removal_changes(tables, {BRIDGE}).script()
    assert f"-D FORWARD -j {firewall.FORWARD_CHAIN}\n" in script and f"-X {firewall.POST_CHAIN}\n" in script
    with_another = firewall.Tables.parse(_listing(*_all_rules(BRIDGE), *_all_rules("rcbr-11111111")))
    kept = firewall.removal_changes(with_another, {BRIDGE}).script()
    assert "-X " not in kept and "rc:rcbr-11111111" not in kept and "rc:rcbr-0badf00d" in kept


def test_a_published_port_is_added_once() -> None:
    rules = firewall.port_rules(bridge=BRIDGE, host_ip="127.0.0.1", host_port=18080, address="10.233.77.2",
                                container_port=80, protocol="tcp")  # fmt: skip
    first = firewall.publish_changes(firewall.Tables.parse(_listing()), "c" * 64, rules).script()
    assert first.count(f"-A {firewall.DNAT_CHAIN}") == 1 and first.count(f"-A {firewall.POST_CHAIN}") == 1
    present = [("nat", chain, "c" * 64, rule) for chain, rule in rules.items()]
    assert firewall.publish_changes(firewall.Tables.parse(_listing(*present)), "c" * 64, rules).script() == ""
