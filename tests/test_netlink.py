"""ocf_lib.adapters.netlink against `ip -j link` / `ip -j addr` inside test namespaces."""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from lab.netns import Netns
from ocf_lib.adapters import netlink
from ocfshim import modules_loaded_by

_CLONE_NEWNET = 0x40000000
_SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254}


@contextlib.contextmanager
def entered(ns: Netns) -> Iterator[None]:
    """Run the body with this thread in ns's network namespace (children inherit it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        try:
            yield
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(home)
        os.close(target)


def _ip_json(ns: Netns, *args: str) -> list[dict]:
    return json.loads(ns.ip("-j", *args))


def _wait_for(predicate, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _by_local(ns: Netns, address: str) -> netlink.Address:
    with entered(ns):
        return next(a for a in netlink.addresses() if a.address == address)


def test_links_match_ip_link(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    with entered(node):
        ours = {link.index: link for link in netlink.links()}
    theirs = _ip_json(node, "link")
    assert sorted(ours) == sorted(entry["ifindex"] for entry in theirs)
    for entry in theirs:
        link = ours[entry["ifindex"]]
        assert link.name == entry["ifname"]
        assert link.mtu == entry["mtu"]
        assert link.operstate == entry["operstate"]
        assert link.mac.hex(":") == entry["address"]
        assert link.up == ("UP" in entry["flags"])
        assert link.lower_up == ("LOWER_UP" in entry["flags"])


def test_addresses_match_ip_addr(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    node.ip("addr", "add", "198.18.0.10/24", "dev", "lan0", "label", "lan0:vip")
    node.ip("addr", "add", "198.18.0.11/25", "brd", "198.18.0.99", "dev", "lan0")
    with entered(node):
        ours = {(a.index, a.address): a for a in netlink.addresses()}
    theirs = [(link["ifindex"], info) for link in _ip_json(node, "addr")
              for info in link["addr_info"]]
    assert sorted(ours) == sorted((index, info["local"]) for index, info in theirs)
    for index, info in theirs:
        address = ours[(index, info["local"])]
        assert address.family == (2 if info["family"] == "inet" else 10)
        assert address.prefixlen == info["prefixlen"]
        assert address.scope == _SCOPES[info["scope"]]
        assert address.label == info.get("label")
        assert address.broadcast == info.get("broadcast")
        assert address.tentative == info.get("tentative", False)
        assert address.dadfailed == info.get("dadfailed", False)
    assert ours[(_index(node, "lan0"), "198.18.0.10")].label == "lan0:vip"
    assert ours[(_index(node, "lan0"), "198.18.0.11")].broadcast == "198.18.0.99"


def _index(ns: Netns, dev: str) -> int:
    return _ip_json(ns, "link", "show", "dev", dev)[0]["ifindex"]


def test_addresses_filter_by_family_and_index(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    lan0 = _index(node, "lan0")
    with entered(node):
        v4 = netlink.addresses(family=2)
        v6_lan0 = netlink.addresses(family=10, index=lan0)
        lo = netlink.addresses(index=1)
    assert {a.address for a in v4} == {"127.0.0.1", "198.18.0.1"}
    assert {a.family for a in v6_lan0} == {10} and {a.index for a in v6_lan0} == {lan0}
    assert "2001:2::1" in {a.address for a in v6_lan0}
    assert {a.address for a in lo} == {"127.0.0.1", "::1"}


def test_new_ipv6_address_is_tentative_until_dad_completes(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    node.ip("addr", "add", "2001:2::50/64", "dev", "lan0")
    assert _by_local(node, "2001:2::50").tentative
    _wait_for(lambda: not _by_local(node, "2001:2::50").tentative, "DAD to finish")
    address = _by_local(node, "2001:2::50")
    assert not address.dadfailed


def test_duplicate_ipv6_address_is_reported_dadfailed(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    peer.ip("addr", "add", "2001:2::77/64", "dev", "lan0")
    _wait_for(lambda: not _by_local(peer, "2001:2::77").tentative, "DAD on the peer")
    node.ip("addr", "add", "2001:2::77/64", "dev", "lan0")
    _wait_for(lambda: _by_local(node, "2001:2::77").dadfailed, "DAD to fail on the node")
    assert not _by_local(peer, "2001:2::77").dadfailed


def test_ipv4_peer_address_reports_the_local_side(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    node.ip("addr", "add", "198.18.1.1", "peer", "198.18.1.2/32", "dev", "lan0")
    assert _by_local(node, "198.18.1.1").prefixlen == 32


def test_link_state_follows_admin_state_and_carrier(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    with entered(node):
        assert netlink.link_by_name("lan0").lower_up  # type: ignore[union-attr]
    peer.ip("link", "set", "lan0", "down")
    with entered(node):
        link = netlink.link_by_name("lan0")
    assert link is not None and link.up and not link.lower_up
    node.ip("link", "set", "lan0", "down")
    with entered(node):
        link = netlink.link_by_name("lan0")
    assert link is not None and not link.up and link.operstate == "DOWN"


@pytest.mark.parametrize("name", ["lan9", "lan0:vip"])  # impossible names: test_netlink_unit
def test_link_by_name_returns_none_for_absent_names(lan: tuple[Netns, Netns], name: str) -> None:
    node, _ = lan
    with entered(node):
        assert netlink.link_by_name(name) is None


def test_link_by_name_finds_the_interface(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    with entered(node):
        link = netlink.link_by_name("lan0")
    assert link is not None and link.name == "lan0" and link.index == _index(node, "lan0")


def test_dumps_spanning_many_messages_are_read_to_the_end(netns_pool) -> None:  # type: ignore[no-untyped-def]
    ns = netns_pool.new()
    ns.run("ip", "link", "add", "many0", "type", "veth", "peer", "name", "many1")
    batch = "".join(f"addr add 198.18.{i // 250}.{i % 250 + 1}/32 dev many0\n" for i in range(1000))
    subprocess.run(["ip", "-n", ns.name, "-batch", "-"], input=batch, text=True, check=True)
    with entered(ns):
        found = netlink.addresses(family=2)
        links = netlink.links()
    assert len([a for a in found if a.address.startswith("198.18.")]) == 1000
    assert {"lo", "many0", "many1"} == {link.name for link in links}


def test_netlink_loads_no_expensive_module() -> None:
    loaded = modules_loaded_by("import ocf_lib.adapters.netlink as n; n.addresses(); n.links()")
    assert loaded <= {"ocf_lib", "ocf_lib.adapters", "ocf_lib.adapters.netlink", "__future__",
                      "_socket", "struct", "_struct"}
