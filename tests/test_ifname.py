"""The one check of interface names and address labels (ocf_lib.adapters.netlink), which
the nic parameter, the packet sockets and every `ip` argument go through. Pure: no root,
no namespaces."""
from __future__ import annotations

import pytest

from ocf_lib.adapters.netlink import valid_ifname, valid_label


@pytest.mark.parametrize("name", ["lan0", "a" * 15, "br-ex.100", "veth_x@y", "é" * 7, "eth0-"])
def test_names_the_kernel_allows_pass(name: str) -> None:
    assert valid_ifname(name) == name


@pytest.mark.parametrize("name", [
    "", "a" * 16, "é" * 8,  # 16 bytes in 8 characters: the limit is the kernel's, in bytes
    ".", "..", "../etc", "eth0/x", "eth0:1", "lan 0", "lan0\n", "a\tb", "a\0b",
    "\xa0x", "à",  # the kernel's isspace() counts the byte 0xa0 (U+00E0 is c3 a0)
    "lan\x1b0", "lan0\u2003",  # not printable: it would garble a log line
    "-d",  # an option to `ip`
])
def test_names_no_interface_can_have_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="nic .* is not a valid interface name"):
        valid_ifname(name, "nic")


@pytest.mark.parametrize("label", ["lan0", "lan0:vip", "lan0:" + "x" * 10])
def test_labels_of_the_interface_within_15_bytes_pass(label: str) -> None:
    assert valid_label(label, "lan0") == label


@pytest.mark.parametrize("label, reason", [
    ("lan0:" + "x" * 11, "longer than 15 bytes"),
    ("lan0:" + "é" * 6, "longer than 15 bytes"),
    ("lan1:vip", "must be 'lan0' or begin with 'lan0:'"),
    ("lan0vip", "must be 'lan0' or begin with 'lan0:'"),
])
def test_labels_too_long_or_of_another_interface_are_refused(label: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        valid_label(label, "lan0")
