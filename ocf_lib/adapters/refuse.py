"""Refusing connections to an address this node has just given up, until its new owner has it.

When a floating address leaves a node, its clients' neighbour entries (ARP, NDP) still name
this node's MAC. A client that reconnects at once (every client stop has reset) sends its
SYN here; the address is gone (or, for a moment, its local route), and with forwarding off
the kernel drops the SYN without a word: no reset, no ICMP error. The client's connect()
then waits for its first SYN retransmission, 1 s, although the new owner has the address a
few hundred milliseconds later. A refuser answers each such SYN with the reset the kernel
would send for a closed port: connect() fails with ECONNREFUSED at once, and the client's
next try reaches the new owner as soon as that one has announced the address.

The refuser reads a packet socket on the address's interface whose classic BPF filter keeps
only what it acts on: TCP SYNs (no ACK, no RST) to the address in frames addressed to this
host (PACKET_HOST: never frames it merely sees, in promiscuous mode say), IPv6 only when
TCP follows the IPv6 header directly; and for the address's end, ARP frames naming it as
the sender's address and Neighbor Advertisements for it that this host did not send. The
reset goes back as a whole frame over the same socket, to the MAC the SYN came from: no
route, no neighbour lookup and no non-local source address are needed, and a SYN that came
through a router is answered through it. Frames tagged for a VLAN other than the socket's
are left alone.
"""
import _socket
import _struct
import errno

from ocf_lib.adapters import announce, inet

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
_PACKET_HOST, _PACKET_OUTGOING = 0, 4
_ETHERNET = _struct.Struct("!6s6sH")
_IPV4 = _struct.Struct("!BBHHHBBH4s4s")  # version+IHL, TOS, length, id, frag, TTL, proto, sum
_IPV6 = _struct.Struct("!IHBB16s16s")    # version+class+flow, payload length, next, hops
_TCP_START = _struct.Struct("!HHI")      # ports, sequence number
_TTL = 64
_KEEP = 256  # bytes of a frame the filter keeps: every header the refuser reads
_MIN_ETHERNET_FRAME = 60
_ICMPV6, _NEIGHBOR_ADVERTISEMENT = 58, 136
_FLAGS_LOOKED_AT = inet.TCP_SYN | inet.TCP_RST | inet.TCP_ACK

# Classic BPF (linux/filter.h): the opcodes the filter uses, and the ancillary data it reads.
_LD_W, _LD_H, _LD_B = 0x20, 0x28, 0x30  # A = frame[k] (32, 16 or 8 bits, network order)
_LDX_MSH = 0xB1                          # X = 4 * (frame[k] & 0xf): an IPv4 header's length
_LD_B_IND = 0x50                         # A = frame[X + k]
_AND = 0x54                              # A &= k
_JEQ, _JSET = 0x15, 0x45                 # A == k, A & k != 0
_RET = 0x06
_PKTTYPE = 0xFFFFF000 + 4                # SKF_AD_OFF + SKF_AD_PKTTYPE
_VLAN_TAG_PRESENT = 0xFFFFF000 + 48      # SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT


class RefuseError(Exception):
    """The refuser cannot listen on the interface; str() is one line for the log."""


class Syn:
    """A TCP SYN to the address: who sent it, and the numbers the reset must carry."""

    __slots__ = ("mac", "family", "client", "client_port", "port", "seq", "length")

    def __init__(self, mac: bytes, family: int, client: bytes, client_port: int, port: int,
                 seq: int, length: int) -> None:
        self.mac = mac                  # the frame's source: the client, or its router
        self.family = family
        self.client = client            # packed
        self.client_port = client_port
        self.port = port
        self.seq = seq
        self.length = length            # the SYN's length in sequence space: 1 + its data

    def __repr__(self) -> str:
        return (f"Syn({inet.canonical(self.family, self.client)}:{self.client_port} -> "
                f":{self.port}, seq={self.seq}, length={self.length})")


def program(family: int, address: bytes) -> list[tuple[int, int, int, int]]:
    """The classic BPF filter of a refuser for address (packed, of family): it keeps SYNs
    to address for this host, and what may announce address (ARP naming it as sender's
    address; ICMPv6 Neighbor Advertisements for it), never this host's own outgoing
    frames nor frames tagged for a VLAN; everything else never wakes the refuser."""
    words = list(_struct.unpack(f"!{len(address) // 4}I", address))
    if family == inet.AF_INET:
        code = [(_LD_W, _VLAN_TAG_PRESENT), ("jeq", 0, None, "drop"),
                (_LD_H, 12), ("jeq", announce.ETH_P_ARP, "announcement", None),
                ("jeq", ETH_P_IP, None, "drop"),
                (_LD_W, _PKTTYPE), ("jeq", _PACKET_HOST, None, "drop"),
                (_LD_B, 14 + 9), ("jeq", _socket.IPPROTO_TCP, None, "drop"),
                *_equal_words(14 + 16, words),                      # the destination
                (_LD_H, 14 + 6), ("jset", 0x1FFF, "drop", None),    # a later fragment
                (_LDX_MSH, 14), (_LD_B_IND, 14 + 13),               # the TCP flags
                (_AND, _FLAGS_LOOKED_AT), ("jeq", inet.TCP_SYN, "keep", "drop"),
                "announcement", (_LD_W, _PKTTYPE), ("jeq", _PACKET_OUTGOING, "drop", None),
                *_equal_words(14 + 14, words, "keep")]              # the sender's address
    else:
        code = [(_LD_W, _VLAN_TAG_PRESENT), ("jeq", 0, None, "drop"),
                (_LD_H, 12), ("jeq", announce.ETH_P_IPV6, None, "drop"),
                (_LD_B, 14 + 6), ("jeq", _ICMPV6, "announcement", None),
                ("jeq", _socket.IPPROTO_TCP, None, "drop"),
                (_LD_W, _PKTTYPE), ("jeq", _PACKET_HOST, None, "drop"),
                *_equal_words(14 + 24, words),                      # the destination
                (_LD_B, 54 + 13),                                   # the TCP flags
                (_AND, _FLAGS_LOOKED_AT), ("jeq", inet.TCP_SYN, "keep", "drop"),
                "announcement", (_LD_W, _PKTTYPE), ("jeq", _PACKET_OUTGOING, "drop", None),
                (_LD_B, 54), ("jeq", _NEIGHBOR_ADVERTISEMENT, None, "drop"),
                *_equal_words(54 + 8, words, "keep")]               # the target
    return _assemble([*code, "keep", (_RET, _KEEP), "drop", (_RET, 0)])


def _equal_words(offset: int, words: list[int], equal: str | None = None) -> list[object]:
    """Compare the bytes at offset with words (32 bits each): on to 'drop' at the first
    difference, to the label equal (None: the next instruction) when all are equal."""
    code: list[object] = []
    for n, word in enumerate(words):
        code += [(_LD_W, offset + 4 * n),
                 ("jeq", word, equal if n == len(words) - 1 else None, "drop")]
    return code


def _assemble(code: list[object]) -> list[tuple[int, int, int, int]]:
    """Instructions (code, jt, jf, k) from code written with labels: a str marks the next
    instruction; ("jeq"|"jset", k, true, false) jumps to a label, None meaning the next."""
    labels, at = {}, 0
    for item in code:
        if isinstance(item, str):
            labels[item] = at
        else:
            at += 1
    out: list[tuple[int, int, int, int]] = []
    for item in code:
        if isinstance(item, str):
            continue
        if item[0] in ("jeq", "jset"):
            _, k, true, false = item  # type: ignore[misc]
            here = len(out) + 1
            out.append((_JEQ if item[0] == "jeq" else _JSET,
                        labels[true] - here if true else 0,
                        labels[false] - here if false else 0, k))
        else:
            out.append((item[0], 0, 0, item[1]))  # type: ignore[index]
    return out


def parse_syn(frame: bytes, address: bytes) -> Syn | None:
    """The SYN in frame if it is a TCP SYN (no ACK, no RST) to address (packed) from a
    unicast sender, else None: the filter's choice checked again, and the numbers read."""
    if len(frame) < _ETHERNET.size or frame[6] & 1:  # a group MAC as source: invalid
        return None
    ethertype = _ETHERNET.unpack_from(frame)[2]
    if ethertype == ETH_P_IP and len(address) == 4 and len(frame) >= 14 + _IPV4.size:
        first, _, total, _, fragment, _, protocol, _, client, destination = \
            _IPV4.unpack_from(frame, 14)
        header = (first & 0xF) * 4
        if first >> 4 != 4 or header < _IPV4.size or fragment & 0x3FFF:
            return None
        family, tcp, data = inet.AF_INET, 14 + header, total - header
    elif ethertype == announce.ETH_P_IPV6 and len(address) == 16 and \
            len(frame) >= 14 + _IPV6.size:
        first, data, protocol, _, client, destination = _IPV6.unpack_from(frame, 14)
        if first >> 28 != 6:
            return None
        family, tcp = inet.AF_INET6, 14 + _IPV6.size
    else:
        return None
    if protocol != _socket.IPPROTO_TCP or destination != address or len(frame) < tcp + 20:
        return None
    client_port, port, seq = _TCP_START.unpack_from(frame, tcp)
    if frame[tcp + 13] & _FLAGS_LOOKED_AT != inet.TCP_SYN or inet.not_unicast(family, client):
        return None
    payload = max(data - (frame[tcp + 12] >> 4) * 4, 0)
    return Syn(frame[6:12], family, client, client_port, port, seq, 1 + payload)


def reset_frame(own_mac: bytes, address: bytes, syn: Syn) -> bytes:
    """The Ethernet frame that refuses syn as a closed port does (RFC 793 3.4): a TCP
    RST|ACK from address (packed) and the port the SYN asked for, sequence number 0,
    acknowledging the SYN, back to the MAC the SYN came from; padded to the Ethernet
    minimum, which not every driver adds to frames from a packet socket."""
    tcp = inet.tcp_segment(address, syn.port, syn.client, syn.client_port, seq=0,
                           ack=(syn.seq + syn.length) & 0xFFFFFFFF,
                           flags=inet.TCP_RST | inet.TCP_ACK, window=0)
    if syn.family == inet.AF_INET:
        ip = _IPV4.pack(0x45, 0, _IPV4.size + len(tcp), 0, 0x4000, _TTL, _socket.IPPROTO_TCP,
                        0, address, syn.client)  # DF set: the id may then be 0 (RFC 6864)
        ip = ip[:10] + _struct.pack("!H", inet.checksum(ip)) + ip[12:]
        ethertype = ETH_P_IP
    else:
        ip = _IPV6.pack(6 << 28, len(tcp), _socket.IPPROTO_TCP, _TTL, address, syn.client)
        ethertype = announce.ETH_P_IPV6
    frame = _ETHERNET.pack(syn.mac, own_mac, ethertype) + ip + tcp
    return frame.ljust(_MIN_ETHERNET_FRAME, b"\0")


def claimant(frame: bytes, address: bytes) -> bytes | None:
    """The MAC of whoever announces address (packed) in frame (ARP for IPv4, Neighbor
    Advertisement for IPv6), else None."""
    if len(address) == 4:
        return announce.arp_claimant(frame, address)
    return announce.na_claimant(frame, address)


class Refuser:
    """The refuser's packet socket on ifname for ip: from its opening on, the SYNs to ip
    (and announcements of ip) queue in it; answer() refuses those queued. Open it before
    the address starts to go, answer only once it is gone."""

    def __init__(self, ifname: str, ip: str) -> None:
        try:
            self.family, self.address = inet.parse_ip(ip)
            self.sock, self.mac = announce.open_link(
                ifname, ETH_P_ALL, purpose="refusing connections for a departed address",
                program=program(self.family, self.address))
        except (ValueError, announce.AnnounceError) as err:
            raise RefuseError(str(err)) from None
        self.ifname = ifname
        self.ip = ip
        self.refused = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def answer(self) -> bytes | None:
        """Refuse every SYN queued; stop at an announcement of the address by another MAC
        and return that MAC (the new owner), else None once the queue is empty. OSError
        when the interface fails (gone, down)."""
        while True:
            try:
                frame, source = self.sock.recvfrom(_KEEP, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            if source[2] == _PACKET_OUTGOING:
                continue
            owner = claimant(frame, self.address)
            if owner is not None and owner != self.mac:
                return owner
            syn = parse_syn(frame, self.address) if source[2] == _PACKET_HOST else None
            if syn is None:
                continue
            try:
                self.sock.send(reset_frame(self.mac, self.address, syn))
            except OSError as err:
                if err.errno != errno.ENOBUFS:  # a full queue drops one reset, not the refuser
                    raise
            self.refused += 1

    def close(self) -> None:
        self.sock.close()
