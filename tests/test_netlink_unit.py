"""ocf_lib.adapters.netlink and the rtnetlink half of ocf_lib.adapters.iproute, in the unit
tier: a stand-in socket answers with the kernel's replies recorded in a test namespace
(tests/data/netlink/, each file says how it was made) and keeps the requests sent, which are
taken apart again here. What is read must equal what `ip -j` said at the same moment;
test_netlink.py and test_iproute.py ask a live kernel."""
from __future__ import annotations

import _socket
import json
import struct
import types
from pathlib import Path

import pytest

from ocf_lib.adapters import iproute, netlink

DATA = Path(__file__).parent / "data" / "netlink"
_SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254}

# linux/netlink.h and linux/rtnetlink.h, spelt out again so that a wrong constant in the
# module shows
NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
IFLA_IFNAME, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS = 3, 29, 1 << 3
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11


def recorded(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def datagrams(name: str) -> list[bytes]:
    return [bytes.fromhex(text) for text in recorded(name)["datagrams"]]


def messages(datagram: bytes) -> list[tuple[int, int, bytes]]:
    """The (type, flags, whole message) of each netlink message in a datagram."""
    found, offset = [], 0
    while offset < len(datagram):
        length, kind, flags, _, _ = NLMSGHDR.unpack_from(datagram, offset)
        found.append((kind, flags, datagram[offset:offset + length]))
        offset += (length + 3) & ~3
    return found


def link_reply(name: str) -> list[bytes]:
    """The kernel's answer to a request for link name alone: its message of the dump."""
    for datagram in datagrams("links"):
        for kind, _, message in messages(datagram):
            if kind == RTM_NEWLINK and netlink._link(message[NLMSGHDR.size:]).name == name:
                return [message]
    raise AssertionError(f"no {name} in the recorded links")


def ack(sequence: int = 1) -> list[bytes]:
    """The kernel's acknowledgement of a change (error 0, the request's header, capped)."""
    header = NLMSGHDR.pack(NLMSGHDR.size, RTM_NEWADDR, 0, sequence, 0)
    return [NLMSGHDR.pack(NLMSGHDR.size + 4 + len(header), NLMSG_ERROR, NLM_F_CAPPED,
                          sequence, 0) + struct.pack("=i", 0) + header]


class Kernel:
    """Stands in for every rtnetlink socket the module opens: each request sent gets the
    next of answers (its datagrams, in order); sent and options keep what came in."""

    def __init__(self, *answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []
        self.options: list[tuple[int, int, int]] = []
        self.pending: list[bytes] = []

    def socket(self, family: int, kind: int, protocol: int) -> "Kernel":
        assert (family, protocol) == (_socket.AF_NETLINK, 0)
        return self

    def send(self, data: bytes) -> int:
        assert self.answers, f"an unexpected request: {data.hex()}"
        self.sent.append(data)
        self.pending = list(self.answers.pop(0))
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.pending.pop(0)

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.options.append((level, name, value))

    def close(self) -> None:
        pass

    def request(self, number: int = -1) -> tuple[int, int, bytes]:
        """The type, flags and body of a request sent (the last by default)."""
        length, kind, flags, _, _ = NLMSGHDR.unpack_from(self.sent[number])
        assert length == len(self.sent[number])
        return kind, flags, self.sent[number][NLMSGHDR.size:]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    """The netlink module's sockets are the Kernel's (answers added by the test)."""
    stand_in = Kernel()
    module = types.SimpleNamespace(**{name: getattr(_socket, name) for name in dir(_socket)
                                      if not name.startswith("__")})
    module.socket = stand_in.socket
    monkeypatch.setattr(netlink, "_socket", module)
    return stand_in


def ip_entries(name: str) -> list[dict]:
    return recorded(name)["ip"]


# -- reading the kernel's dumps --------------------------------------------------------------

def test_links_read_from_a_recorded_dump_are_those_ip_link_showed(kernel: Kernel) -> None:
    kernel.answers.append(datagrams("links"))
    ours = {link.index: (link.name, link.mtu, link.operstate, link.mac.hex(":"), link.up,
                         link.lower_up) for link in netlink.links()}
    assert ours == {entry["ifindex"]: (entry["ifname"], entry["mtu"], entry["operstate"],
                                       entry["address"], "UP" in entry["flags"],
                                       "LOWER_UP" in entry["flags"])
                    for entry in ip_entries("links")}
    assert {name for name, _, _, _, up, lower_up in ours.values() if up and not lower_up} \
        == {"lan1"}


def test_a_links_dump_asks_for_every_link_without_counters(kernel: Kernel) -> None:
    kernel.answers.append(datagrams("links"))
    netlink.links()
    kind, flags, body = kernel.request()
    assert kind == RTM_GETLINK and flags == NLM_F_REQUEST | NLM_F_DUMP
    extra = netlink.attributes(body, 16)
    assert extra == {IFLA_EXT_MASK: struct.pack("=I", RTEXT_FILTER_SKIP_STATS)}


def test_addresses_read_from_a_recorded_dump_are_those_ip_addr_showed(kernel: Kernel) -> None:
    kernel.answers.append(datagrams("addresses"))
    ours = {(a.index, a.address): (a.family, a.prefixlen, a.scope, a.label, a.broadcast,
                                   a.tentative, a.dadfailed) for a in netlink.addresses()}
    assert ours == {
        (link["ifindex"], info["local"]): (
            {"inet": 2, "inet6": 10}[info["family"]], info["prefixlen"], _SCOPES[info["scope"]],
            info.get("label"), info.get("broadcast"), info.get("tentative", False),
            info.get("dadfailed", False))
        for link in ip_entries("addresses") for info in link["addr_info"]}
    lan0 = next(link["ifindex"] for link in ip_entries("addresses") if link["ifname"] == "lan0")
    assert ours[(lan0, "198.18.0.10")][3] == "lan0:vip"
    assert ours[(lan0, "198.18.0.11")][4] == "198.18.0.99"
    assert ours[(lan0, "198.18.1.1")][1] == 32  # the local side of a peer address
    assert ours[(lan0, "2001:2::50")][5]  # tentative


def test_addresses_of_one_family_and_interface(kernel: Kernel) -> None:
    """The family is the kernel's filter (asked for), the interface the module's own."""
    lan0 = next(link["ifindex"] for link in ip_entries("addresses") if link["ifname"] == "lan0")
    kernel.answers.append(datagrams("addresses"))
    found = netlink.addresses(family=10, index=lan0)
    kind, flags, body = kernel.request()
    assert (kind, flags) == (RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP)
    assert IFADDRMSG.unpack_from(body)[0] == 10
    assert found and {a.index for a in found} == {lan0}


def test_replies_to_another_request_are_passed_over() -> None:
    """Only the messages of the request's own sequence number count."""
    bodies: list[bytes] = []
    for datagram in datagrams("links"):
        assert not netlink._collect(datagram, 2, RTM_NEWLINK, bodies)
    assert bodies == []


def test_a_malformed_message_is_an_error_not_a_loop() -> None:
    with pytest.raises(netlink.NetlinkError, match="malformed"):
        netlink._collect(NLMSGHDR.pack(4, RTM_NEWLINK, 0, 1, 0), 1, RTM_NEWLINK, [])


@pytest.mark.parametrize("name", ["", "x" * 16, "lan0\0"])
def test_link_by_name_asks_nothing_for_a_name_no_link_can_have(kernel: Kernel,
                                                                name: str) -> None:
    assert netlink.link_by_name(name) is None
    assert kernel.sent == []


def test_link_by_name_asks_for_that_link_alone(kernel: Kernel) -> None:
    kernel.answers.append(link_reply("lan0"))
    link = netlink.link_by_name("lan0")
    assert link is not None and link.name == "lan0"
    kind, flags, body = kernel.request()
    assert (kind, flags) == (RTM_GETLINK, NLM_F_REQUEST)
    assert netlink.attributes(body, 16)[IFLA_IFNAME] == b"lan0\0"


# -- changes, and the kernel's refusals -------------------------------------------------------

def test_a_refusal_carries_the_kernels_own_words(kernel: Kernel) -> None:
    record = recorded("address-exists")
    kernel.answers.append(datagrams("address-exists"))
    with pytest.raises(netlink.NetlinkError) as caught:
        netlink.add_address(3, 2, bytes([198, 18, 0, 1]), 24)
    assert caught.value.errno == record["errno"] == 17
    assert caught.value.kernel_message == record["kernel_message"]
    assert {(SOL_NETLINK, NETLINK_EXT_ACK, 1), (SOL_NETLINK, NETLINK_CAP_ACK, 1)} \
        <= set(kernel.options)


def test_iproute_words_a_refusal_as_ip_does(kernel: Kernel) -> None:
    kernel.answers += [link_reply("lan0"), datagrams("address-exists")]
    with pytest.raises(iproute.IprouteError) as caught:
        iproute.add_address("lan0", "198.18.0.1", 24)
    assert str(caught.value) == "Error: ipv4: Address already assigned."
    assert caught.value.argv == ["ip", "addr", "add", "198.18.0.1/24", "dev", "lan0"]
    assert caught.value.rc == iproute.RTNETLINK_FAILED


def test_a_refusal_without_the_kernels_words_gives_the_errnos(kernel: Kernel) -> None:
    """An older kernel's, or one without extended acks: ip's "RTNETLINK answers:" form."""
    [refusal] = datagrams("address-exists")
    flags = struct.unpack_from("=H", refusal, 6)[0] & ~NLM_F_ACK_TLVS
    kernel.answers += [link_reply("lan0"), [refusal[:6] + struct.pack("=H", flags) + refusal[8:]]]
    with pytest.raises(iproute.IprouteError) as caught:
        iproute.add_address("lan0", "198.18.0.1", 24)
    assert str(caught.value) == "RTNETLINK answers: File exists"


def test_a_change_on_a_missing_interface_is_refused_as_ip_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink, "link_by_name", lambda name: None)
    with pytest.raises(iproute.IprouteError) as caught:
        iproute.delete_address("lan9", "198.18.0.10", 24)
    assert (str(caught.value), caught.value.rc) == ('Cannot find device "lan9"', 1)
    assert caught.value.argv == ["ip", "addr", "del", "198.18.0.10/24", "dev", "lan9"]


def added(kernel: Kernel) -> tuple[int, tuple[int, ...], dict[int, bytes]]:
    """The flags, ifaddrmsg and attributes of the RTM_NEWADDR sent last."""
    kind, flags, body = kernel.request()
    assert kind == RTM_NEWADDR
    return flags, IFADDRMSG.unpack_from(body), netlink.attributes(body, IFADDRMSG.size)


def test_an_address_is_added_as_ip_addr_add_sends_it(kernel: Kernel) -> None:
    kernel.answers += [link_reply("lan0"), ack()]
    iproute.add_address("lan0", "198.18.0.10", 28, broadcast="+", label="lan0:vip",
                        noprefixroute=True, nodad=True, preferred_lft=0)
    flags, header, attrs = added(kernel)
    assert flags == NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    packed = bytes([198, 18, 0, 10])
    assert header[:4] == (2, 28, 0x02, 0)  # the flags' low byte in the header: nodad
    assert header[4] == next(link["ifindex"] for link in ip_entries("links")
                             if link["ifname"] == "lan0")
    assert attrs == {IFA_LOCAL: packed, IFA_ADDRESS: packed,
                     IFA_BROADCAST: bytes([198, 18, 0, 15]),  # '+': the /28's
                     IFA_LABEL: b"lan0:vip\0",
                     IFA_FLAGS: struct.pack("=I", 0x202),  # nodad, noprefixroute (> 8 bits)
                     IFA_CACHEINFO: struct.pack("=IIII", 0, 0xFFFFFFFF, 0, 0)}


@pytest.mark.parametrize("address, prefixlen, broadcast, scope, expected", [
    ("198.18.0.10", 24, "-", 0, bytes([198, 18, 0, 0])),
    ("198.18.0.10", 24, "198.18.0.99", 0, bytes([198, 18, 0, 99])),
    ("127.0.0.2", 8, None, 254, None),  # loopback: host scope, as ip gives it
    ("2001:2::10", 64, None, 0, None),
])
def test_the_scope_and_broadcast_of_an_added_address(kernel: Kernel, address: str,
                                                     prefixlen: int, broadcast: str | None,
                                                     scope: int,
                                                     expected: bytes | None) -> None:
    kernel.answers += [link_reply("lan0"), ack()]
    iproute.add_address("lan0", address, prefixlen, broadcast=broadcast)
    _, header, attrs = added(kernel)
    assert header[:4] == (10 if ":" in address else 2, prefixlen, 0, scope)
    assert attrs.get(IFA_BROADCAST) == expected
    assert IFA_LOCAL in attrs and not {IFA_LABEL, IFA_FLAGS, IFA_CACHEINFO} & set(attrs)
