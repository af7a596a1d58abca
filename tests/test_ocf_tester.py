"""resource-agents' ocf-tester accepts ocf:kuth:IPaddr2 for IPv4 and IPv6.

ocf-tester runs meta-data as nobody, so it gets the copy of the agent any user can read
(ocfshim.public_tree), wherever the checkout lies."""
import os

import pytest

from ocfshim import STATE_DIR, public_agent

CASES = {
    "ipv4": ["ip=198.18.0.10", "nic=lan0", "cidr_netmask=24"],
    "ipv4-findif": ["ip=198.18.0.12"],
    "ipv6": ["ip=2001:2::10", "nic=lan0", "cidr_netmask=64"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ocf_tester_passes(lan, case):
    node, _ = lan
    argv = ["ocf-tester", "-n", f"vip-{case}"]
    for option in CASES[case]:
        argv += ["-o", option]
    proc = node.run(*argv, public_agent("IPaddr2"), check=False, timeout=180,
                    env={**os.environ, "HA_RSCTMP": STATE_DIR})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout
    address = CASES[case][0].split("=")[1]
    assert not [a for a in node.addresses("lan0") if a.startswith(address + "/")]
