"""ocf_lib.logic.vip's pure part, in the unit tier: the parameters' syntax (parse), a clone's
own address, the broadcast a start configures and the connections a node hands over, with
the node's links and addresses given instead of looked at. What an agent does with them on
a node is in test_ipaddr2.py and test_ipaddr2_bad_input.py."""
import pytest

from ocf_lib.adapters import inet, netlink
from ocf_lib.logic import vip as vips


def parse(ip: str, nic: str = "", netmask: str = "", broadcast: str = "", iflabel: str = "",
          preferred_lft: str = "forever") -> vips.Vip:
    return vips.parse(ip, nic, netmask, broadcast, iflabel, preferred_lft)


# -- parse -----------------------------------------------------------------------------------

def test_an_ipv4_address_is_read_with_its_nic_prefix_and_label() -> None:
    vip = parse("198.18.0.10", "lan0", "255.255.255.0", "198.18.0.255", "vip")
    assert (vip.family, vip.packed, vip.ip) == (inet.AF_INET, bytes([198, 18, 0, 10]),
                                                "198.18.0.10")
    assert (vip.nic, vip.prefixlen, vip.broadcast, vip.iflabel) == ("lan0", 24,
                                                                    "198.18.0.255", "vip")
    assert vip.label == "lan0:vip" and not vip.is_ipv6
    assert str(vip) == "198.18.0.10/24 on lan0"


def test_what_is_not_configured_stays_unknown_until_the_node_tells() -> None:
    vip = parse("2001:2:0::10")
    assert vip.is_ipv6 and vip.ip == "2001:2::10"
    assert (vip.nic, vip.prefixlen, vip.broadcast, vip.iflabel, vip.label) == (None,) * 5
    assert str(vip) == "2001:2::10/? on ?"


def test_heartbeats_nic_with_a_label_gives_the_label() -> None:
    """nic=lan0:vip, the older form of nic=lan0 iflabel=vip, wins over iflabel as there."""
    vip = parse("198.18.0.10", "lan0:vip", iflabel="other")
    assert (vip.nic, vip.iflabel, vip.label) == ("lan0", "vip", "lan0:vip")


def test_a_link_local_address_is_accepted_with_its_nic() -> None:
    assert parse("fe80::10", "lan0", "64").prefixlen == 64


@pytest.mark.parametrize("broadcast", ["+", "-"])
def test_the_broadcast_words_of_ip_are_kept(broadcast: str) -> None:
    assert parse("198.18.0.10", broadcast=broadcast).broadcast == broadcast


@pytest.mark.parametrize("lifetime", ["forever", "0", "4294967295"])
def test_preferred_lifetimes_up_to_32_bits_are_accepted(lifetime: str) -> None:
    parse("2001:2::10", preferred_lft=lifetime)


@pytest.mark.parametrize("kwargs, words", [
    ({"ip": "198.18.0.300"}, "ip: "),
    ({"ip": "224.0.0.1"}, "cannot be a floating address"),
    ({"ip": "fe80::10"}, "link-local: set nic="),
    ({"nic": "lan 0"}, "nic 'lan 0' is not a valid interface name"),
    ({"netmask": "255.0.255.0"}, "cidr_netmask: "),
    ({"ip": "2001:2::10", "broadcast": "198.18.0.255"}, "broadcast is for IPv4"),
    ({"broadcast": "2001:2::ff"}, "is not an IPv4 address"),
    ({"ip": "2001:2::10", "iflabel": "vip"}, "iflabel is for IPv4"),
    ({"iflabel": "v/p"}, "may hold only letters"),
    ({"nic": "lan0", "iflabel": "elevenchars"}, "label 'lan0:elevenchars' is longer than 15"),
    ({"preferred_lft": "4294967296"}, "preferred_lft '4294967296' is neither"),
    ({"preferred_lft": "+5"}, "preferred_lft '+5' is neither"),
], ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_bad_values_are_config_invalid_with_what_is_wrong(kwargs: dict, words: str) -> None:
    with pytest.raises(vips.ConfigInvalid) as caught:
        parse(**{"ip": "198.18.0.10", **kwargs})
    assert words in str(caught.value)


def test_a_label_within_the_limit_without_nic_waits_for_the_nic_found_here() -> None:
    """Without nic the label's length depends on the node's interface (complete checks it)."""
    assert parse("198.18.0.10", iflabel="elevenchars").iflabel == "elevenchars"


@pytest.mark.parametrize("proto", ["", "kernel", "static", "4", "bird_v6-x"])
def test_route_protocol_names_and_numbers_pass(proto: str) -> None:
    vips.check_proto(proto)


@pytest.mark.parametrize("proto", ["-x", "a b", "a/b", "x" * 33, "k\u00e9rnel"])
def test_anything_else_as_proto_is_config_invalid(proto: str) -> None:
    with pytest.raises(vips.ConfigInvalid, match="not a route protocol"):
        vips.check_proto(proto)


# -- unique_clone_address --------------------------------------------------------------------

@pytest.mark.parametrize("ip, clone, expected", [
    ("198.18.0.10", 0, "198.18.0.10"), ("198.18.0.10", 2, "198.18.0.12"),
    ("198.18.0.255", 1, "198.18.1.0"),  # the whole address, not only its last octet
    ("2001:2::ffff", 1, "2001:2::1:0"),
])
def test_a_clone_adds_its_number_to_the_address(ip: str, clone: int, expected: str) -> None:
    assert vips.clone_address(ip, clone) == expected


@pytest.mark.parametrize("ip, words", [("255.255.255.254", "past the last address"),
                                       ("198.18.0", "ip: ")])
def test_a_clone_address_that_cannot_be_is_config_invalid(ip: str, words: str) -> None:
    with pytest.raises(vips.ConfigInvalid, match=words):
        vips.clone_address(ip, 2)


# -- the broadcast a start configures --------------------------------------------------------

LAN0 = netlink.Link(2, "lan0", netlink.IFF_UP | netlink.IFF_LOWER_UP, "UP",
                    bytes.fromhex("020000000001"), 1500)


def own_addresses(monkeypatch: pytest.MonkeyPatch, *addresses: tuple[str, int]) -> None:
    """This node's lan0 holds addresses (address, prefix length)."""
    held = [netlink.Address(inet.AF_INET, LAN0.index, address, prefixlen, 0, 0, "lan0",
                            None) for address, prefixlen in addresses]
    monkeypatch.setattr(netlink, "link_by_name", lambda name: LAN0 if name == "lan0" else None)
    monkeypatch.setattr(netlink, "addresses",
                        lambda family=0, index=0: [a for a in held if a.index == index])


@pytest.mark.parametrize("netmask, broadcast, expected", [
    ("24", "", "198.18.0.255"),       # the node's own /24's
    ("28", "", "198.18.0.255"),       # a /28 on the /24 link: still the network's
    ("28", "+", "198.18.0.15"),       # '+': the VIP's own prefix's, as ip derives it
    ("28", "-", None),
    ("24", "198.18.0.127", "198.18.0.127"),
    ("31", "", None), ("32", "", None),
])
def test_the_broadcast_follows_the_network_the_vip_lies_in(
        monkeypatch: pytest.MonkeyPatch, netmask: str, broadcast: str,
        expected: str | None) -> None:
    own_addresses(monkeypatch, ("198.18.0.1", 24))
    assert vips.broadcast_for(parse("198.18.0.10", "lan0", netmask, broadcast)) == expected


def test_the_longest_own_network_holding_the_vip_gives_the_broadcast(
        monkeypatch: pytest.MonkeyPatch) -> None:
    own_addresses(monkeypatch, ("198.18.0.1", 16), ("198.18.0.2", 25), ("198.18.0.200", 25),
                  ("198.18.0.10", 28))  # the VIP itself never counts
    assert vips.broadcast_for(parse("198.18.0.10", "lan0", "28")) == "198.18.0.127"


def test_without_an_own_network_holding_it_the_vip_prefix_gives_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    own_addresses(monkeypatch, ("198.19.0.1", 24), ("198.18.0.1", 30))  # elsewhere, longer
    assert vips.broadcast_for(parse("198.18.0.10", "lan0", "24")) == "198.18.0.255"
    assert vips.network_broadcast(parse("198.18.0.10", "lan9", "24")) is None


def test_an_ipv6_vip_has_no_broadcast() -> None:
    assert vips.broadcast_for(parse("2001:2::10", "lan0", "64")) is None
