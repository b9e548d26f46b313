"""Firewall rules of a bridge that no longer exists (a killed run's, a deleted root's, any root's)
go when a network's rules are put in place: such a rule once dropped a later network's DNS
queries because it had the same gateway address."""

from __future__ import annotations

import secrets
import subprocess

from reconciler import manifests, plans
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import firewall
from tests.contract import suite


def test_rules_of_a_gone_bridge_are_removed(engine: native_engine.NativeEngine, prefix: str) -> None:
    request = plans.NetworkRequest(f"{prefix}net", manifests.NetworkSpec(), suite.labels("net", "Network"))
    engine.create_network(request)  # the chains exist from here on
    gone = "rcbr-" + secrets.token_hex(4)
    rule = ["-d", "10.255.254.1/32", "-p", "udp", "--dport", "53", "-m", "comment", "--comment", f"rc:{gone}",
            "-j", "DROP"]  # fmt: skip
    subprocess.run(["iptables", "-w", "5", "-A", firewall.INPUT_CHAIN, *rule], check=True)
    try:
        assert gone in firewall.owners()
        engine.create_network(plans.NetworkRequest(f"{prefix}other", manifests.NetworkSpec(),
                                                   suite.labels("net", "Network")))  # fmt: skip
        assert gone not in firewall.owners()
    finally:
        subprocess.run(["iptables", "-w", "5", "-D", firewall.INPUT_CHAIN, *rule], check=False, capture_output=True)
