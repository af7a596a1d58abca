"""ocf_lib.adapters.inet: address parsing and arithmetic, checked against the ipaddress module."""
from __future__ import annotations

import ipaddress

import pytest

from ocf_lib.adapters import inet


@pytest.mark.parametrize("text, family, canonical", [
    ("198.18.0.1", 2, "198.18.0.1"),
    ("2001:2::1", 10, "2001:2::1"),
    ("2001:0002:0000::0:1", 10, "2001:2::1"),
    ("FE80::A", 10, "fe80::a"),
    ("::ffff:198.18.0.1", 10, "::ffff:198.18.0.1"),
])
def test_parse_ip_returns_family_and_canonical_form(text: str, family: int, canonical: str) -> None:
    got_family, packed = inet.parse_ip(text)
    assert got_family == family
    assert packed == ipaddress.ip_address(text).packed
    assert inet.canonical(got_family, packed) == canonical


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("198.18.0.1/24", "prefix length"),
    ("fe80::1%lan0", "zone id"),
    (" 198.18.0.1", "not a valid"),
    ("198.18.0.1\n", "not a valid"),
    ("198.18.0", "not a valid"),
    ("198.18.0.256", "not a valid"),
    ("010.1.1.1", "not a valid"),
    ("2001:2::1::2", "not a valid"),
    ("example.com", "not a valid"),
    ("198.18.0.1\0", "not a valid"),
])
def test_parse_ip_rejects_anything_but_a_plain_address(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        inet.parse_ip(text)


@pytest.mark.parametrize("text, expected", [
    ("169.254.3.4", True), ("169.255.0.1", False), ("198.18.0.1", False),
    ("fe80::1", True), ("febf::1", True), ("fec0::1", False), ("2001:2::1", False),
])
def test_is_link_local_covers_169_254_and_fe80_slash_10(text: str, expected: bool) -> None:
    assert inet.is_link_local(*inet.parse_ip(text)) is expected


@pytest.mark.parametrize("net, prefixlen, ip", [
    ("198.18.0.0", 24, "198.18.0.77"), ("198.18.0.0", 24, "198.18.1.0"),
    ("198.18.0.9", 24, "198.18.0.200"), ("198.18.0.0", 32, "198.18.0.0"),
    ("198.18.0.0", 1, "127.0.0.1"), ("198.18.0.0", 31, "198.18.0.1"),
    ("2001:2::", 64, "2001:2::ffff"), ("2001:2::", 64, "2001:2:0:1::"),
    ("2001:2::", 128, "2001:2::"), ("2001:2::", 47, "2001:3::1"),
])
def test_network_contains_agrees_with_ipaddress(net: str, prefixlen: int, ip: str) -> None:
    family, packed_net = inet.parse_ip(net)
    expected = ipaddress.ip_address(ip) in ipaddress.ip_network(f"{net}/{prefixlen}", strict=False)
    assert inet.network_contains(family, packed_net, prefixlen, inet.parse_ip(ip)[1]) is expected


@pytest.mark.parametrize("ip, prefixlen, broadcast", [
    ("198.18.0.1", 24, "198.18.0.255"), ("198.18.5.70", 27, "198.18.5.95"),
    ("198.18.0.1", 15, "198.19.255.255"), ("198.18.0.1", 30, "198.18.0.3"),
])
def test_broadcast_of_sets_the_host_bits(ip: str, prefixlen: int, broadcast: str) -> None:
    assert inet.broadcast_of(inet.parse_ip(ip)[1], prefixlen) == broadcast


@pytest.mark.parametrize("text, family, prefixlen", [
    ("27", 2, 27), ("1", 2, 1), ("32", 2, 32), ("128", 10, 128), ("64", 10, 64),
    ("255.255.255.224", 2, 27), ("255.255.255.255", 2, 32), ("128.0.0.0", 2, 1),
    ("255.255.0.0", 2, 16),
])
def test_parse_prefix_accepts_lengths_and_dotted_netmasks(text: str, family: int,
                                                          prefixlen: int) -> None:
    assert inet.parse_prefix(text, family) == prefixlen


@pytest.mark.parametrize("text, family, reason", [
    ("0", 2, "covers every address"), ("0.0.0.0", 2, "covers every address"),
    ("0", 10, r"1\.\.128"), ("33", 2, r"out of range 1\.\.32"), ("129", 10, "out of range"),
    ("255.0.255.0", 2, "not contiguous"), ("255.255.255.1", 2, "not contiguous"),
    ("255.255.255.224", 10, "not a number"), ("255.255.256.0", 2, "not a dotted"),
    ("", 2, "neither"), ("-1", 2, "neither"), ("24 ", 2, "neither"), ("/24", 2, "neither"),
    ("٢٤", 2, "neither"),
])
def test_parse_prefix_rejects_with_a_reason(text: str, family: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        inet.parse_prefix(text, family)


def test_checksum_of_an_ipv4_header() -> None:
    """The header of a real UDP datagram (as printed in many a textbook): its checksum is
    0xb861, and the header with it sums to zero."""
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert inet.checksum(header) == 0xB861
    assert inet.checksum(header[:10] + b"\xb8\x61" + header[12:]) == 0
    assert inet.checksum(b"\x01") == inet.checksum(b"\x01\x00"), "odd lengths padded with 0"
