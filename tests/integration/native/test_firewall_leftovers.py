"""Firewall rules of a bridge that no longer exists (a killed run's, a deleted root's, any root's)
go when a network's rules are put in place: such a rule once dropped a later network's DNS
queries because it had the same gateway address."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from reconciler import manifests, plans
from reconciler.backends.native import engine as native_engine
from reconciler.backends.native import firewall, network_services, networks
from tests.contract import suite
from tests.integration.native.conftest import NO_UPSTREAM
from tests.support.polling import eventually


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


def _alias(bridge: str) -> str | None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        return ipr.get_links(found[0])[0].get_attr("IFLA_IFALIAS") if found else None


def _delete_link(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)


def test_bridge_of_a_deleted_root_is_swept(engine: native_engine.NativeEngine, prefix: str, tmp_path: Path) -> None:
    """A root deleted with its networks in place leaves their bridges: the next network put in
    place (by any root) deletes the bridges marked ours whose network folder is gone, and their
    rules with them; an unmarked bridge with our prefix is not proven ours and stays."""
    old_root = tmp_path / "deleted-root"
    old = native_engine.NativeEngine(old_root, dns_upstream=[NO_UPSTREAM])
    old.create_network(plans.NetworkRequest(f"{prefix}old", manifests.NetworkSpec(), suite.labels("net", "Network")))
    network = old.networks.get(f"{prefix}old")
    assert network is not None
    old_dns = int((old_root / "networks" / network.name / network_services.DNS_PID).read_text())
    unmarked = "rcbr-" + secrets.token_hex(4)
    try:
        assert _alias(network.bridge) == networks.owner_mark(old_root / "networks" / network.name)
        subprocess.run(["ip", "link", "add", unmarked, "type", "bridge"], check=True)
        shutil.rmtree(old_root)
        # Its DNS server sees its folder gone and ends by itself (it must not hold the address).
        eventually(lambda: not Path(f"/proc/{old_dns}").exists() or None, what="the old DNS server's exit")

        engine.create_network(plans.NetworkRequest(f"{prefix}new", manifests.NetworkSpec(),
                                                   suite.labels("net", "Network")))  # fmt: skip

        assert not networks.link_exists(network.bridge)
        assert network.bridge not in firewall.owners()
        assert networks.link_exists(unmarked)
        new = engine.networks.get(f"{prefix}new")
        assert new is not None and networks.link_exists(new.bridge)
        assert _alias(new.bridge) == networks.owner_mark(engine.networks.root / new.name)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_dns, signal.SIGKILL)
        _delete_link(unmarked)
        _delete_link(network.bridge)
        firewall.remove_owner(network.bridge)


def test_no_mark_for_a_folder_too_long_for_an_alias(tmp_path: Path) -> None:
    assert networks.owner_mark(tmp_path / "web") == networks.OWNER_MARK + str((tmp_path / "web").resolve())
    assert networks.owner_mark(tmp_path / ("x" * 250) / "web") is None
