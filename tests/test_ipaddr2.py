"""ocf:kuth:IPaddr2 driven for real: iproute2 inside network namespaces.

`lan` gives two hosts on one link: node (lan0: 198.18.0.1/24, 2001:2::1/64) and peer
(lan0: 198.18.0.2/24, 2001:2::2/64). The agent runs inside node's namespace.
"""
import json
import os
import time

import pytest

from ocfshim import (HEAVY_MODULES, assert_clean_failure, imported_modules, mac_of,
                     neighbour_mac, run_agent)
from ocfshim import ipaddr2 as agent

V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
V6 = {"ip": "2001:2::10", "nic": "lan0", "cidr_netmask": "64"}


@pytest.mark.parametrize("params,expected", [(V4, "198.18.0.10/24"), (V6, "2001:2::10/64")],
                         ids=["ipv4", "ipv6"])
def test_start_monitor_stop_cycle(lan, params, expected):
    node, _ = lan
    assert agent("monitor", params, node, interval_ms=0).rc == 7
    out = agent("start", params, node)
    assert out.rc == 0, out
    assert expected in node.addresses("lan0")
    assert agent("monitor", params, node, interval_ms=10000).rc == 0
    assert agent("start", params, node).rc == 0, "start is idempotent"
    assert node.addresses("lan0").count(expected) == 1
    assert agent("stop", params, node).rc == 0
    assert expected not in node.addresses("lan0")
    assert agent("monitor", params, node, interval_ms=10000).rc == 7
    assert agent("stop", params, node).rc == 0, "stop is idempotent"


def test_nic_and_prefix_found_from_routes_like_findif(lan):
    node, _ = lan
    out = agent("start", {"ip": "198.18.0.11"}, node)
    assert out.rc == 0, out
    assert "198.18.0.11/24" in node.addresses("lan0")
    detail = json.loads(node.ip("-j", "addr", "show", "dev", "lan0"))[0]["addr_info"]
    vip = [a for a in detail if a["local"] == "198.18.0.11"][0]
    assert vip.get("broadcast") == "198.18.0.255"
    assert agent("monitor", {"ip": "198.18.0.11"}, node).rc == 0
    assert agent("stop", {"ip": "198.18.0.11"}, node).rc == 0
    assert "198.18.0.11/24" not in node.addresses("lan0")


def test_prefix_found_for_a_given_nic(lan):
    node, _ = lan
    params = {"ip": "198.18.0.13", "nic": "lan0"}
    assert agent("start", params, node).rc == 0
    assert "198.18.0.13/24" in node.addresses("lan0")
    assert agent("stop", params, node).rc == 0


def test_guide_style_configuration_with_label_and_broadcast(lan):
    node, _ = lan
    params = {"ip": "198.18.0.20", "broadcast": "198.18.0.31", "nic": "lan0",
              "cidr_netmask": "27", "iflabel": "vip"}
    assert agent("start", params, node).rc == 0
    detail = json.loads(node.ip("-j", "addr", "show", "dev", "lan0"))[0]["addr_info"]
    vip = [a for a in detail if a["local"] == "198.18.0.20"][0]
    assert (vip["prefixlen"], vip["broadcast"], vip["label"]) == (27, "198.18.0.31", "lan0:vip")
    assert agent("stop", params, node).rc == 0


def test_takeover_is_announced_to_the_peer(netns_pool):
    """Three hosts on a switch; the VIP moves from `old` to `new`: the client's neighbour
    table follows at once, without waiting for its entry to expire."""
    old, new, client = netns_pool.new(), netns_pool.new(), netns_pool.new()
    netns_pool.switch([old, new, client])
    for number, host in enumerate((old, new, client), start=1):
        host.ip("addr", "add", f"198.18.0.{number}/24", "dev", "lan0")
    assert agent("start", {**V4, "arp_bg": "false"}, old).rc == 0
    client.run("ping", "-c1", "-W2", "198.18.0.10")
    assert neighbour_mac(client, "198.18.0.10") == mac_of(old)
    assert agent("stop", V4, old).rc == 0
    out = agent("start", {**V4, "arp_count": "2", "arp_interval": "50"}, new)
    assert out.rc == 0, out
    for _ in range(50):  # the announcer runs in the background (arp_bg defaults to true)
        if neighbour_mac(client, "198.18.0.10") == mac_of(new):
            break
        time.sleep(0.02)
    assert neighbour_mac(client, "198.18.0.10") == mac_of(new)
    client.run("ping", "-c1", "-W2", "198.18.0.10")


@pytest.mark.parametrize("opts", ["", "-A"], ids=["request", "reply"])
def test_gratuitous_arp_modes_update_a_stale_neighbour(lan, opts):
    node, peer = lan
    peer.ip("neigh", "replace", "198.18.0.10", "lladdr", "02:00:00:00:00:99", "dev", "lan0",
            "nud", "stale")
    out = agent("start", {**V4, "arp_bg": "false", "arp_count": "2", "arp_interval": "50",
                          "send_arp_opts": opts}, node)
    assert out.rc == 0, out
    assert neighbour_mac(peer, "198.18.0.10") == mac_of(node)


def test_unsolicited_na_updates_a_stale_ipv6_neighbour(lan):
    node, peer = lan
    peer.ip("-6", "neigh", "replace", "2001:2::10", "lladdr", "02:00:00:00:00:99", "dev",
            "lan0", "nud", "stale")
    out = agent("start", {**V6, "arp_count": "2", "arp_interval": "50"}, node)
    assert out.rc == 0, out
    assert neighbour_mac(peer, "2001:2::10") == mac_of(node)


def test_ipv6_dad_failure_fails_start_and_removes_the_address(lan):
    node, peer = lan
    peer.ip("addr", "add", "2001:2::10/64", "dev", "lan0", "nodad")
    out = agent("start", V6, node)
    assert_clean_failure(out, 1)
    assert "duplicate address detection" in out.reason
    assert "2001:2::10/64" not in node.addresses("lan0")


def test_ipv6_nodad_is_usable_at_once(lan):
    node, _ = lan
    assert agent("start", {**V6, "nodad": "true"}, node).rc == 0
    detail = json.loads(node.ip("-j", "addr", "show", "dev", "lan0"))[0]["addr_info"]
    vip = [a for a in detail if a["local"] == "2001:2::10"][0]
    assert not vip.get("tentative")
    assert agent("stop", V6, node).rc == 0


def test_run_arping_refuses_an_address_in_use(lan):
    node, peer = lan
    peer.ip("addr", "add", "198.18.0.10/24", "dev", "lan0")
    out = agent("start", {**V4, "run_arping": "true"}, node)
    assert_clean_failure(out, 1)
    assert "already in use" in out.reason
    assert "198.18.0.10/24" not in node.addresses("lan0")


def test_run_arping_allows_a_free_address(lan):
    node, _ = lan
    assert agent("start", {**V4, "run_arping": "true"}, node).rc == 0
    assert agent("stop", V4, node).rc == 0


def test_start_sets_a_link_that_is_down_up(lan):
    node, _ = lan
    node.ip("link", "set", "lan0", "down")
    assert agent("start", V4, node).rc == 0
    flags = node.ip("link", "show", "lan0").partition("<")[2].partition(">")[0].split(",")
    assert "UP" in flags
    assert agent("stop", V4, node).rc == 0


def test_link_down_fails_monitor_with_reason(lan):
    node, peer = lan
    assert agent("start", V4, node).rc == 0
    peer.ip("link", "set", "lan0", "down")
    out = agent("monitor", V4, node, interval_ms=10000)
    assert_clean_failure(out, 1)
    assert "no carrier" in out.reason
    assert agent("monitor", {**V4, "check_link_status": "false"}, node,
                 interval_ms=10000).rc == 0
    assert agent("stop", V4, node).rc == 0


def test_address_removed_by_hand_is_not_running(lan):
    node, _ = lan
    assert agent("start", V4, node).rc == 0
    node.ip("addr", "del", "198.18.0.10/24", "dev", "lan0")
    assert agent("monitor", V4, node, interval_ms=10000).rc == 7
    assert agent("stop", V4, node).rc == 0


def test_vanished_nic_is_not_running_and_stop_succeeds(lan):
    node, _ = lan
    assert agent("start", V4, node).rc == 0
    node.ip("link", "del", "lan0")
    assert agent("monitor", V4, node, interval_ms=10000).rc == 7
    assert agent("monitor", V4, node, interval_ms=0).rc == 7
    assert agent("stop", V4, node).rc == 0


def test_missing_nic_on_this_node(lan):
    node, _ = lan
    params = {**V4, "nic": "eth9"}
    out = agent("start", params, node)
    assert_clean_failure(out, 2)
    assert "eth9" in out.reason and "does not exist" in out.reason
    assert agent("monitor", params, node, interval_ms=0).rc == 7
    assert agent("stop", params, node).rc == 0
    assert_clean_failure(agent("validate-all", params, node), 2)


def test_no_route_to_the_address_without_nic(lan):
    node, _ = lan
    out = agent("start", {"ip": "198.19.5.5"}, node)
    assert_clean_failure(out, 2)
    assert "198.19.5.5" in out.reason


def test_arp_count_refresh_announces_on_monitor(lan):
    node, peer = lan
    assert agent("start", {**V4, "arp_bg": "false", "arp_count": "1"}, node).rc == 0
    peer.ip("neigh", "replace", "198.18.0.10", "lladdr", "02:00:00:00:00:99", "dev", "lan0",
            "nud", "stale")
    assert agent("monitor", {**V4, "arp_count_refresh": "1"}, node, interval_ms=10000).rc == 0
    assert neighbour_mac(peer, "198.18.0.10") == mac_of(node)
    assert agent("stop", V4, node).rc == 0


def test_stop_ends_a_background_announcer(lan):
    node, _ = lan
    params = {**V4, "arp_bg": "true", "arp_count": "100", "arp_interval": "100"}
    assert agent("start", params, node).rc == 0
    before = set(node.pids())
    assert before, "the background announcer runs in the node's namespace"
    assert agent("stop", params, node).rc == 0
    assert not before & set(node.pids()), "no announcer left after stop (its refuser may be)"


def test_network_namespace_parameter(netns_pool):
    ns = netns_pool.new()
    ns.ip("link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
    ns.ip("link", "set", "lan0", "up")
    ns.ip("link", "set", "lan1", "up")
    params = {**V4, "network_namespace": ns.name}
    out = run_agent("IPaddr2", "start", params)
    assert out.rc == 0, out
    assert "198.18.0.10/24" in ns.addresses("lan0")
    assert run_agent("IPaddr2", "monitor", params, interval_ms=10000).rc == 0
    assert run_agent("IPaddr2", "stop", params).rc == 0
    assert "198.18.0.10/24" not in ns.addresses("lan0")
    missing = {**V4, "network_namespace": "kuth-no-such-ns"}
    assert run_agent("IPaddr2", "monitor", missing, interval_ms=0).rc == 7
    assert run_agent("IPaddr2", "stop", missing).rc == 0
    assert_clean_failure(run_agent("IPaddr2", "start", missing), 2)


def test_clusterip_clone_is_refused(lan):
    node, _ = lan
    out = agent("start", V4, node, extra={"OCF_RESKEY_CRM_meta_clone": "0",
                                          "OCF_RESKEY_CRM_meta_clone_max": "2"})
    assert_clean_failure(out, 6)
    assert "CLUSTERIP" in out.reason
    assert "198.18.0.10/24" not in node.addresses("lan0")


def test_monitor_imports_only_cheap_modules(lan):
    """Monitor runs every few seconds on every node: it must not pay for heavy imports."""
    node, _ = lan
    assert agent("start", V4, node).rc == 0
    imported = imported_modules("IPaddr2", "monitor", V4, ns=node, interval_ms=10000)
    assert "ocf_lib.adapters.netlink" in imported
    assert not imported & (HEAVY_MODULES | {"struct"}), sorted(imported)  # _struct serves
    assert agent("stop", V4, node).rc == 0


def test_stop_imports_only_cheap_modules(lan):
    """Stop lies on the clients' path in a failover: it resets the connections, refuses
    new ones and removes the address without heavy imports (array would load collections;
    command is for `ip` runs, which stop does not make)."""
    node, _ = lan
    assert agent("start", V4, node).rc == 0
    imported = imported_modules("IPaddr2", "stop", V4, ns=node)
    assert "ocf_lib.adapters.refuse" in imported
    assert not imported & (HEAVY_MODULES | {"array", "ocf_lib.adapters.command"}), \
        sorted(imported)
    assert "198.18.0.10/24" not in node.addresses("lan0")


def test_missing_ip_binary_is_not_installed(lan, tmp_path):
    """A node without iproute2's `ip`: start says ERR_INSTALLED with the program's name."""
    node, _ = lan
    out = agent("start", {**V4, "nic": "lan0", "cidr_netmask": ""}, node,
                extra={"PATH": str(tmp_path)})
    assert_clean_failure(out, 5)
    assert "ip is not installed" in out.reason
    out = agent("validate-all", V4, node, extra={"PATH": str(tmp_path)})
    assert_clean_failure(out, 5)
    assert "iproute2" in out.reason
    assert "198.18.0.10/24" not in node.addresses("lan0")


# -- connections on the address when it leaves --------------------------------------------

HOLDING_SERVER = """
import socket, sys, time
family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
if family == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 clients as ::ffff:a.b.c.d
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7000))
s.listen()
print('listening', flush=True)
held = [s.accept()[0] for _ in range(2)]
time.sleep(60)
"""
# Connects to the VIP and to the node's own address, then waits on both like an idle watch.
IDLE_CLIENT = """
import socket, sys
vip, own = (socket.create_connection((a, 7000), timeout=5) for a in sys.argv[1:3])
print('open', flush=True)
sys.stdin.readline()
try:
    print('vip', vip.recv(1) or 'eof', flush=True)
except OSError as err:
    print('vip', type(err).__name__, flush=True)
own.setblocking(False)
try:
    print('own', own.recv(1) or 'eof', flush=True)
except BlockingIOError:
    print('own open', flush=True)
"""


def held_connections(node, peer, vip, own, bind):
    """A server in node holding one connection from peer to vip and one to own."""
    import subprocess
    server = node.popen("/usr/bin/python3", "-c", HOLDING_SERVER, bind, stdout=subprocess.PIPE,
                        text=True)
    assert server.stdout.readline().strip() == "listening"
    client = peer.popen("/usr/bin/python3", "-c", IDLE_CLIENT, vip, own, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "open"
    return server, client


def assert_only_the_vip_connection_reset(out, client):
    """The action succeeded and reset the connection on the address, not the other one."""
    assert out.rc == 0, out
    assert "reset 1 connection(s)" in out.stderr
    assert what_the_client_saw(client) == ["vip ConnectionResetError", "own open"]


def what_the_client_saw(client):
    client.stdin.write("go\n")
    client.stdin.flush()
    out, _ = client.communicate(timeout=30)
    return out.split("\n")[:2]


@pytest.mark.parametrize("params,own,bind", [(V4, "198.18.0.1", "0.0.0.0"),
                                             (V4, "198.18.0.1", "::"),
                                             (V6, "2001:2::1", "::")],
                         ids=["ipv4", "ipv4-on-a-dual-stack-socket", "ipv6"])
def test_stop_resets_the_connections_on_the_address_and_no_other(lan, params, own, bind):
    node, peer = lan
    assert agent("start", {**params, "nodad": "true"}, node).rc == 0
    server, client = held_connections(node, peer, params["ip"], own, bind)
    try:
        out = agent("stop", params, node)
        assert_only_the_vip_connection_reset(out, client)
    finally:
        server.kill()
        client.kill()


def test_stop_leaves_the_connections_when_told_to(lan):
    node, peer = lan
    params = {**V4, "reset_connections": "false"}
    assert agent("start", params, node).rc == 0
    server, client = held_connections(node, peer, V4["ip"], "198.18.0.1", "0.0.0.0")
    try:
        out = agent("stop", params, node)
        assert out.rc == 0, out
        assert "reset" not in out.stderr
        still = node.run("ss", "-Htn", "state", "established", "src", V4["ip"]).stdout
        assert len(still.splitlines()) == 1, "the connection on the VIP is still there"
    finally:
        server.kill()
        client.kill()


def test_a_kernel_that_cannot_destroy_sockets_is_a_warning_not_a_failure(monkeypatch):
    from ocf_lib.adapters import iproute, sock_diag
    from ocf_lib.logic import vip as vips

    def unsupported(ip):
        raise sock_diag.Unsupported(95, "this kernel cannot destroy sockets")

    class Log:
        def __init__(self):
            self.warnings = []

        def warning(self, text):
            self.warnings.append(text)

    monkeypatch.setattr(iproute, "delete_local_route", lambda dev, ip: None)  # not on this host
    monkeypatch.setattr(sock_diag, "reset", unsupported)
    log = Log()
    vips.reset_connections(vips.parse("198.18.0.10", "lan0", "24", "", "", "forever"), log)
    assert log.warnings == ["connections on 198.18.0.10 left open: [Errno 95] this kernel "
                            "cannot destroy sockets"]


def test_without_its_local_route_the_node_takes_no_new_connection_but_still_resets(lan):
    """What stop relies on between its reset and the address's removal: with the address's
    local route gone, a client reconnecting at once is not taken (it would land on a
    connection nobody answers), and the reset of the old connection still gets out."""
    node, peer = lan
    assert agent("start", V4, node).rc == 0
    server, client = held_connections(node, peer, V4["ip"], "198.18.0.1", "0.0.0.0")
    try:
        node.ip("route", "del", "local", V4["ip"], "dev", "lan0", "table", "local")
        refused = peer.run("/usr/bin/python3", "-c",
                           "import socket; socket.create_connection(('198.18.0.10', 7000), 1)",
                           check=False)
        assert "TimeoutError" in refused.stderr, "no local route: the SYN goes unanswered"
        out = agent("stop", V4, node)
        assert out.rc == 0, out
        assert "new connections" in out.stderr  # the route was already gone: a warning
        assert what_the_client_saw(client) == ["vip ConnectionResetError", "own open"]
    finally:
        server.kill()
        client.kill()


def _wait_for(predicate, what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {what}"
        time.sleep(0.02)


# -- reload: a parameter changed under a running address -------------------------------------

def detail(ns, ip):
    """The address as `ip -j addr` shows it (None when it is on no interface of ns)."""
    for link in json.loads(ns.ip("-j", "addr", "show")):
        for address in link.get("addr_info", []):
            if address["local"] == ip:
                return {**address, "dev": link["ifname"]}
    return None


def add_second_nic(ns, name="lan5"):
    """Another interface in ns (one end of a veth pair whose other end stays in ns too)."""
    ns.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    ns.ip("link", "set", name, "up")
    ns.ip("link", "set", f"{name}p", "up")


def established_on(ns, ip):
    return ns.run("ss", "-Htn", "state", "established", "src", ip).stdout.splitlines()


# Every parameter whose change leaves the address as it is, with a value that differs from V4's.
IN_PLACE = {"arp_count": "6", "arp_interval": "50", "arp_count_refresh": "2", "arp_bg": "false",
            "arp_sender": "send_arp", "send_arp_opts": "-A", "flush_routes": "true",
            "run_arping": "true", "watch": "false", "reset_connections": "false",
            "refuse_after_stop": "0", "check_link_status": "false", "nodad": "true",
            "preferred_lft": "600"}


def test_reload_of_any_other_setting_keeps_the_address_and_its_connections(lan):
    """nodad and preferred_lft too, for IPv4: the kernel keeps them for IPv6 only."""
    node, peer = lan
    assert agent("start", V4, node).rc == 0
    before = detail(node, V4["ip"])
    server, client = held_connections(node, peer, V4["ip"], "198.18.0.1", "0.0.0.0")
    try:
        for name, value in IN_PLACE.items():
            out = agent("reload", {**V4, name: value}, node)
            assert out.rc == 0, (name, out)
            assert "reloaded 198.18.0.10/24 on lan0: the address stays" in out.stderr, name
            assert "stopped" not in out.stderr and "started" not in out.stderr, name
        out = agent("reload", {**V4, **IN_PLACE}, node)
        assert out.rc == 0 and "the address stays" in out.stderr, out
        assert detail(node, V4["ip"]) == before
        assert len(established_on(node, V4["ip"])) == 1, "the connection on the VIP stays"
    finally:
        server.kill()
        client.kill()
    assert agent("stop", V4, node).rc == 0


MOVES = [  # (parameters, the change, what `ip -j addr` shows of the address afterwards)
    (V4, {"nic": "lan5"}, {"dev": "lan5", "prefixlen": 24}),
    (V4, {"cidr_netmask": "25"}, {"dev": "lan0", "prefixlen": 25, "broadcast": "198.18.0.255"}),
    ({**V4, "cidr_netmask": ""}, {"netmask": "255.255.255.128"}, {"prefixlen": 25}),
    (V4, {"broadcast": "-"}, {"prefixlen": 24, "broadcast": None}),
    (V4, {"iflabel": "vip"}, {"label": "lan0:vip"}),
    (V4, {"noprefixroute": "true"}, {"noprefixroute": True}),
    ({**V6, "nodad": "true"}, {"preferred_lft": "600"}, {"valid_life_time": 4294967295}),
    ({**V6, "nodad": "true"}, {"nodad": "false"}, {"nodad": None, "prefixlen": 64}),
]


@pytest.mark.parametrize("params,change,after", MOVES,
                         ids=[next(iter(change)) for _, change, _ in MOVES])
def test_reload_of_where_or_how_the_address_sits_moves_it(lan, params, change, after):
    node, _ = lan
    add_second_nic(node)
    assert agent("start", params, node).rc == 0
    out = agent("reload", {**params, **change}, node)
    assert out.rc == 0, out
    assert f"reload: {next(iter(change)).replace('iflabel', 'label')}" in out.stderr \
        or next(iter(change)) == "netmask" and "reload: cidr_netmask" in out.stderr, out.stderr
    assert "stopped" in out.stderr and "started" in out.stderr
    shown = detail(node, params["ip"])
    assert {key: shown.get(key) for key in after} == after
    if "preferred_lft" in change:
        assert 590 <= shown["preferred_life_time"] <= 600
    assert agent("reload", {**params, **change}, node).stderr.count("the address stays") == 1
    assert agent("stop", {**params, **change}, node).rc == 0
    assert detail(node, params["ip"]) is None


def test_reload_with_a_new_nic_resets_the_connections_as_stop_does(lan):
    node, peer = lan
    add_second_nic(node)
    assert agent("start", V4, node).rc == 0
    server, client = held_connections(node, peer, V4["ip"], "198.18.0.1", "0.0.0.0")
    try:
        out = agent("reload", {**V4, "nic": "lan5"}, node)
        assert_only_the_vip_connection_reset(out, client)
    finally:
        server.kill()
        client.kill()
    assert "198.18.0.10/24" in node.addresses("lan5")
    assert "198.18.0.10/24" not in node.addresses("lan0")
    assert agent("stop", {**V4, "nic": "lan5"}, node).rc == 0


def test_reload_with_values_that_put_the_address_where_it_is_moves_nothing(lan):
    """Found by the routes (nic and prefix empty), then named: the same place."""
    node, peer = lan
    found = {"ip": V4["ip"]}
    assert agent("start", found, node).rc == 0
    server, client = held_connections(node, peer, V4["ip"], "198.18.0.1", "0.0.0.0")
    try:
        named = {**found, "nic": "lan0", "cidr_netmask": "255.255.255.0", "broadcast": "+"}
        out = agent("reload", named, node)
        assert out.rc == 0 and "the address stays" in out.stderr, out
        assert len(established_on(node, V4["ip"])) == 1
    finally:
        server.kill()
        client.kill()
    assert agent("stop", found, node).rc == 0


def test_reload_of_an_address_started_without_a_record_asks_the_kernel(lan):
    """An address started by an earlier version of the agent has no placement record: where
    it is comes from the kernel, and the rest is taken to be as configured."""
    from ocfshim import STATE_DIR
    record = os.path.join(STATE_DIR, "kuth-IPaddr2-test-rsc.placement")
    node, _ = lan
    add_second_nic(node)
    assert agent("start", V4, node).rc == 0
    os.unlink(record)
    out = agent("reload", {**V4, "arp_count": "6", "iflabel": "vip"}, node)
    assert out.rc == 0 and "the address stays" in out.stderr, out
    assert os.path.exists(record), "written again"
    os.unlink(record)
    out = agent("reload", {**V4, "nic": "lan5"}, node)
    assert out.rc == 0 and "reload: nic changed" in out.stderr, out
    assert "198.18.0.10/24" in node.addresses("lan5")
    assert agent("stop", {**V4, "nic": "lan5"}, node).rc == 0
    assert not os.path.exists(record), "stop forgets it"


def test_reload_of_an_address_that_is_not_here_is_not_running(lan):
    node, _ = lan
    out = agent("reload", V4, node)
    assert_clean_failure(out, 7)
    assert "not on this node" in out.reason
    assert agent("start", V4, node).rc == 0
    node.ip("addr", "del", "198.18.0.10/24", "dev", "lan0")
    assert_clean_failure(agent("reload", {**V4, "arp_count": "6"}, node), 7)
    assert "198.18.0.10/24" not in node.addresses("lan0"), "reload adds nothing back"
    assert agent("stop", V4, node).rc == 0


def test_reload_into_another_network_namespace_moves_the_address_there(netns_pool):
    first, second = netns_pool.new(), netns_pool.new()
    for ns in (first, second):
        add_second_nic(ns, "lan0")
    params = {**V4, "network_namespace": first.name}
    assert run_agent("IPaddr2", "start", params).rc == 0
    assert "198.18.0.10/24" in first.addresses("lan0")
    moved = {**V4, "network_namespace": second.name}
    out = run_agent("IPaddr2", "reload", moved)
    assert out.rc == 0 and "reload: network_namespace changed" in out.stderr, out
    assert "198.18.0.10/24" in second.addresses("lan0")
    assert "198.18.0.10/24" not in first.addresses("lan0")
    out = run_agent("IPaddr2", "reload", {**moved, "arp_count": "6"})
    assert out.rc == 0 and "the address stays" in out.stderr, out
    assert run_agent("IPaddr2", "stop", moved).rc == 0
    assert "198.18.0.10/24" not in second.addresses("lan0")


def test_reload_re_arms_the_watcher_with_the_new_settings(lan, tmp_path):
    """The watcher of a running address takes a changed check_link_status or
    reset_connections at once, goes with watch=false and comes back with watch=true."""
    from ocfshim import STATE_DIR
    from test_watcher import Pacemaker
    pcmk = Pacemaker(tmp_path)
    node, _ = lan
    watched = os.path.join(STATE_DIR, f"kuth-watch-{os.stat(f'/run/netns/{node.name}').st_ino}"
                                      ".kuth-IPaddr2-test-rsc")
    params = {**V4, "reset_connections": "false"}
    try:
        assert agent("start", params, node, extra=pcmk.env).rc == 0
        assert open(watched).read().endswith("ip=198.18.0.10\nnic=lan0\ncheck_link=1\nhand_over=0\n")
        assert agent("reload", {**params, "check_link_status": "false"}, node,
                     extra=pcmk.env).rc == 0
        assert open(watched).read().endswith("ip=198.18.0.10\nnic=lan0\ncheck_link=0\nhand_over=0\n")
        assert agent("reload", {**params, "watch": "false"}, node, extra=pcmk.env).rc == 0
        assert not os.path.exists(watched)
        assert agent("reload", params, node, extra=pcmk.env).rc == 0
        assert open(watched).read().endswith("ip=198.18.0.10\nnic=lan0\ncheck_link=1\nhand_over=0\n")
        time.sleep(0.3)
        assert pcmk.reports() == [], "no report for a reload"
        node.ip("addr", "del", "198.18.0.10/24", "dev", "lan0")
        _wait_for(pcmk.reports, "the re-armed watcher reports the address removed")
    finally:
        agent("stop", params, node, extra=pcmk.env)


@pytest.mark.parametrize("broadcast,expected", [("", "198.18.0.255"), ("+", "198.18.0.15")],
                         ids=["network's", "plus"])
def test_a_prefix_longer_than_the_network_keeps_the_network_broadcast(lan, broadcast,
                                                                       expected):
    """A /28 VIP on lan0's /24 (heartbeat's findif does the same): broadcast .15 would make
    the host that owns 198.18.0.15 unreachable from the node. '+' asks for the /28's."""
    node, _ = lan
    params = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "28",
              "broadcast": broadcast}
    assert agent("start", params, node).rc == 0
    detail = json.loads(node.ip("-j", "addr", "show", "dev", "lan0"))[0]["addr_info"]
    vip = [a for a in detail if a["local"] == "198.18.0.10"][0]
    assert (vip["prefixlen"], vip["broadcast"]) == (28, expected)
    assert agent("stop", params, node).rc == 0
