"""Bad input to ocf:kuth:IPaddr2: the right OCF code, a one-line exit reason, no traceback,
and nothing changed on any interface."""
import os

import pytest

from ocfshim import assert_clean_failure, run_agent

GOOD = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
METACHARACTERS = ["$(touch /tmp/kuth-pwned)", "`touch /tmp/kuth-pwned`", "; touch /tmp/kuth-pwned",
                  "a|b", "a&&b", "-f", "--help", "x\ny", "x\ty", "' \"", "../../etc/passwd",
                  "\u00e9\u4e2d", "a" * 5000, "*"]

INVALID = [  # (parameter overrides, code, words expected in the reason)
    ({"ip": "198.18.0.300"}, 6, "not a valid IP address"),
    ({"ip": "198.18.0.10/24"}, 6, "prefix"),
    ({"ip": "fe80::10", "nic": ""}, 6, "link-local"),
    ({"cidr_netmask": "33"}, 6, "out of range"),
    ({"cidr_netmask": "0"}, 6, "every address"),
    ({"cidr_netmask": "255.0.255.0"}, 6, "contiguous"),
    ({"cidr_netmask": "abc"}, 6, "netmask"),
    ({"broadcast": "198.18.0.999"}, 6, "broadcast"),
    ({"ip": "2001:2::10", "cidr_netmask": "64", "broadcast": "198.18.0.255"}, 6, "IPv4"),
    ({"iflabel": "averyverylonglabel"}, 6, "15 bytes"),
    ({"iflabel": "bad label"}, 6, "iflabel"),
    ({"arp_count": "0"}, 6, "arp_count"),
    ({"arp_count": "many"}, 6, "not an integer"),
    ({"arp_interval": "-5"}, 6, "arp_interval"),
    ({"arp_bg": "perhaps"}, 6, "not a boolean"),
    ({"nodad": "2"}, 6, "not a boolean"),
    ({"arp_sender": "my_arp"}, 6, "arp_sender"),
    ({"preferred_lft": "soon"}, 6, "preferred_lft"),
    ({"nic": "eth0/../x"}, 6, "not a valid interface name"),
    ({"nic": "-d"}, 6, "not a valid interface name"),
    ({"nic": "eth9"}, 2, "does not exist"),
    ({"network_namespace": "../x"}, 6, "network_namespace"),
]


def snapshot(ns):
    """Addresses, links and routes; without the kernel's own progress through IPv6 duplicate
    address detection on the link-local addresses of a link just made ("tentative" goes
    within about a second, whatever the agent does)."""
    return (ns.ip("-o", "addr", "show") + ns.ip("-o", "link", "show")
            + ns.ip("-o", "route", "show")).replace(" tentative", "")


INVALID_IDS = [f"{k}={v!r}" for o, _, _ in INVALID for k, v in list(o.items())[-1:]]


@pytest.mark.parametrize("overrides,code,words", INVALID, ids=INVALID_IDS)
def test_invalid_configuration_is_told_by_validate_all(overrides, code, words):
    """What each bad value gives and its reason's words, as any user and in any namespace:
    the values are checked before the node is looked at (lan0 is missing here), and
    validate-all changes nothing."""
    out = run_agent("IPaddr2", "validate-all", {**GOOD, **overrides})
    assert_clean_failure(out, code)
    assert words in out.reason


@pytest.mark.parametrize("overrides,code,words", INVALID, ids=INVALID_IDS)
@pytest.mark.parametrize("action", ["start", "reload"])
def test_invalid_configuration(lan, overrides, code, words, action):
    """The same refusals from the actions that change a node, which then changes not."""
    node, _ = lan
    before = snapshot(node)
    out = run_agent("IPaddr2", action, {**GOOD, **overrides}, ns=node)
    assert_clean_failure(out, code)
    assert words in out.reason
    assert snapshot(node) == before


@pytest.mark.parametrize("overrides", [o for o, _, _ in INVALID])
def test_stop_and_probe_of_invalid_configuration_tell_not_running(lan, overrides):
    node, _ = lan
    before = snapshot(node)
    params = {**GOOD, **overrides}
    assert run_agent("IPaddr2", "stop", params, ns=node).rc == 0
    probe = run_agent("IPaddr2", "monitor", params, ns=node, interval_ms=0)
    assert probe.rc == 7, probe
    assert "Traceback" not in probe.stderr
    assert snapshot(node) == before


@pytest.mark.parametrize("name", ["ip", "nic", "cidr_netmask", "netmask", "broadcast", "iflabel",
                                  "arp_count", "arp_interval", "arp_count_refresh", "arp_bg",
                                  "arp_sender", "send_arp_opts", "flush_routes", "run_arping",
                                  "nodad", "noprefixroute", "preferred_lft", "network_namespace",
                                  "check_link_status"])
def test_shell_metacharacters_in_every_parameter(lan, name, tmp_path):
    """Whatever the value, nothing runs through a shell, no traceback, and the interfaces only
    change when the value is acceptable (then start really adds the VIP)."""
    node, _ = lan
    for value in METACHARACTERS:
        before = snapshot(node)
        out = run_agent("IPaddr2", "start", {**GOOD, name: value}, ns=node)
        assert out.rc in (0, 2, 6), (value, out)
        assert "Traceback" not in out.stderr
        if out.rc != 0:
            assert out.reason and "\n" not in out.reason
            assert snapshot(node) == before
        stop = run_agent("IPaddr2", "stop", {**GOOD, name: value}, ns=node)
        assert stop.rc == 0, (value, stop)
        run_agent("IPaddr2", "stop", GOOD, ns=node)
    import os
    assert not os.path.exists("/tmp/kuth-pwned")


def test_unknown_action():
    out = run_agent("IPaddr2", "reboot-everything", GOOD)
    assert_clean_failure(out, 3)


def test_missing_ip_is_not_configured_but_stop_succeeds(lan):
    node, _ = lan
    assert_clean_failure(run_agent("IPaddr2", "start", {"nic": "lan0"}, ns=node), 6)
    assert run_agent("IPaddr2", "stop", {"nic": "lan0"}, ns=node).rc == 0
    assert run_agent("IPaddr2", "monitor", {"nic": "lan0"}, ns=node, interval_ms=0).rc == 7


# -- a problem of this node is never a code that stops the resource everywhere -------------

def test_a_label_too_long_for_the_nic_found_here_is_this_nodes_problem(lan):
    """Without nic, the label is 'the nic found here:iflabel': too long on this node's lan0,
    fine on a node whose interface has a shorter name. ERR_ARGS (2) moves the address
    elsewhere; ERR_CONFIGURED (6) would stop it on every node."""
    node, _ = lan
    params = {"ip": "198.18.0.10", "iflabel": "abcdefghijk"}  # lan0:abcdefghijk, 16
    before = snapshot(node)
    for action in ("start", "validate-all", "reload"):
        out = run_agent("IPaddr2", action, params, ns=node)
        assert_clean_failure(out, 2)
        assert "lan0:abcdefghijk" in out.reason and "15 bytes" in out.reason
    assert run_agent("IPaddr2", "monitor", params, ns=node, interval_ms=0).rc == 7
    assert run_agent("IPaddr2", "stop", params, ns=node).rc == 0
    assert snapshot(node) == before


def test_a_node_without_ip_for_network_namespace_is_not_installed(netns_pool, tmp_path):
    """network_namespace runs the agent again through `ip netns exec`: without ip that is
    ERR_INSTALLED (5, this node), never an unexpected error; a probe says not running and
    stop succeeds (start could not have added the address)."""
    ns = netns_pool.new()
    params = {**GOOD, "network_namespace": ns.name}
    without_ip = {"PATH": str(tmp_path)}
    out = run_agent("IPaddr2", "start", params, extra=without_ip)
    assert_clean_failure(out, 5)
    assert "iproute2" in out.reason and "network_namespace" in out.reason
    assert run_agent("IPaddr2", "monitor", params, interval_ms=0, extra=without_ip).rc == 7
    assert run_agent("IPaddr2", "stop", params, extra=without_ip).rc == 0
    assert_clean_failure(run_agent("IPaddr2", "monitor", params, interval_ms=10000,
                                   extra=without_ip), 5)


def test_an_interface_vanishing_while_the_address_is_looked_up_is_no_failure(
        monkeypatch, tmp_path):
    """The address found, then its interface gone before it is named (removed in between):
    the address went with it. Stop succeeds (a failed stop fences the node), monitor and
    reload say not running; none is the 1 of an unexpected error. Run in this process,
    with the lookup replaced: no interface is looked at, so any user may pass for root."""
    from agents import ipaddr2
    from ocf_lib.logic import vip as vips

    def vanished(vip):
        raise vips.NotOnThisNode("interface number 7 vanished")

    monkeypatch.setattr(vips, "served", vanished)
    monkeypatch.setattr(vips, "complete", lambda vip, proto="": vip)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("HA_RSCTMP", str(tmp_path))
    monkeypatch.setenv("OCF_RESOURCE_INSTANCE", "test-rsc")
    for name, value in GOOD.items():
        monkeypatch.setenv(f"OCF_RESKEY_{name}", value)
    assert ipaddr2.agent.dispatch("stop") == 0
    monkeypatch.setenv("OCF_RESKEY_CRM_meta_interval", "10000")
    assert ipaddr2.agent.dispatch("monitor") == 7
    monkeypatch.setenv("OCF_RESKEY_CRM_meta_interval", "0")
    assert ipaddr2.agent.dispatch("monitor") == 7
    assert ipaddr2.agent.dispatch("reload") == 7
