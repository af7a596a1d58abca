"""Property tests of ocf:kuth:IPaddr2: arbitrary parameters and environment, every action.

Each example runs the real agent (tests/ocfshim.run_agent) inside a test namespace and
checks the invariants an operator relies on:
- the exit code is one Pacemaker's recovery makes right for the action (a stop never
  fails, a probe of a resource that cannot be running says 7, a bad configuration is 6
  or 2, never 1, which would ban node after node);
- no traceback, and a one-line exit reason whenever the code is an error;
- nothing runs through a shell (fake shells first in PATH record any call);
- interfaces, addresses, routes, processes and state files are unchanged, except by a
  start that succeeded -- and then the address is served and stop restores everything.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hardening
from hardening import (Tally, check_lock_files, extra_env_strategy, fake_shells, fuzz_settings,
                       network_state, params_strategy, print_tally, processes,
                       settled_processes, tree_state)
from lab.haproxy import wait_for
from lab.netns import NetnsPool
from ocfshim import run_agent

CORES = [  # ip, nic and prefix that work together on the node
    {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"},
    {"ip": "198.18.0.11"},
    {"ip": "198.18.0.12", "nic": "lan0"},
    {"ip": "198.18.0.13", "nic": "lan0", "cidr_netmask": "25", "iflabel": "vip"},
    {"ip": "198.18.0.14", "nic": "lo", "cidr_netmask": "32"},
    {"ip": "198.18.0.15", "netmask": "255.255.255.0"},
    {"ip": "2001:2::10", "nic": "lan0", "cidr_netmask": "64"},
    {"ip": "2001:2::11"},
    {"ip": "fe80::10", "nic": "lan0", "cidr_netmask": "64"},
]
PLAUSIBLE = {
    "broadcast": ["+", "-"],
    "arp_count": ["1", "2", "3"],
    "arp_interval": ["1", "10", "50"],
    "arp_count_refresh": ["0", "1"],
    "arp_bg": ["true", "false"],
    "arp_sender": ["send_arp", "iputils_arping"],
    "send_arp_opts": ["-A", "-U", "-A -U"],
    "flush_routes": ["true", "false"],
    "nodad": ["true", "false"],
    "noprefixroute": ["true", "false"],
    "preferred_lft": ["forever", "0", "100"],
    "check_link_status": ["true", "false"],
    "run_arping": ["false"],
}
ODD = {  # mistakes an operator could make, and values that are valid only elsewhere
    "ip": ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "::1", "::ffff:198.18.0.10",
           "ff02::1", "198.19.7.7", "fe80::10", "198.18.0.10/24", "2001:2::10%lan0"],
    "nic": ["lo", "eth9", "lan0:1", "-d", "lan0 ", "a" * 16],
    "cidr_netmask": ["0", "32", "33", "129", "255.0.255.0", "/24", "64"],
    "broadcast": ["198.18.0.255", "198.18.0.31", "2001:2::ff", "+-"],
    "iflabel": ["x" * 20, "a b", "vip:1"],
    "arp_count": ["0", "1001", "-1"],
    "arp_interval": ["0", "60001"],
    "preferred_lft": ["9" * 30, "-1", "never"],
    "network_namespace": ["kuth-no-such-namespace", "../x", "-x"],
    "arp_sender": ["my_arp"],
}
# run_arping makes a start wait 3 s for ARP replies; its parsing is fuzzed, its truth is not.
TRUTHY = ("yes", "true", "1", "on", "ja")

# What Pacemaker's recovery makes right for each action when nothing runs.
ALLOWED = {
    "start": {0, 2, 6},
    "stop": {0},
    "probe": {7},
    "monitor": {6, 7},
    "validate-all": {0, 2, 6},
    "meta-data": {0},
}
EXAMPLES = {"start": 300, "stop": 150, "probe": 150, "monitor": 150, "validate-all": 150,
            "meta-data": 30}


def without_run_arping(params: dict) -> dict:
    value = params.get("run_arping")
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if text is not None and text.lower() in TRUTHY:
        params = {**params, "run_arping": "false"}
    return params


PARAMS = params_strategy(CORES, PLAUSIBLE, ODD).map(without_run_arping)


class Lab:
    """A node (lan0 198.18.0.1/24, 2001:2::1/64, DAD off so IPv6 starts are quick) and its
    peer, a state directory, fake shells, and the baseline the examples must return to."""

    def __init__(self, tmp: Path) -> None:
        self.pool = NetnsPool()
        self.node, self.peer = self.pool.new(), self.pool.new()
        self.pool.link(self.node, "lan0", self.peer, "lan0")
        for key in ("all", "default", "lan0"):
            self.node.run("sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        for ns, host in ((self.node, 1), (self.peer, 2)):
            ns.ip("addr", "add", f"198.18.0.{host}/24", "dev", "lan0")
            ns.ip("addr", "add", f"2001:2::{host}/64", "dev", "lan0", "nodad")
        self.state = str(tmp / "rsctmp")
        os.mkdir(self.state, 0o755)
        self.path, self.shell_log = fake_shells(tmp / "fakebin")
        wait_for(lambda: "tentative" not in self.node.ip("addr", "show"), what="link-local DAD")
        self.metadata = self.run("meta-data", {}, {}).stdout
        self.baseline = self.snapshot()
        self.tally = Tally("IPaddr2 property tests (cases per action)")

    def run(self, action: str, params: dict, extra: dict, interval_ms: int | None = None):
        fixed = {"PATH": self.path, "HA_RSCTMP": self.state}
        if interval_ms is not None:
            fixed["OCF_RESKEY_CRM_meta_interval"] = str(interval_ms)
        return run_agent("IPaddr2", action, params, ns=self.node, timeout_ms=5000,
                         extra={**extra, **fixed})

    def snapshot(self) -> tuple:
        return network_state(self.node), tree_state(self.state), processes(self.node)

    def assert_unchanged(self, what: str) -> None:
        network, files, _ = self.snapshot()
        assert network == self.baseline[0], what
        assert files == self.baseline[1], what
        assert settled_processes(self.node, self.baseline[2]) == self.baseline[2], what
        check_lock_files(self.state)

    def close(self) -> None:
        self.pool.cleanup()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request, needs_root):
    lab = Lab(tmp_path_factory.mktemp("fuzz-ipaddr2"))
    try:
        yield lab
    finally:
        lab.close()
        print_tally(request.config, lab.tally)


def check_outcome(lab: Lab, label: str, out, allowed: set[int]) -> None:
    hardening.check_outcome(out, allowed, lab.shell_log, label)


def run_action(lab: Lab, action: str, params: dict, extra: dict) -> None:
    """Run one action and check the invariants; a successful start is followed by a
    monitor (must be 0) and a stop that must restore the baseline."""
    interval = {"probe": 0, "monitor": 10000}.get(action)
    name = "monitor" if action in ("probe", "monitor") else action
    out = lab.run(name, params, extra, interval_ms=interval)
    check_outcome(lab, action, out, ALLOWED[action])
    lab.tally.add(action)
    if action == "meta-data":
        assert out.stdout == lab.metadata
    if action == "start" and out.rc == 0:
        lab.tally.add("start (succeeded, then monitor+stop)")
        check_outcome(lab, "monitor after start",
                      lab.run("monitor", params, extra, interval_ms=10000), {0})
        check_outcome(lab, "stop after start", lab.run("stop", params, extra), {0})
    lab.assert_unchanged(f"{action} {params!r} {extra!r}")


def _property(action: str):
    @fuzz_settings(EXAMPLES[action])
    @given(params=PARAMS, extra=extra_env_strategy())
    def test(lab, params, extra):
        run_action(lab, action, params, extra)
    return test


@pytest.mark.parametrize("action", sorted(EXAMPLES))
def test_any_parameters_and_environment_keep_the_invariants(lab, action):
    _property(action)(lab)


@fuzz_settings(60)
@given(action=st.text(st.characters(blacklist_characters="\0"), max_size=30).filter(lambda a: a not in (
    "start", "stop", "monitor", "status", "validate-all", "meta-data", "usage", "help")))
def test_unknown_actions_are_unimplemented_and_change_nothing(lab, action):
    out = run_agent("IPaddr2", action, {"ip": "198.18.0.10"}, ns=lab.node,
                    extra={"PATH": lab.path, "HA_RSCTMP": lab.state})
    check_outcome(lab, "unknown action", out, {3})
    lab.tally.add("unknown action")
    lab.assert_unchanged(repr(action))


@pytest.mark.parametrize("ip", ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "::1",
                                "ff02::1", "::ffff:198.18.0.10"])
def test_addresses_no_host_can_own_are_not_configured(lab, ip):
    """Found by the property tests: the kernel took a multicast or broadcast VIP (start
    said 0) or refused it only when adding (start said 1, so Pacemaker tried every node)."""
    params = {"ip": ip, "nic": "lan0", "cidr_netmask": "24"}
    out = lab.run("start", params, {})
    check_outcome(lab, ip, out, {6})
    assert "cannot be a floating address" in out.reason
    lab.assert_unchanged(ip)


def test_a_lifetime_beyond_32_bits_is_not_configured(lab):
    """Found by the property tests: `ip` refused it only at start, as ERR_GENERIC."""
    out = lab.run("start", {**CORES[0], "preferred_lft": "4294967296"}, {})
    check_outcome(lab, "preferred_lft", out, {6})
    assert "preferred_lft" in out.reason
    assert lab.run("start", {**CORES[0], "preferred_lft": "4294967295"}, {}).rc == 0
    assert lab.run("stop", CORES[0], {}).rc == 0
    lab.assert_unchanged("preferred_lft")


@pytest.mark.parametrize("instance", ["v" * 300, "\u4e2d" * 100],
                         ids=["ascii-300", "cjk-100"])
def test_a_long_resource_name_still_starts_and_stops(lab, instance):
    """Pacemaker puts no limit on resource names; a file name has 255 bytes. Start failed
    with 'File name too long' (ERR_GENERIC, on every node) when the name made one."""
    params = {**CORES[0], "arp_count": "50", "arp_interval": "100"}
    extra = {"OCF_RESOURCE_INSTANCE": instance}
    check_outcome(lab, "start", lab.run("start", params, extra), {0})
    check_outcome(lab, "monitor", lab.run("monitor", params, extra, interval_ms=10000), {0})
    check_outcome(lab, "stop", lab.run("stop", params, extra), {0})
    lab.assert_unchanged(instance)


@pytest.mark.parametrize("action,params", [
    ("start", {"arp_bg": "false", "arp_count": "1000", "arp_interval": "1000"}),
    ("monitor", {"arp_count_refresh": "1000", "arp_interval": "1000"})])
def test_announcements_in_the_foreground_end_before_the_timeout(lab, action, params):
    """arp_bg=false (or arp_count_refresh on monitor) sent every announcement before
    returning, however long that took: 1000 x 1 s outlived any timeout, so the action failed
    on Pacemaker's timeout. Only what fits in the timeout is sent now."""
    import time
    params = {**CORES[0], **params}
    if action == "monitor":
        assert lab.run("start", CORES[0], {}).rc == 0
    started = time.monotonic()
    out = run_agent("IPaddr2", action, params, ns=lab.node, timeout_ms=3000,
                    extra={"PATH": lab.path, "HA_RSCTMP": lab.state,
                           "OCF_RESKEY_CRM_meta_interval": "10000"} if action == "monitor"
                    else {"PATH": lab.path, "HA_RSCTMP": lab.state}, timeout=10)
    took = time.monotonic() - started
    check_outcome(lab, action, out, {0})
    assert took < 3, f"{action} took {took:.1f} s of its 3 s timeout"
    assert lab.run("stop", CORES[0], {}).rc == 0
    lab.assert_unchanged(action)
