"""The lab's fence device (lab.fencing): the agent fence_kuth_lab speaks the fence-agents API
(stdin options, exit codes, list and status output, meta-data) to the power switch, which
acts on its machines and refuses a request from a node powered off meanwhile. Here the
machines are a recording stand-in and the switch listens in a namespace of the test's; the
cluster tests (test_cluster_*.py) fence real nodes with it.
"""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from lab.fencing import AGENT, AGENT_DIR, PowerSwitch
from lab.netns import Netns, NetnsPool
from lab.topology import POWER_ADDRESS, POWER_PORT, VIP_NETWORK

AGENT_PATH = os.path.join(AGENT_DIR, AGENT)
NODES = ["n1", "n2"]
ASKER = f"{VIP_NETWORK}.1"  # the address the stand-in maps to n1


class Machines:
    """Records power requests; n1 asks from ASKER."""

    def __init__(self) -> None:
        self.names = list(NODES)
        self.on = set(NODES)
        self.done: list[str] = []

    def power_off(self, name: str) -> None:
        self.on.discard(name)
        self.done.append(f"off {name}")

    def power_on(self, name: str) -> None:
        self.on.add(name)
        self.done.append(f"on {name}")

    def powered(self, name: str) -> bool:
        return name in self.on

    def node_at(self, address: str) -> str | None:
        return "n1" if address == ASKER else None


@pytest.fixture
def switch(netns_pool: NetnsPool) -> Iterator[tuple[PowerSwitch, Machines, Netns]]:
    """A power switch on POWER_ADDRESS in one namespace, and a node namespace (ASKER) that
    reaches it over a veth."""
    power, node = netns_pool.new(), netns_pool.new()
    netns_pool.link(power, "lan0", node, "lan0")
    power.ip("addr", "add", f"{POWER_ADDRESS}/24", "dev", "lan0")
    node.ip("addr", "add", f"{ASKER}/24", "dev", "lan0")
    machines = Machines()
    switch = PowerSwitch(power, machines)
    try:
        yield switch, machines, node
    finally:
        switch.close()


def fence(node: Netns, stdin: str) -> subprocess.CompletedProcess[str]:
    """Run the agent in node as pacemaker-fenced does: options on stdin."""
    return node.run(AGENT_PATH, check=False, input=stdin)


def options(**opts: str) -> str:
    return "".join(f"{k}={v}\n" for k, v in {"ip": POWER_ADDRESS, **opts}.items())


def test_reboot_powers_the_node_off_then_on(switch) -> None:
    _, machines, node = switch
    result = fence(node, options(action="reboot", plug="n2", nodename="n2"))
    assert (result.returncode, result.stderr) == (0, "")
    assert machines.done == ["off n2", "on n2"]


def test_off_and_on_and_status_exit_codes(switch) -> None:
    _, machines, node = switch
    assert fence(node, options(action="off", plug="n2")).returncode == 0
    assert fence(node, options(action="status", plug="n2")).returncode == 2  # off
    assert fence(node, options(action="on", plug="n2")).returncode == 0
    assert fence(node, options(action="status", plug="n2")).returncode == 0  # on
    assert machines.done == ["off n2", "on n2"]


def test_list_and_list_status_print_one_plug_per_line(switch) -> None:
    _, machines, node = switch
    machines.on.discard("n2")
    assert fence(node, options(action="list")).stdout == "n1\nn2\n"
    assert fence(node, options(action="list-status")).stdout == "n1,,on\nn2,,off\n"
    assert fence(node, options(action="monitor")).returncode == 0


def test_the_command_line_form_works_too(switch) -> None:
    _, machines, node = switch
    result = node.run(AGENT_PATH, "-o", "off", "-n", "n2", "-a", POWER_ADDRESS,
                      "-u", str(POWER_PORT), check=False)
    assert result.returncode == 0, result.stderr
    assert machines.done == ["off n2"]


def test_an_unknown_node_fails_with_the_switchs_reason(switch) -> None:
    _, machines, node = switch
    result = fence(node, options(action="off", plug="n9"))
    assert result.returncode == 1
    assert "no node 'n9'" in result.stderr and "Traceback" not in result.stderr
    assert machines.done == []


def test_a_request_from_a_node_powered_off_meanwhile_is_refused(switch) -> None:
    """The loser of a fence race: its request comes after the winner's turned it off."""
    power_switch, machines, node = switch
    machines.on.discard("n1")
    result = fence(node, options(action="off", plug="n2"))
    assert result.returncode == 1
    assert "n1, which asked, is powered off" in result.stderr
    assert machines.done == []
    assert power_switch.log[-1].startswith("n1: off n2 -> error")


def test_without_the_switch_address_the_agent_says_so() -> None:
    """Said before any switch is asked: no namespace needed."""
    result = subprocess.run([AGENT_PATH], input="action=off\nplug=n2\n", capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert "needs ip=ADDRESS" in result.stderr


def test_an_unreachable_switch_fails_without_traceback(netns_pool: NetnsPool) -> None:
    alone = netns_pool.new()
    result = fence(alone, options(action="off", plug="n2"))
    assert result.returncode == 1
    assert "power switch" in result.stderr and "Traceback" not in result.stderr


def test_metadata_declares_what_pacemaker_reads() -> None:
    """fenced takes the target parameter (plug) and the supported actions from here."""
    out = subprocess.run([AGENT_PATH, "-o", "metadata"], capture_output=True, text=True,
                         check=True).stdout
    root = ET.fromstring(out)
    assert root.tag == "resource-agent" and root.get("name") == AGENT
    params = {p.get("name"): p for p in root.iterfind("parameters/parameter")}
    assert {"action", "plug", "ip", "ipport"} <= set(params)
    actions = {a.get("name") for a in root.iterfind("actions/action")}
    assert {"on", "off", "reboot", "status", "list", "monitor", "metadata"} <= actions
    same = subprocess.run([AGENT_PATH], input="action=metadata\n", capture_output=True,
                          text=True, check=True).stdout
    assert same == out
