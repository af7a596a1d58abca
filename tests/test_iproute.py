"""ocf_lib.adapters.iproute: argument guards, changes that behave and fail as `ip`'s do,
and findif's interface lookup.

The recorded route tables under data/iproute/ come from `_build_routes` below, dumped with
`ip -j -4|-6 route show table main|local` (pretty-printed); the live tests build the
same topology in a namespace and expect the same answers, so a drifting recording shows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lab.netns import Netns, NetnsPool
from ocf_lib.adapters import command, iproute, netlink
from ocf_lib.adapters.iproute import Found
from test_netlink import entered

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "iproute")


def _build_routes(ns: Netns) -> None:
    """lan0 198.18.0.0/24, lan1 198.18.0.128/25 (longer, overlapping), lan2 198.19.0.0/16
    with a gateway route inside it, an unreachable and a host route, the same prefix on
    two links with different metrics, and IPv6 nets with a gateway and a host route."""
    for i in range(3):
        ns.ip("link", "add", f"lan{i}", "type", "veth", "peer", "name", f"peer{i}")
        ns.ip("link", "set", f"lan{i}", "up")
        ns.ip("link", "set", f"peer{i}", "up")
    for args in (("addr", "add", "198.18.0.1/24", "dev", "lan0"),
                 ("addr", "add", "198.18.0.129/25", "dev", "lan1"),
                 ("addr", "add", "198.19.0.1/16", "dev", "lan2"),
                 ("addr", "add", "2001:2::1/64", "dev", "lan0", "nodad"),
                 ("addr", "add", "2001:2:0:1::1/64", "dev", "lan1", "nodad"),
                 ("route", "add", "default", "via", "198.18.0.254"),
                 ("route", "add", "198.19.5.0/24", "via", "198.18.0.254"),
                 ("route", "add", "unreachable", "198.18.9.0/24"),
                 ("route", "add", "198.18.7.7", "dev", "lan1"),
                 ("route", "add", "198.18.20.0/24", "dev", "lan1", "metric", "100"),
                 ("route", "add", "198.18.20.0/24", "dev", "lan2", "metric", "50"),
                 ("-6", "route", "add", "2001:2:0:5::/64", "via", "2001:2::fe"),
                 ("-6", "route", "add", "2001:2:0:7::7", "dev", "lan1"),
                 ("-6", "route", "add", "default", "via", "2001:2::fe")):
        ns.ip(*args)


NO_ROUTE = "no interface has a route to {}; set nic= and cidr_netmask="

# (address, prefixlen, nic) -> Found, or the FindifError message expected
FINDIF_CASES = [
    (("198.18.0.50", None, None), Found("lan0", 24, "198.18.0.255")),
    (("198.18.0.200", None, None), Found("lan1", 25, "198.18.0.255")),
    (("198.18.0.200", 24, None), Found("lan0", 24, "198.18.0.255")),
    (("198.18.0.200", 28, None), Found("lan1", 28, "198.18.0.207")),
    (("198.18.0.200", None, "lan0"), Found("lan0", 24, "198.18.0.255")),
    (("198.18.0.50", 31, None), Found("lan0", 31, None)),
    (("198.19.5.5", None, None), Found("lan2", 16, "198.19.255.255")),
    (("198.18.20.5", None, None), Found("lan2", 24, "198.18.20.255")),
    (("127.0.0.2", None, None), Found("lo", 8, "127.255.255.255")),
    (("2001:2::50", None, None), Found("lan0", 64, None)),
    (("2001:2:0:1:0::5", None, None), Found("lan1", 64, None)),
    (("fe80::5", None, "lan1"), Found("lan1", 64, None)),
    (("fe80::5", 80, "lan1"), Found("lan1", 80, None)),
    (("198.18.9.9", None, None), NO_ROUTE.format("198.18.9.9")),
    (("198.18.7.7", None, None), NO_ROUTE.format("198.18.7.7")),
    (("198.20.0.1", None, None), NO_ROUTE.format("198.20.0.1")),
    (("198.19.5.5", 8, None), NO_ROUTE.format("198.19.5.5/8")),
    (("2001:2:0:5::5", None, None), NO_ROUTE.format("2001:2:0:5::5")),
    (("2001:2:0:7::7", None, None), NO_ROUTE.format("2001:2:0:7::7")),
    (("198.18.0.50", None, "lan1"), "nic lan1 has no on-link route covering 198.18.0.50; "
                                     "set cidr_netmask=, or the nic that has such a route"),
    (("fe80::5", None, None), "fe80::5 is an IPv6 link-local address, valid on one link only; "
                              "set nic="),
    (("fe80::5", 64, None), "fe80::5 is an IPv6 link-local address, valid on one link only; "
                            "set nic="),
]


def _case_id(case: tuple) -> str:  # type: ignore[type-arg]
    return "-".join(str(part) for part in case[0] if part is not None)


def _check(args: tuple, expected: Found | str) -> None:  # type: ignore[type-arg]
    address, prefixlen, nic = args
    if isinstance(expected, Found):
        assert iproute.find_interface(address, prefixlen, nic=nic) == expected
    else:
        with pytest.raises(iproute.FindifError) as caught:
            iproute.find_interface(address, prefixlen, nic=nic)
        assert str(caught.value) == expected


@pytest.fixture
def recorded_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """find_interface reads the recorded tables; running anything would be a bug."""
    def routes(family: int, table: str, proto: str | None = None) -> list[dict]:
        with open(os.path.join(DATA, f"route-{4 if family == 2 else 6}-{table}.json")) as f:
            return json.load(f)
    monkeypatch.setattr(iproute, "_routes", routes)
    monkeypatch.setattr(command, "run", _must_not_run)


def _must_not_run(argv: list[str], timeout: float | None = None) -> command.CommandResult:
    raise AssertionError(f"ran {argv}")


def _must_not_change(*request: object) -> None:
    raise AssertionError(f"sent {request}")


@pytest.mark.parametrize("args, expected", FINDIF_CASES, ids=[_case_id(c) for c in FINDIF_CASES])
def test_find_interface_on_recorded_routes(recorded_routes: None, args: tuple,  # type: ignore[type-arg]
                                           expected: Found | str) -> None:
    _check(args, expected)


def test_find_interface_with_nic_and_prefix_asks_nothing(recorded_routes: None) -> None:
    assert iproute.find_interface("198.18.0.50", 32, nic="lan9") == Found("lan9", 32, None)
    assert iproute.find_interface("198.18.0.50", 26, nic="lan9") == Found("lan9", 26,
                                                                          "198.18.0.63")


@pytest.mark.parametrize("address, prefixlen", [
    ("198.18.0.50/24", None), ("", None), (" 198.18.0.50", None), ("198.18.0.50", 0),
    ("198.18.0.50", 33), ("2001:2::5", 129),
])
def test_find_interface_rejects_malformed_input(recorded_routes: None, address: str,
                                                prefixlen: int | None) -> None:
    with pytest.raises(ValueError):
        iproute.find_interface(address, prefixlen)


def test_find_interface_on_live_routes(netns_pool: NetnsPool) -> None:
    ns = netns_pool.new()
    _build_routes(ns)
    with entered(ns):
        for args, expected in FINDIF_CASES:
            _check(args, expected)


def test_recorded_routes_still_match_what_the_kernel_reports(netns_pool: NetnsPool) -> None:
    ns = netns_pool.new()
    _build_routes(ns)
    for family, table in ((4, "main"), (6, "main"), (4, "local")):
        live = json.loads(ns.ip("-j", f"-{family}", "route", "show", "table", table))
        with open(os.path.join(DATA, f"route-{family}-{table}.json")) as f:
            recorded = json.load(f)
        assert sorted(map(repr, live)) == sorted(map(repr, recorded))


# --- changes through ip ------------------------------------------------------------------

def _addr_info(ns: Netns, dev: str) -> dict[str, dict]:
    return {info["local"]: info for link in json.loads(ns.ip("-j", "addr", "show", "dev", dev))
            for info in link["addr_info"]}


def test_add_address_applies_label_broadcast_and_flags(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    with entered(node):
        iproute.add_address("lan0", "198.18.0.10", 24, broadcast="198.18.0.255",
                            label="lan0:vip")
        iproute.add_address("lan0", "2001:2:0:0::10", 64, nodad=True, noprefixroute=True,
                            preferred_lft=0)
    info = _addr_info(node, "lan0")
    assert info["198.18.0.10"]["label"] == "lan0:vip"
    assert info["198.18.0.10"]["broadcast"] == "198.18.0.255"
    v6 = info["2001:2::10"]
    assert v6["prefixlen"] == 64 and v6.get("noprefixroute") and v6.get("deprecated")
    assert not v6.get("tentative")


def test_add_address_with_derived_broadcast(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    with entered(node):
        iproute.add_address("lan0", "198.18.0.40", 27, broadcast="+")
    assert _addr_info(node, "lan0")["198.18.0.40"]["broadcast"] == "198.18.0.63"


def test_delete_address_removes_only_that_address(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    with entered(node):
        iproute.add_address("lan0", "198.18.0.10", 24)
        iproute.delete_address("lan0", "198.18.0.10", 24)
    assert set(node.addresses("lan0")) >= {"198.18.0.1/24", "2001:2::1/64"}
    assert "198.18.0.10/24" not in node.addresses("lan0")


@pytest.mark.parametrize("action, message", [
    (lambda: iproute.add_address("lan0", "198.18.0.1", 24),
     "Error: ipv4: Address already assigned."),
    (lambda: iproute.delete_address("lan0", "198.18.0.99", 24),
     "Error: ipv4: Address not found."),
    (lambda: iproute.add_address("lan9", "198.18.0.10", 24), 'Cannot find device "lan9"'),
    (lambda: iproute.set_link_up("lan9"), 'Cannot find device "lan9"'),
])
def test_failures_carry_ips_own_first_error_line(lan: tuple[Netns, Netns], action,  # type: ignore[no-untyped-def]
                                                 message: str) -> None:
    node, _ = lan
    with entered(node), pytest.raises(iproute.IprouteError) as caught:
        action()
    assert str(caught.value) == message
    assert caught.value.argv[0] == "ip" and caught.value.rc != 0


# Changes sent over netlink, each refused by the kernel in the state lan() leaves.
REFUSED_CHANGES = [
    lambda: iproute.add_address("lan0", "198.18.0.1", 24),
    lambda: iproute.add_address("lan0", "2001:2::1", 64, nodad=True),
    lambda: iproute.delete_address("lan0", "198.18.0.99", 24),
    lambda: iproute.delete_address("lan0", "2001:2::99", 64),
    lambda: iproute.delete_address("lan0", "198.18.0.1", 25),
    lambda: iproute.delete_local_route("lan0", "198.18.0.99"),
    lambda: iproute.delete_local_route("lan0", "2001:2::99"),
    lambda: iproute.add_address("lan0", "198.18.0.10", 24, label="lan0:vip", preferred_lft=0,
                                broadcast="+"),  # accepted: the second time is refused
]


@pytest.mark.parametrize("change", REFUSED_CHANGES)
def test_a_refused_change_fails_as_the_ip_command_it_names(lan: tuple[Netns, Netns],
                                                             change) -> None:  # type: ignore[no-untyped-def]
    node, _ = lan
    with entered(node):
        try:
            change()
        except iproute.IprouteError:
            pass
        with pytest.raises(iproute.IprouteError) as caught:
            change()
    ours = caught.value
    ip = subprocess.run(["ip", "-n", node.name, *ours.argv[1:]], capture_output=True, text=True)
    assert (ours.rc, str(ours)) == (ip.returncode, ip.stderr.splitlines()[0])


@pytest.mark.parametrize("address, prefixlen", [("198.18.0.10", 24), ("2001:2::10", 64)])
def test_delete_local_route_stops_delivery_but_keeps_the_address(
        lan: tuple[Netns, Netns], address: str, prefixlen: int) -> None:
    node, _ = lan
    family = "-6" if ":" in address else "-4"


    def local_routes() -> set[str]:
        return {route["dst"] for route in json.loads(node.ip("-j", family, "route", "show",
                                                             "table", "local"))}
    with entered(node):
        iproute.add_address("lan0", address, prefixlen, nodad=True)
        deadline = time.monotonic() + 5  # IPv6 inserts it from a work queue, even with nodad
        while address not in local_routes() and time.monotonic() < deadline:
            time.sleep(0.01)
        iproute.delete_local_route("lan0", address)
    assert address not in local_routes()
    assert f"{address}/{prefixlen}" in node.addresses("lan0")


def test_set_link_up_brings_a_down_link_up(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    node.ip("link", "set", "lan0", "down")
    with entered(node):
        iproute.set_link_up("lan0")
    assert "UP" in json.loads(node.ip("-j", "link", "show", "dev", "lan0"))[0]["flags"]


@pytest.mark.parametrize("family", [2, 10])
def test_flush_route_cache_succeeds_for_both_families(lan: tuple[Netns, Netns],
                                                      family: int) -> None:
    node, _ = lan
    with entered(node):
        iproute.flush_route_cache(family)


def test_flush_route_cache_refuses_an_unknown_family() -> None:
    with pytest.raises(ValueError, match="neither AF_INET nor AF_INET6"):
        iproute.flush_route_cache(0)


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither ip nor a netlink change may run."""
    monkeypatch.setattr(command, "run", _must_not_run)
    monkeypatch.setattr(netlink, "_change", _must_not_change)


@pytest.mark.parametrize("kwargs", [
    {"dev": "-n"}, {"dev": "lan0 label"}, {"dev": "lan0\n"}, {"dev": "lan\x1b0"}, {"dev": ""},
    {"dev": "lan0\u2003"}, {"address": "-198.18.0.1"}, {"address": "198.18.0.1 dev"},
    {"address": "198.18.0.1/24"}, {"prefixlen": 0}, {"prefixlen": 33}, {"prefixlen": "24"},
    {"prefixlen": True}, {"label": "-f"}, {"label": "lan0 vip"}, {"label": ""},
    {"label": "lan1:vip"}, {"label": "lan0:abcdefghijk"},
    {"broadcast": "-x"}, {"broadcast": "2001:2::ff"}, {"broadcast": "198.18.0.255 x"},
    {"preferred_lft": "-1"}, {"preferred_lft": "10 valid_lft"}, {"preferred_lft": -1},
])
def test_untrusted_values_are_refused_before_running_ip(nothing_runs: None,
                                                        kwargs: dict) -> None:
    args = {"dev": "lan0", "address": "198.18.0.10", "prefixlen": 24, **kwargs}
    with pytest.raises(ValueError):
        iproute.add_address(args.pop("dev"), args.pop("address"), args.pop("prefixlen"), **args)


@pytest.mark.parametrize("dev", ["-n", "lan0 up", "lan0\t", ""])
def test_delete_and_link_up_refuse_unsafe_device_names(nothing_runs: None, dev: str) -> None:
    with pytest.raises(ValueError):
        iproute.delete_address(dev, "198.18.0.10", 24)
    with pytest.raises(ValueError):
        iproute.set_link_up(dev)


def test_iproute_and_netlink_load_no_expensive_module() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "import ocf_lib.adapters.iproute, ocf_lib.adapters.netlink; "
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True,
                                text=True, check=True).stdout.split())
    banned = {"re", "enum", "json", "socket", "subprocess", "logging", "typing", "dataclasses",
              "ipaddress", "signal", "traceback"}
    assert loaded & banned == set()
