"""IPv4/IPv6 address helpers built on `_socket.inet_pton`/`inet_ntop`.

The `ipaddress` module would do all of this, but importing it costs about 6 ms on every
agent run; the few operations a floating-IP agent needs fit in a page of integer
arithmetic on packed addresses.
"""

import _socket
import _struct

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6

_BITS = {AF_INET: 32, AF_INET6: 128}


def parse_ip(text: str) -> tuple[int, bytes]:
    """Return (family, packed) for a plain IPv4 or IPv6 address.

    Anything else -- a prefix ("/24"), a zone id ("%eth0"), surrounding spaces -- is
    refused: the value ends up in `ip` arguments and in comparisons with kernel output,
    where such decorations would silently mean something else.
    """
    if not text:
        raise ValueError("empty IP address")
    for decoration, what in (("/", "a prefix length"), ("%", "a zone id")):
        if decoration in text:
            raise ValueError(f"{text!r} is not a plain IP address: it has {what}")
    family = AF_INET6 if ":" in text else AF_INET
    try:
        return family, _socket.inet_pton(family, text)
    except (OSError, ValueError):
        raise ValueError(f"{text!r} is not a valid IP address") from None


def canonical(family: int, packed: bytes) -> str:
    """The address in the form `ip` prints (RFC 5952 for IPv6)."""
    return _socket.inet_ntop(family, packed)


def is_link_local(family: int, packed: bytes) -> bool:
    """True for 169.254.0.0/16 and fe80::/10, which are only unique on one link."""
    if family == AF_INET:
        return packed[:2] == b"\xa9\xfe"
    return packed[0] == 0xFE and packed[1] & 0xC0 == 0x80


def not_unicast(family: int, packed: bytes) -> str | None:
    """Why no host can own the address as its own, or None when one can: unspecified,
    multicast, the IPv4 limited broadcast, IPv6 loopback and IPv4-mapped IPv6 addresses.
    The kernel refuses some of them only after a change was tried, and takes others
    (a multicast address on an interface) without complaint."""
    if family == AF_INET:
        if packed[0] == 0:
            return "is in 0.0.0.0/8 (this network, unspecified)"
        if packed[0] >> 4 == 0xE:
            return "is a multicast address"
        if packed == b"\xff" * 4:
            return "is the limited broadcast address"
        return None
    if packed == bytes(16):
        return "is the unspecified address"
    if packed == bytes(15) + b"\x01":
        return "is the loopback address"
    if packed[0] == 0xFF:
        return "is a multicast address"
    if packed[:12] == bytes(10) + b"\xff\xff":
        return "is an IPv4-mapped address; give the IPv4 address itself"
    return None


def _mask(family: int, prefixlen: int) -> int:
    bits = _BITS[family]
    return ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)


def network_contains(family: int, packed_net: bytes, prefixlen: int, packed_ip: bytes) -> bool:
    """True when packed_ip lies inside packed_net/prefixlen (host bits of net ignored)."""
    mask = _mask(family, prefixlen)
    return (int.from_bytes(packed_net, "big") & mask) == (int.from_bytes(packed_ip, "big") & mask)


def broadcast_of(packed_ipv4: bytes, prefixlen: int) -> str:
    """The directed broadcast address of the IPv4 network packed_ipv4/prefixlen."""
    value = int.from_bytes(packed_ipv4, "big") | ((1 << (32 - prefixlen)) - 1)
    return _socket.inet_ntop(AF_INET, value.to_bytes(4, "big"))


def parse_prefix(text: str, family: int) -> int:
    """Return the prefix length that text names: "27", or for IPv4 also "255.255.255.224".

    Dotted netmasks are still accepted because older IPaddr2 configurations use them.
    A length of 0 is refused: a floating address covering the whole address space
    would claim every destination as on-link.
    """
    bits = _BITS[family]
    if text.isdigit() and text.isascii():
        length = int(text)
    elif family == AF_INET and "." in text:
        length = _netmask_length(text)
    else:
        raise ValueError(f"netmask {text!r} is neither a prefix length nor a dotted IPv4 netmask"
                         if family == AF_INET else f"prefix length {text!r} is not a number")
    if length == 0:
        raise ValueError(f"netmask {text!r} covers every address; use a prefix length 1..{bits}")
    if length > bits:
        raise ValueError(f"prefix length {text!r} is out of range 1..{bits}")
    return length


def _netmask_length(text: str) -> int:
    """The prefix length of a contiguous dotted IPv4 netmask."""
    try:
        value = int.from_bytes(_socket.inet_pton(AF_INET, text), "big")
    except OSError:
        raise ValueError(f"netmask {text!r} is not a dotted IPv4 netmask") from None
    length = 32 - ((~value & 0xFFFFFFFF) + 1).bit_length() + 1
    if value != _mask(AF_INET, length):
        raise ValueError(f"netmask {text!r} is not contiguous (ones then zeros)")
    return length


def transport_checksum(source: bytes, destination: bytes, protocol: int, segment: bytes) -> int:
    """The Internet checksum of a TCP segment or ICMPv6 message over the pseudo-header of
    its IP version, told by the length of the packed addresses (RFC 793 3.1, RFC 8200 8.1)."""
    if len(source) == 4:
        pseudo = _struct.pack("!4s4sxBH", source, destination, protocol, len(segment))
    else:
        pseudo = _struct.pack("!16s16sI3xB", source, destination, len(segment), protocol)
    return checksum(pseudo + segment)


TCP_HEADER = _struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, sum, urg
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10


def tcp_segment(source: bytes, source_port: int, destination: bytes, destination_port: int,
                *, seq: int, ack: int, flags: int, window: int) -> bytes:
    """A bare TCP header (20 bytes, no options, no data) from source to destination (packed
    addresses of one family), with its checksum: what a node sends for connections it has
    no socket for (a tickle ACK, a reset)."""
    header = TCP_HEADER.pack(source_port, destination_port, seq, ack, 5 << 4, flags, window,
                              0, 0)
    checksum = transport_checksum(source, destination, _socket.IPPROTO_TCP, header)
    return header[:16] + _struct.pack("!H", checksum) + header[18:]


def checksum(data: bytes) -> int:
    """The Internet checksum of data (RFC 1071): what an IPv4 header carries, and the
    transport checksums over their pseudo-header."""
    if len(data) % 2:
        data += b"\0"
    total = sum(_struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
