"""Every parameter of ocf:heartbeat:IPaddr2 (resource-agents 4.12 and 4.16), fed to
ocf:kuth:IPaddr2's validate-all and start: each works, is refused with a reason, or gets a
warning, as README.md's table "heartbeat parameter -> ocf:kuth:IPaddr2" says.

The agent runs in `lan`'s node namespace (lan0: 198.18.0.1/24, 2001:2::1/64).
"""
import json
import os
import re
import socket
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ocfshim import REPO, assert_clean_failure
from ocfshim import ipaddr2 as agent

HEARTBEAT_AGENT = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"
# The parameters of heartbeat's IPaddr2 in 4.12 (Debian 12) and 4.16 (Debian 13, which
# adds proto), and netmask, which both still read though their meta-data no longer lists it.
HEARTBEAT_PARAMS = (
    "ip", "nic", "cidr_netmask", "netmask", "broadcast", "proto", "iflabel", "lvs_support",
    "lvs_ipv6_addrlabel", "lvs_ipv6_addrlabel_value", "mac", "clusterip_hash",
    "unique_clone_address", "arp_interval", "arp_count", "arp_count_refresh", "arp_bg",
    "arp_sender", "send_arp_opts", "flush_routes", "run_arping", "nodad", "noprefixroute",
    "preferred_lft", "network_namespace")
V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
V6 = {"ip": "2001:2::10", "nic": "lan0", "cidr_netmask": "64"}


def parameter_names(xml: str) -> list[str]:
    return [p.get("name") for p in ET.fromstring(xml).iter("parameter")]


def test_the_list_holds_every_parameter_of_the_installed_heartbeat_agent():
    if not os.path.exists(HEARTBEAT_AGENT):
        pytest.skip("resource-agents is not installed")
    xml = subprocess.run([HEARTBEAT_AGENT, "meta-data"], env={"OCF_ROOT": "/usr/lib/ocf"},
                         capture_output=True, text=True, check=True).stdout
    assert set(parameter_names(xml)) <= set(HEARTBEAT_PARAMS)


def test_our_metadata_declares_every_heartbeat_parameter():
    with open(os.path.join(REPO, "metadata", "IPaddr2.xml"), encoding="utf-8") as f:
        ours = parameter_names(f.read())
    assert [name for name in HEARTBEAT_PARAMS if name not in ours] == []


def test_the_readme_table_has_a_row_for_every_heartbeat_parameter():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    rows = set(re.findall(r"^\| `([a-z0-9_]+)(?:=[^`]*)?` \|", readme, re.MULTILINE))
    assert [name for name in HEARTBEAT_PARAMS if name not in rows] == []


# -- works ------------------------------------------------------------------------------------

def addr_info(node, ip):
    detail = json.loads(node.ip("-j", "addr", "show", "dev", "lan0"))[0]["addr_info"]
    return next((a for a in detail if a["local"] == ip), None)


def labels(node) -> dict[str, int]:
    entries = json.loads(node.ip("-j", "-6", "addrlabel", "list") or "[]")
    return {f"{e['address']}/{e['prefixlen']}": e["label"] for e in entries}


def start_and_check(node, params, check):
    """validate-all and start succeed without a warning, check(address info) holds, stop
    removes the address."""
    out = agent("validate-all", params, node)
    assert out.rc == 0 and "WARNING" not in out.stderr, out
    out = agent("start", params, node)
    assert out.rc == 0 and "WARNING" not in out.stderr, out
    info = addr_info(node, params["ip"])
    assert info is not None
    check(info)
    assert agent("monitor", params, node, interval_ms=10000).rc == 0
    assert agent("stop", params, node).rc == 0
    assert addr_info(node, params["ip"]) is None


WORKS = {
    "ip": (V4, lambda a: a["prefixlen"] == 24),
    "nic": ({"ip": "198.18.0.10", "nic": "lan0"}, lambda a: a["prefixlen"] == 24),
    "cidr_netmask": ({**V4, "cidr_netmask": "26"}, lambda a: a["prefixlen"] == 26),
    "netmask": ({"ip": "198.18.0.10", "netmask": "25"}, lambda a: a["prefixlen"] == 25),
    "broadcast": ({**V4, "broadcast": "198.18.0.127"},
                  lambda a: a["broadcast"] == "198.18.0.127"),
    "proto": ({"ip": "198.18.0.10", "proto": "kernel"}, lambda a: a["prefixlen"] == 24),
    "iflabel": ({**V4, "iflabel": "vip"}, lambda a: a["label"] == "lan0:vip"),
    "lvs_support": ({**V4, "lvs_support": "false"}, lambda a: True),
    "lvs_ipv6_addrlabel": ({**V6, "lvs_ipv6_addrlabel": "false"}, lambda a: True),
    "lvs_ipv6_addrlabel_value": ({**V6, "lvs_ipv6_addrlabel_value": "123"}, lambda a: True),
    "mac": ({**V4, "mac": ""}, lambda a: True),
    "clusterip_hash": ({**V4, "clusterip_hash": "sourceip-sourceport"}, lambda a: True),
    "unique_clone_address": ({**V4, "unique_clone_address": "false"}, lambda a: True),
    "arp_interval": ({**V4, "arp_interval": "50"}, lambda a: True),
    "arp_count": ({**V4, "arp_count": "2000"}, lambda a: True),
    "arp_count_refresh": ({**V4, "arp_count_refresh": "1"}, lambda a: True),
    "arp_bg": ({**V4, "arp_bg": "false", "arp_count": "2", "arp_interval": "10"},
               lambda a: True),
    "arp_sender": ({**V4, "arp_sender": ""}, lambda a: True),
    "send_arp_opts": ({**V4, "send_arp_opts": "-A"}, lambda a: True),
    "flush_routes": ({**V4, "flush_routes": "true"}, lambda a: True),
    "run_arping": ({**V4, "run_arping": "true"}, lambda a: True),
    "nodad": ({**V6, "nodad": "true"}, lambda a: "tentative" not in a),
    "noprefixroute": ({**V4, "noprefixroute": "true"}, lambda a: a.get("noprefixroute")),
    "preferred_lft": ({**V6, "preferred_lft": "0"}, lambda a: a["preferred_life_time"] == 0),
}


@pytest.mark.parametrize("name", sorted(WORKS))
def test_a_heartbeat_parameter_works_as_there(lan, name):
    node, _ = lan
    params, check = WORKS[name]
    start_and_check(node, params, check)


def test_network_namespace_works_as_there(lan):
    node, _ = lan
    start_and_check(node, {**V4, "network_namespace": node.name}, lambda a: True)


def test_unique_clone_address_gives_each_instance_an_address_of_its_own(lan):
    node, _ = lan
    params = {**V4, "unique_clone_address": "true"}
    for number in (0, 2):
        meta = {"OCF_RESKEY_CRM_meta_clone": str(number), "OCF_RESKEY_CRM_meta_clone_max": "3",
                "OCF_RESKEY_CRM_meta_globally_unique": "true"}
        out = agent("start", params, node, extra=meta, instance=f"vip:{number}")
        assert out.rc == 0, out
        assert addr_info(node, f"198.18.0.{10 + number}") is not None
        out = agent("reload", {**params, "arp_count": "6"}, node, extra=meta,
                    instance=f"vip:{number}")
        assert out.rc == 0 and "the address stays" in out.stderr, out
        assert agent("stop", params, node, extra=meta, instance=f"vip:{number}").rc == 0
        assert addr_info(node, f"198.18.0.{10 + number}") is None


def test_an_ipv6_address_gets_an_address_label_until_stop(lan):
    node, _ = lan
    assert agent("start", V6, node).rc == 0
    assert labels(node).get("2001:2::10/128") == 99
    assert agent("stop", V6, node).rc == 0
    assert "2001:2::10/128" not in labels(node)


def source_of_a_connection(node, peer_ip: str) -> str:
    """The source address of a TCP connection the node itself opens to peer_ip (what
    connect() chose; the SYN leaves from it)."""
    code = ("import socket, sys; s = socket.socket(socket.AF_INET6); s.setblocking(False)\n"
            "try: s.connect((sys.argv[1], 9))\nexcept BlockingIOError: pass\n"
            "print(s.getsockname()[0])")
    return node.run("/usr/bin/python3", "-c", code, peer_ip).stdout.strip()


@pytest.mark.parametrize("labelled", [True, False], ids=["default", "lvs_ipv6_addrlabel=false"])
def test_the_node_own_connections_do_not_leave_from_an_ipv6_vip(lan, labelled):
    node, _ = lan
    params = {**V6, "lvs_ipv6_addrlabel": "true" if labelled else "false"}
    assert agent("start", params, node).rc == 0
    route = node.ip("-6", "route", "get", "2001:2::2")
    source = source_of_a_connection(node, "2001:2::2")
    assert agent("stop", params, node).rc == 0
    if labelled:
        assert "src 2001:2::1 " in route and source == "2001:2::1", route
    else:  # what the label prevents: the VIP wins source selection on its link
        assert "src 2001:2::10 " in route and source == "2001:2::10", route


def test_a_monitor_fails_when_the_label_is_gone(lan):
    node, _ = lan
    params = {**V4, "iflabel": "vip"}
    assert agent("start", params, node).rc == 0
    node.ip("addr", "del", "198.18.0.10/24", "dev", "lan0")
    node.ip("addr", "add", "198.18.0.10/24", "dev", "lan0")  # back, without its label
    out = agent("monitor", params, node, interval_ms=10000)
    assert_clean_failure(out, 1)
    assert "without its label lan0:vip" in out.reason
    assert agent("stop", params, node).rc == 0


# -- refused, or warned about ----------------------------------------------------------------

REFUSED = {
    "lvs_support": ({**V4, "lvs_support": "true"}, 6, "lvs_support=true"),
    "unique_clone_address": ({**V4, "unique_clone_address": "true"}, 6, "globally-unique"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_heartbeat_parameter_is_refused_with_what_to_do(lan, name):
    node, _ = lan
    params, code, reason = REFUSED[name]
    for action in ("validate-all", "start"):
        out = agent(action, params, node)
        assert_clean_failure(out, code)
        assert reason in out.reason
    assert addr_info(node, params["ip"]) is None


WARNED = {
    "nic": ({"ip": "198.18.0.10", "nic": "lan0:vip", "cidr_netmask": "24"},
            "use nic=lan0 iflabel=vip", lambda a: a["label"] == "lan0:vip"),
    "mac": ({**V4, "mac": "01:00:5e:7f:00:01"}, "mac is for CLUSTERIP", lambda a: True),
    "clusterip_hash": ({**V4, "clusterip_hash": "sourceip"}, "clusterip_hash is for CLUSTERIP",
                       lambda a: True),
    "arp_sender": ({**V4, "arp_sender": "iputils_arping"}, "arp_sender=iputils_arping has no",
                   lambda a: True),
    "send_arp_opts": ({**V4, "send_arp_opts": "-c 3"}, "send_arp_opts -c 3 have no effect",
                      lambda a: True),
    "preferred_lft": ({**V4, "preferred_lft": "100"}, "preferred_lft is for IPv6",
                      lambda a: a["preferred_life_time"] == 4294967295),
}


@pytest.mark.parametrize("name", sorted(WARNED))
def test_a_heartbeat_parameter_without_effect_gets_a_warning(lan, name):
    node, _ = lan
    params, warning, check = WARNED[name]
    for action in ("validate-all", "start"):
        out = agent(action, params, node)
        assert out.rc == 0 and warning in out.stderr, out
    check(addr_info(node, params["ip"]))
    out = agent("monitor", params, node, interval_ms=10000)
    assert out.rc == 0 and "WARNING" not in out.stderr, "monitor stays quiet"
    assert agent("stop", params, node).rc == 0


def test_every_heartbeat_parameter_is_covered_here():
    covered = {*WORKS, *REFUSED, *WARNED, "network_namespace"}
    assert [name for name in HEARTBEAT_PARAMS if name not in covered] == []
