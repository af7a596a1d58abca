"""Telling the link that a floating address has moved, and asking whether it is taken.

IPv4 neighbours learn the new owner from gratuitous ARP, IPv6 neighbours from unsolicited
Neighbor Advertisements; before adding an IPv4 address an RFC 5227 ARP probe asks whether
another host already answers for it.

The frames are built here with `struct` and sent over an AF_PACKET socket instead of running
`arping` or heartbeat's `send_arp`: one process less per start, and the same frames on every
node whichever arping variant happens to be installed.
"""
import _socket
import _struct
import errno
import select
import syslog
import time

from ocf_lib.adapters import inet, netlink

DEFAULT_COUNT = 5
DEFAULT_INTERVAL_MS = 200
ARP_MODES = ("request", "reply")

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
_ARPHRD_ETHER = 1
_PACKET_OUTGOING = 4
_ARP_REQUEST, _ARP_REPLY = 1, 2
_BROADCAST_MAC = b"\xff" * 6
_ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
_ALL_NODES = _socket.inet_pton(_socket.AF_INET6, "ff02::1")
_ICMPV6 = 58
_NEIGHBOR_ADVERTISEMENT = 136
_NA_OVERRIDE = 0x20000000
_TARGET_LLADDR_OPTION = 2
_MIN_ETHERNET_FRAME = 60
_SO_ATTACH_FILTER = 26  # on every Linux architecture but parisc; _socket does not name it
_ANNOUNCING = "sending ARP or Neighbor Advertisements"
_ETHERNET = _struct.Struct("!6s6sH")
_ARP = _struct.Struct("!HHBBH6s4s6s4s")


class AnnounceError(Exception):
    """Announcing or probing failed; str() is one line an operator can act on."""


def announce(ifname: str, ip: str, *, count: int = DEFAULT_COUNT,
             interval_ms: int = DEFAULT_INTERVAL_MS, mode: str = "request",
             mac: bytes | None = None) -> None:
    """Send `count` announcements of ip out of ifname, interval_ms apart: gratuitous ARPs
    for an IPv4 address, unsolicited Neighbor Advertisements (to all nodes, with the
    Override flag, so that receivers replace the link-layer address they have cached)
    for an IPv6 one.

    mode "request" sends ARP requests (what `arping -U` sends); mode "reply" sends ARP
    replies (`arping -A`), which some switches and old hosts only learn from. mode is
    checked for both families, so that a misspelt value is reported whatever the address,
    but only IPv4 uses it: Neighbor Advertisements have no request form. mac, when given,
    replaces the interface's own address as the announced hardware address.
    """
    sock, frame = _open_announcement(ifname, ip, count, interval_ms, mode, mac)
    try:
        _send_repeatedly(sock, ifname, frame, count, interval_ms)
    finally:
        sock.close()


def spawn_background(ifname: str, ip: str, *, count: int = DEFAULT_COUNT,
                     interval_ms: int = DEFAULT_INTERVAL_MS, mode: str = "request",
                     mac: bytes | None = None) -> int:
    """Send the first announcement now, the other count-1 from a detached process, and
    return that process's pid (0 when count is 1 and nothing is left to send).

    The first frame goes out before this returns, so a takeover is known on the link by
    the time the caller reports success; the repeats, interval_ms apart, need nobody to wait.

    Every check that does not depend on time (arguments, interface, permission) runs
    here, before the fork, so that such errors raise AnnounceError in the caller. The
    announcer is detached (see ocf_lib.adapters.process.spawn_detached): never the
    caller's zombie, ended by a plain kill. A send failure in the background is reported
    to syslog.
    """
    from ocf_lib.adapters import process
    sock, frame = _open_announcement(ifname, ip, count, interval_ms, mode, mac)
    try:
        if count > 0:
            _send(sock, ifname, frame)
        if count <= 1:
            return 0
        return process.spawn_detached(
            lambda: _repeat(sock, ifname, ip, frame, count - 1, interval_ms),
            keep=(sock.fileno(),))
    except OSError:
        raise AnnounceError(f"could not start the background announcer for {ip} on "
                            f"{ifname}") from None
    finally:
        sock.close()


def arp_probe(ifname: str, ip: str, *, timeout_ms: int = 1000, tries: int = 3) -> bytes | None:
    """Return the MAC address of another host that answers for IPv4 address ip, or None.

    Each try sends one RFC 5227 probe (sender IP 0.0.0.0, so that no neighbour caches
    anything from it) and listens up to timeout_ms for a reply, or for any ARP frame
    from another MAC that gives ip as its sender address; the worst case therefore takes
    tries * timeout_ms. Another host's own probe for ip (sender 0.0.0.0) does not count:
    it claims nothing yet.
    """
    packed = _address(ip, _socket.AF_INET)
    if tries < 1 or timeout_ms < 0:
        raise AnnounceError(f"ARP probe needs tries >= 1 and timeout_ms >= 0, not {tries} and "
                            f"{timeout_ms}")
    sock, own_mac = open_link(ifname, ETH_P_ARP)
    probe = arp_frame(_ARP_REQUEST, own_mac, bytes(4), bytes(6), packed)
    try:
        for _ in range(tries):
            _send(sock, ifname, probe)
            claimant = _await_claim(sock, own_mac, packed, time.monotonic() + timeout_ms / 1000)
            if claimant is not None:
                return claimant
        return None
    finally:
        sock.close()


def format_mac(mac: bytes) -> str:
    """The MAC address as `ip` prints it, e.g. 02:00:00:00:00:01."""
    return mac.hex(":")


def arp_frame(op: int, sender_mac: bytes, sender_ip: bytes, target_mac: bytes,
              target_ip: bytes) -> bytes:
    """A broadcast Ethernet frame carrying one IPv4-over-Ethernet ARP packet.

    It is padded to the 60-byte Ethernet minimum here because not every driver pads
    frames handed to it by a packet socket.
    """
    header = _ETHERNET.pack(_BROADCAST_MAC, sender_mac, ETH_P_ARP)
    body = _ARP.pack(1, 0x0800, 6, 4, op, sender_mac, sender_ip, target_mac, target_ip)
    return (header + body).ljust(_MIN_ETHERNET_FRAME, b"\0")


def na_frame(mac: bytes, ip6: bytes) -> bytes:
    """An Ethernet frame with an unsolicited Neighbor Advertisement for ip6, from ip6 to
    ff02::1: Override set, Solicited and Router clear, mac as the target link-layer address.

    Receivers drop Neighbor Discovery packets whose hop limit is not 255 (RFC 4861 7.1.2),
    proof that they came from the link itself.
    """
    icmp = _struct.pack("!BBHI16sBB6s", _NEIGHBOR_ADVERTISEMENT, 0, 0, _NA_OVERRIDE, ip6,
                       _TARGET_LLADDR_OPTION, 1, mac)
    checksum = inet.transport_checksum(ip6, _ALL_NODES, _ICMPV6, icmp)
    icmp = icmp[:2] + _struct.pack("!H", checksum) + icmp[4:]
    ipv6 = _struct.pack("!IHBB16s16s", 6 << 28, len(icmp), _ICMPV6, 255, ip6, _ALL_NODES)
    return _ETHERNET.pack(_ALL_NODES_MAC, mac, ETH_P_IPV6) + ipv6 + icmp


def arp_claimant(frame: bytes, ip: bytes) -> bytes | None:
    """The sender MAC of an IPv4 ARP request or reply whose sender address is ip, else None."""
    if len(frame) < _ETHERNET.size + _ARP.size:
        return None
    ethertype = _ETHERNET.unpack_from(frame)[2]
    htype, ptype, hlen, plen, op, sha, spa, _, _ = _ARP.unpack_from(frame, _ETHERNET.size)
    if ethertype != ETH_P_ARP or (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    return sha if op in (_ARP_REQUEST, _ARP_REPLY) and spa == ip else None


def na_claimant(frame: bytes, ip6: bytes) -> bytes | None:
    """The source MAC of an IPv6 Neighbor Advertisement for ip6 (solicited or not, the
    ICMPv6 message directly after the IPv6 header), else None. One whose hop limit is not
    255 claims nothing: every neighbour drops it (RFC 4861 7.1.2)."""
    if len(frame) < _ETHERNET.size + 40 + 24:
        return None
    source, ethertype = _ETHERNET.unpack_from(frame)[1:]
    next_header, hop_limit = frame[20], frame[21]
    if (ethertype != ETH_P_IPV6 or frame[14] >> 4 != 6 or next_header != _ICMPV6
            or hop_limit != 255 or frame[54] != _NEIGHBOR_ADVERTISEMENT):
        return None
    return source if frame[62:78] == ip6 else None


def _open_announcement(ifname: str, ip: str, count: int, interval_ms: int, mode: str,
                       mac: bytes | None) -> tuple[_socket.socket, bytes]:
    """Check every argument, open the socket and build the frame to repeat.

    All of it happens before the first frame goes out, so that a bad argument never
    leaves a half-sent announcement behind.
    """
    packed = _address(ip, None)
    if mode not in ARP_MODES:
        raise AnnounceError(f"ARP mode {mode!r} is neither 'request' nor 'reply'")
    if count < 0 or interval_ms < 0:
        raise AnnounceError(f"announcement needs count >= 0 and interval_ms >= 0, not {count} "
                            f"and {interval_ms}")
    if mac is not None and len(mac) != 6:
        raise AnnounceError(f"MAC address {mac.hex(':')!r} does not have 6 bytes")
    sock, own_mac = open_link(ifname, 0)
    source = mac or own_mac
    if len(packed) == 16:
        return sock, na_frame(source, packed)
    if mode == "reply":
        # Linux treats an ARP reply as gratuitous only when its target hardware address
        # repeats the sender's (as `arping -A` sends it); otherwise it may keep its entry.
        return sock, arp_frame(_ARP_REPLY, source, packed, source, packed)
    return sock, arp_frame(_ARP_REQUEST, source, packed, bytes(6), packed)


def _address(ip: str, family: int | None) -> bytes:
    """The packed form of ip, which must be of family unless family is None."""
    try:
        found, packed = inet.parse_ip(ip)
    except ValueError as err:
        raise AnnounceError(str(err)) from None
    if family is not None and found != family:
        wanted = "IPv4" if family == _socket.AF_INET else "IPv6"
        raise AnnounceError(f"{ip!r} is not an {wanted} address")
    return packed


def open_link(ifname: str, ethertype: int, *, purpose: str = _ANNOUNCING,
              program: list[tuple[int, int, int, int]] | None = None
              ) -> tuple[_socket.socket, bytes]:
    """A packet socket bound to ifname and receiving ethertype (0: nothing; ETH_P_ALL:
    every frame, outgoing ones too), and the interface's MAC address. purpose names what
    the socket is for in the errors (what needs CAP_NET_RAW, what works on Ethernet only).

    program, a classic BPF filter (instructions as (code, jt, jf, k)), is attached before
    the socket is bound, so that from the first frame on only those it keeps are queued:
    the socket is opened for no protocol, which receives nothing until bind names one.

    The MAC comes from the bound socket rather than /sys/class/net/<ifname>/address:
    sysfs shows the network namespace it was mounted in, which after a bare setns() is
    not the caller's.
    """
    try:
        netlink.valid_ifname(ifname)
    except ValueError as err:  # also keeps a hostile name out of any path it may reach
        raise AnnounceError(str(err)) from None
    try:
        sock = _socket.socket(_socket.AF_PACKET, _socket.SOCK_RAW, 0)
    except PermissionError:
        raise AnnounceError(f"opening a raw packet socket was refused: {purpose} needs root or "
                            f"CAP_NET_RAW") from None
    except OSError as err:
        raise AnnounceError(f"cannot open a raw packet socket: {err.strerror}") from None
    try:
        if program:
            _attach_filter(sock, program)
        sock.bind((ifname, ethertype))
        hatype, mac = sock.getsockname()[3:5]
    except OSError as err:
        sock.close()
        if err.errno == errno.ENODEV:
            raise AnnounceError(f"interface {ifname!r} does not exist") from None
        raise AnnounceError(f"cannot bind to interface {ifname!r}: {err.strerror}") from None
    if hatype != _ARPHRD_ETHER or len(mac) != 6:
        sock.close()
        raise AnnounceError(f"interface {ifname!r} is not Ethernet (hardware type {hatype}): "
                            f"{purpose} works on Ethernet links only")
    return sock, mac


def _attach_filter(sock: _socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: struct sock_fprog holds the instructions' address, so they must
    sit in memory whose address Python can tell. `_ctypes`, the extension module under
    ctypes, gives one for 0.6 ms; `array.buffer_info()` costs 3 ms (array registers
    itself with collections.abc, which loads collections) and the ctypes package 10 ms,
    on stop's path, while the clients wait."""
    import _ctypes

    class Byte(_ctypes._SimpleCData):
        _type_ = "B"

    code = b"".join(_struct.pack("=HBBI", *op) for op in program)
    instructions = (Byte * len(code)).from_buffer_copy(code)
    sock.setsockopt(_socket.SOL_SOCKET, _SO_ATTACH_FILTER,
                    _struct.pack("@HP", len(program), _ctypes.addressof(instructions)))


def _send_repeatedly(sock: _socket.socket, ifname: str, frame: bytes, count: int,
                     interval_ms: int) -> None:
    """Send frame count times, interval_ms apart, with no sleep after the last.

    The schedule is fixed from the start so that slow sends do not stretch it.
    """
    start = time.monotonic()
    for n in range(count):
        delay = start + n * interval_ms / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        _send(sock, ifname, frame)


def _send(sock: _socket.socket, ifname: str, frame: bytes) -> None:
    try:
        sock.send(frame)
    except OSError as err:
        if err.errno == errno.ENETDOWN:
            raise AnnounceError(f"interface {ifname!r} is down; nothing can be sent on it") from None
        raise AnnounceError(f"sending on interface {ifname!r} failed: {err.strerror}") from None


def _await_claim(sock: _socket.socket, own_mac: bytes, ip: bytes, deadline: float
                 ) -> bytes | None:
    """The MAC of the first other host that claims ip before deadline, else None."""
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return None
        frame, address = sock.recvfrom(256)
        if address[2] == _PACKET_OUTGOING:
            continue
        claimant = arp_claimant(frame, ip)
        if claimant is not None and claimant != own_mac:
            return claimant
    return None


def _repeat(sock: _socket.socket, ifname: str, ip: str, frame: bytes, count: int,
            interval_ms: int) -> None:
    """In the background announcer: send the count repeats after the first, interval_ms
    apart; a failure goes to syslog (nobody else is left to hear of it)."""
    try:
        time.sleep(interval_ms / 1000)
        _send_repeatedly(sock, ifname, frame, count, interval_ms)
    except AnnounceError as err:
        syslog.syslog(syslog.LOG_ERR, f"background announcement of {ip} on {ifname} failed: {err}")
        raise
