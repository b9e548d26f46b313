"""The native firewall on the host's real tables (issue 13): the rules it writes in one
``iptables-restore`` read back from ``iptables-save`` exactly as written, so a network or port
already in place costs one listing and no change; the last owner's removal takes our chains."""

from __future__ import annotations

import secrets

from reconciler.backends.native import firewall


def test_rules_in_place_read_back_as_written_and_go_with_their_owners(prefix: str) -> None:
    bridge = "rcbr-" + secrets.token_hex(4)  # no such link: the rules match no packet
    subnet, gateway, address = "10.255.251.0/24", "10.255.251.1", "10.255.251.2"
    container = f"{prefix}fw"
    ports = (("127.0.0.1", 1, "tcp"), (None, 2, "udp"))
    try:
        firewall.add_network(bridge, bridge=bridge, subnet=subnet, gateway=gateway, internal=False)
        for host_ip, host_port, protocol in ports:
            firewall.publish(container, bridge=bridge, host_ip=host_ip, host_port=host_port, address=address,
                             container_port=80, protocol=protocol)  # fmt: skip
        tables = firewall.Tables.read()
        unchanged = firewall.network_changes(tables, bridge, bridge=bridge, subnet=subnet, gateway=gateway,
                                             internal=False)  # fmt: skip
        assert unchanged.script() == ""
        for host_ip, host_port, protocol in ports:
            rules = firewall.port_rules(bridge=bridge, host_ip=host_ip, host_port=host_port, address=address,
                                        container_port=80, protocol=protocol)  # fmt: skip
            assert firewall.publish_changes(tables, container, rules).script() == ""
        assert {bridge, container} <= firewall.owners()
    finally:
        firewall.remove_owner(container)
        firewall.remove_owner(bridge)
    assert not {bridge, container} & firewall.owners()
