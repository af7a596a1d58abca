"""rtnetlink: the kernel's own view of links and addresses, and the few changes the agent
makes to them, without `ip`.

Monitor runs every few seconds on every node; asking the kernel directly over an
AF_NETLINK socket costs well under a millisecond, where spawning `ip -j addr` and parsing
JSON costs several. The changes that lie on a failover's path (adding and removing the
address, dropping its local route) are sent here too: a fork and exec of `ip` costs
milliseconds on an idle node and tens in a failover's rush, while the client waits.
`ocf_lib.adapters.iproute` checks their values and words their errors as `ip` does.
`Channel` is the netlink socket of any protocol; `ocf_lib.adapters.sock_diag` uses it for
its dumps and socket destroys.
"""

import _socket
import _struct

_NETLINK_ROUTE = 0
_RECV_SIZE = 65536  # the kernel sizes dump batches to the reader's buffer, up to 32 KiB

_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLM_F_EXCL, _NLM_F_CREATE = 0x200, 0x400
_NLM_F_CAPPED, _NLM_F_ACK_TLVS = 0x100, 0x200  # in an error: payload left out, TLVs follow
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 16, 18, 20, 21, 22
_RTM_DELROUTE = 25
_RTM_NEWADDRLABEL, _RTM_DELADDRLABEL, _RTM_GETADDRLABEL = 72, 73, 74
_SOL_NETLINK, _NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 270, 10, 11
_NLMSGERR_ATTR_MSG = 1

_NLMSGHDR = _struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFINFOMSG = _struct.Struct("=BxHiII")   # family, type, index, flags, change
_IFADDRMSG = _struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_RTMSG = _struct.Struct("=BBBBBBBBI")     # family, dst_len, src_len, tos, table, protocol,
#                                          scope, type, flags
_IFADDRLBLMSG = _struct.Struct("=BxBBII")  # family, prefixlen, flags, index, seq
_CACHEINFO = _struct.Struct("=IIII")     # preferred, valid, created, updated
_RTATTR = _struct.Struct("=HH")          # len, type
_U32 = _struct.Struct("=I")
_ERRNO = _struct.Struct("=i")

_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_OPERSTATE, _IFLA_EXT_MASK = 1, 3, 4, 16, 29
_RTEXT_FILTER_SKIP_STATS = 1 << 3  # leave out counters: they are most of a link's dump
_IFA_ADDRESS, _IFA_LOCAL, _IFA_LABEL, _IFA_BROADCAST, _IFA_CACHEINFO, _IFA_FLAGS = \
    1, 2, 3, 4, 6, 8
_RTA_DST, _RTA_OIF, _RTA_TABLE = 1, 4, 15
_IFAL_ADDRESS, _IFAL_LABEL = 1, 2
_RT_TABLE_LOCAL, _RTN_LOCAL, _RT_SCOPE_HOST, _RT_SCOPE_UNIVERSE = 255, 2, 254, 0
FOREVER = 0xFFFFFFFF  # an address lifetime without end

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFA_F_NOPREFIXROUTE = 0x200

# RFC 2863 operational states, named as `ip link` prints them.
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_ENODEV, _EPROTO = 19, 71
IFNAMSIZ = 16  # the kernel's size for interface names and address labels, with the NUL
_NOT_IN_IFNAMES = b"/: \t\n\v\f\r\xa0\0"  # the kernel's isspace() is true for 0xa0 too


class NetlinkError(OSError):
    """The kernel refused a request; errno is the kernel's error number, kernel_message
    its own words for a refused change (extended ack), when it gave any."""

    kernel_message: str | None = None


class Link:
    """One network interface as the kernel reports it."""

    __slots__ = ("index", "name", "flags", "operstate", "mac", "mtu")

    def __init__(self, index: int, name: str, flags: int, operstate: str, mac: bytes,
                 mtu: int) -> None:
        self.index = index
        self.name = name
        self.flags = flags
        self.operstate = operstate
        self.mac = mac
        self.mtu = mtu

    @property
    def up(self) -> bool:
        """Administratively up (`ip link set DEV up`)."""
        return bool(self.flags & IFF_UP)

    @property
    def lower_up(self) -> bool:
        """Carrier present: the cable (or veth peer) is there and up."""
        return bool(self.flags & IFF_LOWER_UP)

    def __repr__(self) -> str:
        return (f"Link(index={self.index}, name={self.name!r}, flags={self.flags:#x}, "
                f"operstate={self.operstate!r}, mac={self.mac.hex(':')!r}, mtu={self.mtu})")


class Address:
    """One address on an interface. `address` is the local address (IFA_LOCAL, which
    differs from IFA_ADDRESS only on point-to-point links, where that is the peer)."""

    __slots__ = ("family", "index", "address", "prefixlen", "scope", "flags", "label",
                 "broadcast")

    def __init__(self, family: int, index: int, address: str, prefixlen: int, scope: int,
                 flags: int, label: str | None, broadcast: str | None) -> None:
        self.family = family
        self.index = index
        self.address = address
        self.prefixlen = prefixlen
        self.scope = scope
        self.flags = flags
        self.label = label
        self.broadcast = broadcast

    @property
    def tentative(self) -> bool:
        """IPv6 duplicate address detection still running: not yet usable."""
        return bool(self.flags & IFA_F_TENTATIVE)

    @property
    def dadfailed(self) -> bool:
        """IPv6 duplicate address detection found another host using this address."""
        return bool(self.flags & IFA_F_DADFAILED)

    def __repr__(self) -> str:
        return (f"Address(family={self.family}, index={self.index}, address={self.address!r}, "
                f"prefixlen={self.prefixlen}, scope={self.scope}, flags={self.flags:#x}, "
                f"label={self.label!r}, broadcast={self.broadcast!r})")


def links() -> list[Link]:
    """Every interface in this network namespace."""
    return [_link(body) for body in _exchange(_RTM_GETLINK, _link_request(), _RTM_NEWLINK,
                                              dump=True)]


def valid_ifname(name: str, what: str = "interface") -> str:
    """name, when the kernel could give an interface that name (its dev_valid_name: 1 to
    15 bytes, not '.' or '..', no '/', ':' or whitespace), it is printable (it shows in
    exit reasons and log lines) and it does not start with '-' (names reach `ip`'s command
    line, where such a one reads as an option); else ValueError, which says what the rule
    is. Every check of an interface name is this one: a parameter's (nic), a packet
    socket's, an `ip` argument's."""
    encoded = name.encode("utf-8", "surrogateescape")
    if (not 0 < len(encoded) < IFNAMSIZ or name in (".", "..") or name.startswith("-")
            or any(byte in _NOT_IN_IFNAMES for byte in encoded) or not name.isprintable()):
        raise ValueError(f"{what} {name!r} is not a valid interface name (1-15 printable "
                         f"bytes, not '.' or '..', no '/', ':', whitespace or leading '-')")
    return name


def valid_label(label: str, dev: str) -> str:
    """label, when the kernel keeps it for an IPv4 address on dev, as `ip addr add ... label`
    takes it: dev itself or dev:SUFFIX, 15 bytes at most; else ValueError."""
    if label != dev and not label.startswith(f"{dev}:"):
        raise ValueError(f"label {label!r} must be {dev!r} or begin with {dev + ':'!r}")
    if len(label.encode("utf-8", "surrogateescape")) >= IFNAMSIZ:
        raise ValueError(f"label {label!r} is longer than {IFNAMSIZ - 1} bytes")
    return label


def link_by_name(name: str) -> Link | None:
    """The interface called name, or None when there is none (asks for that one only)."""
    try:
        valid_ifname(name)
    except ValueError:  # no interface can have it
        return None
    request = _link_request(_attr(_IFLA_IFNAME, name.encode("utf-8", "surrogateescape")
                                  + b"\0"))
    try:
        bodies = _exchange(_RTM_GETLINK, request, _RTM_NEWLINK, dump=False)
    except NetlinkError as err:
        if err.errno == _ENODEV:
            return None
        raise
    return _link(bodies[0])


def addresses(family: int = 0, index: int = 0) -> list[Address]:
    """Addresses of one family (0 = all; the kernel filters) on interface number index
    (0 = all)."""
    request = _IFADDRMSG.pack(family, 0, 0, 0, 0)
    found = [_address(body) for body in _exchange(_RTM_GETADDR, request, _RTM_NEWADDR,
                                                  dump=True)]
    return [a for a in found if not index or a.index == index]


def add_address(index: int, family: int, packed: bytes, prefixlen: int, *,
                broadcast: bytes | None = None, label: str | None = None, flags: int = 0,
                preferred_lft: int | None = None, valid_lft: int | None = None) -> None:
    """Add the address packed/prefixlen to interface number index (RTM_NEWADDR, refused
    when it is there already), as `ip addr add` sends it: local and address alike, an
    IPv4 loopback address in host scope, lifetimes only when one is given (the other
    FOREVER)."""
    scope = _RT_SCOPE_HOST if family == _socket.AF_INET and packed[0] == 127 else \
        _RT_SCOPE_UNIVERSE
    attrs = [_attr(_IFA_LOCAL, packed), _attr(_IFA_ADDRESS, packed)]
    if broadcast is not None:
        attrs.append(_attr(_IFA_BROADCAST, broadcast))
    if label is not None:
        attrs.append(_attr(_IFA_LABEL, label.encode() + b"\0"))
    if flags > 0xFF:
        attrs.append(_attr(_IFA_FLAGS, _U32.pack(flags)))
    if preferred_lft is not None or valid_lft is not None:
        attrs.append(_attr(_IFA_CACHEINFO, _CACHEINFO.pack(
            FOREVER if preferred_lft is None else preferred_lft,
            FOREVER if valid_lft is None else valid_lft, 0, 0)))
    _change(_RTM_NEWADDR, _IFADDRMSG.pack(family, prefixlen, flags & 0xFF, scope, index),
            attrs, _NLM_F_CREATE | _NLM_F_EXCL)


def delete_address(index: int, family: int, packed: bytes, prefixlen: int) -> None:
    """Remove the address packed/prefixlen from interface number index (RTM_DELADDR)."""
    _change(_RTM_DELADDR, _IFADDRMSG.pack(family, prefixlen, 0, 0, index),
            [_attr(_IFA_LOCAL, packed), _attr(_IFA_ADDRESS, packed)])


def delete_local_route(index: int, family: int, packed: bytes) -> None:
    """Remove the route of the local table that delivers packets for the address packed
    to this host, through interface number index (RTM_DELROUTE)."""
    scope = _RT_SCOPE_HOST if family == _socket.AF_INET else _RT_SCOPE_UNIVERSE
    _change(_RTM_DELROUTE, _RTMSG.pack(family, len(packed) * 8, 0, 0, _RT_TABLE_LOCAL, 0,
                                       scope, _RTN_LOCAL, 0),
            [_attr(_RTA_DST, packed), _attr(_RTA_OIF, _U32.pack(index)),
             _attr(_RTA_TABLE, _U32.pack(_RT_TABLE_LOCAL))])


def address_labels() -> dict[tuple[str, int], int]:
    """The IPv6 address label table (RFC 6724 policy, `ip addrlabel list`): the label of
    each prefix, by (address, prefix length)."""
    found = {}
    for body in _exchange(_RTM_GETADDRLABEL, _IFADDRLBLMSG.pack(_socket.AF_INET6, 0, 0, 0, 0),
                          _RTM_NEWADDRLABEL, dump=True):
        family, prefixlen, _, _, _ = _IFADDRLBLMSG.unpack_from(body)
        attrs = attributes(body, _IFADDRLBLMSG.size)
        if family == _socket.AF_INET6 and _IFAL_ADDRESS in attrs and _IFAL_LABEL in attrs:
            found[(_socket.inet_ntop(family, attrs[_IFAL_ADDRESS]), prefixlen)] = \
                _U32.unpack(attrs[_IFAL_LABEL])[0]
    return found


def add_address_label(packed: bytes, prefixlen: int, label: int) -> None:
    """Give the IPv6 prefix packed/prefixlen the address label (RTM_NEWADDRLABEL), as
    `ip addrlabel add prefix P/L label N` does; refused when the prefix has one."""
    _change(_RTM_NEWADDRLABEL, _IFADDRLBLMSG.pack(_socket.AF_INET6, prefixlen, 0, 0, 0),
            [_attr(_IFAL_ADDRESS, packed), _attr(_IFAL_LABEL, _U32.pack(label))],
            _NLM_F_CREATE | _NLM_F_EXCL)


def delete_address_label(packed: bytes, prefixlen: int) -> None:
    """Remove the label of the IPv6 prefix packed/prefixlen (RTM_DELADDRLABEL), whatever
    its value: the kernel wants a label in the request and does not compare it."""
    _change(_RTM_DELADDRLABEL, _IFADDRLBLMSG.pack(_socket.AF_INET6, prefixlen, 0, 0, 0),
            [_attr(_IFAL_ADDRESS, packed), _attr(_IFAL_LABEL, _U32.pack(0))])


def _change(msg_type: int, header: bytes, attrs: list[bytes], flags: int = 0) -> None:
    """Send one change and wait for the kernel's acknowledgement; NetlinkError, with the
    kernel's own words when it gives them, when it refuses."""
    channel = Channel()
    try:
        channel.sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
        channel.sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
        channel.ask(msg_type, b"".join((header, *attrs)), _NLMSG_ERROR, ack=True, flags=flags)
    finally:
        channel.close()


def _link_request(*attrs: bytes) -> bytes:
    """An RTM_GETLINK body: any ifinfomsg, plus a request to leave out the counters."""
    return b"".join((_IFINFOMSG.pack(0, 0, 0, 0, 0), *attrs,
                     _attr(_IFLA_EXT_MASK, _U32.pack(_RTEXT_FILTER_SKIP_STATS))))


class Events:
    """The kernel's notifications of link and address changes, as they happen: a socket
    subscribed to rtnetlink's link and IPv4/IPv6 address groups. `fileno()` is for poll;
    `read()` returns what one datagram told, as ("link", Link), ("dellink", Link),
    ("addr", Address) or ("deladdr", Address)."""

    _GROUPS = 0x1 | 0x10 | 0x100  # RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR
    _KINDS = {_RTM_NEWLINK: "link", 17: "dellink", _RTM_NEWADDR: "addr", 21: "deladdr"}

    def __init__(self) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                   _NETLINK_ROUTE)
        self.sock.bind((0, self._GROUPS))

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[tuple[str, Link | Address]]:
        data = self.sock.recv(_RECV_SIZE)
        events: list[tuple[str, Link | Address]] = []
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            body = data[offset + _NLMSGHDR.size:offset + length]
            offset += (length + 3) & ~3
            name = self._KINDS.get(kind)
            if name in ("link", "dellink"):
                events.append((name, _link(body)))
            elif name in ("addr", "deladdr"):
                events.append((name, _address(body)))
        return events

    def close(self) -> None:
        self.sock.close()


def _attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to the 4-byte alignment netlink requires."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def attributes(body: bytes, offset: int) -> dict[int, bytes]:
    """The attributes (rtattrs) of a message body from offset on, by type (nesting flags
    stripped)."""
    found = {}
    end = len(body)
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            break
        found[kind & 0x3FFF] = body[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


class Channel:
    """One netlink socket of a protocol (rtnetlink unless told) for a series of requests,
    so that many of them (one per connection to close, say) cost no socket each."""

    def __init__(self, protocol: int = _NETLINK_ROUTE) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                   protocol)
        self.seq = 0

    def ask(self, msg_type: int, payload: bytes, reply_type: int, *, dump: bool = False,
            ack: bool = False, flags: int = 0) -> list[bytes]:
        """Send one request (with the extra header flags) and return the bodies of its
        replies of reply_type: for a dump, every part until NLMSG_DONE; otherwise the
        single answer, or with ack none (the kernel's acknowledgement). A refusal raises
        NetlinkError."""
        self.seq += 1
        flags |= _NLM_F_REQUEST | (_NLM_F_DUMP if dump else 0) | (_NLM_F_ACK if ack else 0)
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, flags,
                                      self.seq, 0) + payload)
        bodies: list[bytes] = []
        while not _collect(self.sock.recv(_RECV_SIZE), self.seq, reply_type, bodies):
            if bodies and not dump and not ack:
                break
        return bodies

    def close(self) -> None:
        self.sock.close()


def _exchange(msg_type: int, payload: bytes, reply_type: int, *, dump: bool) -> list[bytes]:
    """One rtnetlink request on a socket of its own (see Channel.ask)."""
    channel = Channel()
    try:
        return channel.ask(msg_type, payload, reply_type, dump=dump)
    finally:
        channel.close()


def _collect(data: bytes, seq: int, reply_type: int, bodies: list[bytes]) -> bool:
    """Append the replies in one datagram to bodies; True when the dump is complete."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, msg_seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            raise NetlinkError(_EPROTO, "malformed netlink message")
        body = data[offset + _NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3
        if msg_seq != seq:
            continue
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            code = -_ERRNO.unpack_from(body)[0]
            if code:
                error = _error(code)
                error.kernel_message = _ext_ack_message(body, flags)
                raise error
            return True
        if kind == reply_type:
            bodies.append(body)
    return False


def _error(code: int) -> NetlinkError:
    """The kernel's refusal with its errno text. `os` is imported only here: with python
    -S nothing else loads it, and it would cost the monitor path a millisecond."""
    import os
    return NetlinkError(code, f"netlink request failed: {os.strerror(code)}")


def _ext_ack_message(body: bytes, flags: int) -> str | None:
    """The kernel's text in an error reply (NLMSGERR_ATTR_MSG), if it sent one: after the
    error number and the request's header (and the request itself, unless capped)."""
    if not flags & _NLM_F_ACK_TLVS or len(body) < _ERRNO.size + _NLMSGHDR.size:
        return None
    offset = _ERRNO.size + (_NLMSGHDR.size if flags & _NLM_F_CAPPED
                            else _NLMSGHDR.unpack_from(body, _ERRNO.size)[0])
    text = _cstring(attributes(body, (offset + 3) & ~3).get(_NLMSGERR_ATTR_MSG, b""))
    return text or None


def _link(body: bytes) -> Link:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(body)
    attrs = attributes(body, _IFINFOMSG.size)
    operstate = attrs.get(_IFLA_OPERSTATE, b"\0")[0]
    mtu = attrs.get(_IFLA_MTU)
    return Link(index, _cstring(attrs.get(_IFLA_IFNAME, b"")), flags,
                _OPERSTATES[operstate] if operstate < len(_OPERSTATES) else str(operstate),
                attrs.get(_IFLA_ADDRESS, b""), _U32.unpack(mtu)[0] if mtu else 0)


def _address(body: bytes) -> Address:
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(body)
    attrs = attributes(body, _IFADDRMSG.size)
    packed = attrs.get(_IFA_LOCAL) or attrs[_IFA_ADDRESS]
    if _IFA_FLAGS in attrs:
        flags = _U32.unpack(attrs[_IFA_FLAGS])[0]
    label = attrs.get(_IFA_LABEL)
    broadcast = attrs.get(_IFA_BROADCAST)
    return Address(family, index, _socket.inet_ntop(family, packed), prefixlen, scope, flags,
                   None if label is None else _cstring(label),
                   None if broadcast is None else _socket.inet_ntop(family, broadcast))


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
