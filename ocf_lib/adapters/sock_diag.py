"""TCP connections on a local address, listed and closed through the kernel's sock_diag
netlink interface (what `ss` and `ss -K` use), without running a program.

Why: when a floating address leaves a node, the connections this node holds on it stay
open. A client that is only reading (an idle Kubernetes watch) never learns they are dead
and waits for its own timeout, tens of seconds. Destroying them (SOCK_DESTROY) makes the
kernel send each client a reset at once, so it reconnects to the address's new owner.
Destroy while the address is still on the node: once it is gone, the kernel has no route
for a reset from it and the client hears nothing (checked on this platform).

SOCK_DESTROY needs CAP_NET_ADMIN and a kernel built with CONFIG_INET_DIAG_DESTROY;
without it `destroy` raises Unsupported, which the caller reports as a warning.
"""
import _socket
import struct

from ocf_lib.adapters import inet, netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY, _SOCK_DESTROY = 20, 21
# struct inet_diag_req_v2: family, protocol, extensions, pad, states, then the socket id.
_REQUEST = struct.Struct("=BBBxI")
# struct inet_diag_sockid: ports (big-endian), addresses (16 bytes each, network order),
# interface and cookie (host order). Kept raw: SOCK_DESTROY names a socket by it.
_SOCKID_SIZE = 48
_PORTS = struct.Struct("!HH")
# struct inet_diag_msg: family, state, timer, retransmits, then the socket id.
_MESSAGE_HEAD = struct.Struct("=BBBB")

# TCP states (include/net/tcp_states.h) worth closing: every one with a peer that may still
# be waiting. LISTEN (a server's own socket) and TIME_WAIT (no longer a socket) are left.
ESTABLISHED, _SYN_SENT, _SYN_RECV, _FIN_WAIT1, _FIN_WAIT2 = 1, 2, 3, 4, 5
TIME_WAIT, _CLOSE_WAIT, _LAST_ACK, _CLOSING = 6, 8, 9, 11
_STATES = sum(1 << s for s in (ESTABLISHED, _SYN_SENT, _SYN_RECV, _FIN_WAIT1, _FIN_WAIT2,
                               _CLOSE_WAIT, _LAST_ACK, _CLOSING))
_LISTEN = 10
_ENOENT, _EOPNOTSUPP = 2, 95
_V4_MAPPED = bytes(10) + b"\xff\xff"
_SKV6ONLY = 11  # INET_DIAG_SKV6ONLY: sent for every IPv6 listening socket


class Unsupported(OSError):
    """This kernel cannot destroy sockets (no CONFIG_INET_DIAG_DESTROY)."""


class Connection:
    """One TCP socket: its family, state, local and remote (address, port), and the
    kernel's id for it."""

    def __init__(self, family: int, state: int, sockid: bytes) -> None:
        self.family = family
        self.state = state
        self.sockid = sockid
        sport, dport = _PORTS.unpack_from(sockid)
        size = 4 if family == _socket.AF_INET else 16
        self.local = (_socket.inet_ntop(family, sockid[4:4 + size]), sport)
        self.remote = (_socket.inet_ntop(family, sockid[20:20 + size]), dport)

    def __repr__(self) -> str:
        return f"Connection({self.local[0]}:{self.local[1]} <- {self.remote[0]}:{self.remote[1]})"


def on_address(ip: str) -> list[Connection]:
    """The TCP connections accepted on ip by a socket that still listens there (or on the
    wildcard address; for IPv4 also as ::ffff:ip by a dual-stack socket), in every state but
    LISTEN and TIME_WAIT.

    A dump of connections walks the kernel's whole table of established sockets, shared by
    every network namespace and sized by the machine's memory (about 2 ms with 24 GiB), so
    it is made only for a family in which something listens that could have accepted them:
    a dump of listeners alone (a small table) tells."""
    return on_addresses([ip])[ip]


def on_addresses(ips: list[str]) -> dict[str, list[Connection]]:
    """on_address() of each of ips, with the dumps of one look shared by all of them: what
    a node's watcher pays to follow many addresses stays that of one."""
    channel = netlink.Channel(_NETLINK_SOCK_DIAG)
    try:
        listeners: dict[int, list[bytes]] = {}

        def listening(family: int) -> list[bytes]:
            if family not in listeners:
                listeners[family] = _dump(channel, family, 1 << _LISTEN)
            return listeners[family]

        owners = {form: ip for ip in ips for form in _accepting(listening, *inet.parse_ip(ip))}
        found: dict[str, list[Connection]] = {ip: [] for ip in ips}
        for conn in _matching(channel, set(owners), _STATES):
            size = 4 if conn.family == _socket.AF_INET else 16
            found[owners[conn.family, conn.sockid[4:4 + size]]].append(conn)
        return found
    finally:
        channel.close()


def time_waits(ip: str) -> list[Connection]:
    """The TIME_WAIT remains of connections this node closed on ip (for IPv4 also as
    ::ffff:ip), whether or not the address is here now.

    Why they matter: a node that held the address less than a minute ago (TIME_WAIT lasts
    60 s) keeps one for every connection it closed first. When it takes the address over
    again, a client whose connection of the lost owner happens to use the same client port
    (clients hand out ports in sequence per destination) answers the tickle ACK
    (ocf_lib.adapters.tickle) into that remain, which replies with an ACK instead of the
    reset the tickle wants: the client waits for its timeout. Seen in the lab's failover
    benchmark on a quarter of the streams."""
    family, packed = inet.parse_ip(ip)
    forms = {(family, packed)}
    if family == _socket.AF_INET:
        forms.add((_socket.AF_INET6, _V4_MAPPED + packed))
    channel = netlink.Channel(_NETLINK_SOCK_DIAG)
    try:
        return _matching(channel, forms, 1 << TIME_WAIT)
    finally:
        channel.close()


def _matching(channel: "netlink.Channel", forms: set[tuple[int, bytes]], states: int
              ) -> list[Connection]:
    """The sockets in states whose (family, local address) is one of forms."""
    return [Connection(body[0], body[1], _sockid(body))
            for dump_family in sorted({f for f, _ in forms})
            for body in _dump(channel, dump_family, states)
            if (body[0], _local(body)) in forms]


def _dump(channel: "netlink.Channel", family: int, states: int) -> list[bytes]:
    request = _REQUEST.pack(family, _socket.IPPROTO_TCP, 0, states) + bytes(_SOCKID_SIZE)
    return channel.ask(_SOCK_DIAG_BY_FAMILY, request, _SOCK_DIAG_BY_FAMILY, dump=True)


def _sockid(body: bytes) -> bytes:
    return body[_MESSAGE_HEAD.size:_MESSAGE_HEAD.size + _SOCKID_SIZE]


def _local(body: bytes) -> bytes:
    size = 4 if body[0] == _socket.AF_INET else 16
    return body[_MESSAGE_HEAD.size + 4:_MESSAGE_HEAD.size + 4 + size]


def _accepting(listening: "Callable[[int], list[bytes]]", family: int, packed: bytes
               ) -> set[tuple[int, bytes]]:
    """The (family, local address) forms under which connections to the address may have
    been accepted by the sockets listening now (listening(family): their dump): on it or on
    the wildcard address, and for IPv4 also by an IPv6 socket on ::ffff:address, or on ::
    without IPV6_V6ONLY."""
    any4, any6, mapped = bytes(4), bytes(16), _V4_MAPPED + packed
    forms = set()
    if family == _socket.AF_INET:
        if any(_local(b) in (packed, any4) for b in listening(family)):
            forms.add((family, packed))
        if any(_local(b) == mapped or (_local(b) == any6 and _dual_stack(b))
               for b in listening(_socket.AF_INET6)):
            forms.add((_socket.AF_INET6, mapped))
    elif any(_local(b) in (packed, any6) for b in listening(family)):
        forms.add((family, packed))
    return forms


def _dual_stack(body: bytes) -> bool:
    """An IPv6 listener without IPV6_V6ONLY: it takes IPv4 connections too."""
    attributes = netlink.attributes(body, _MESSAGE_HEAD.size + _SOCKID_SIZE + 20)
    return attributes.get(_SKV6ONLY, b"\1")[:1] == b"\0"


def destroy(connections: list[Connection]) -> int:
    """Close each connection at once, the peer getting a reset (a TIME_WAIT remain is just
    forgotten: Linux 6.0 and later); return how many were closed (one already gone does not
    count). Unsupported when the kernel cannot."""
    channel = netlink.Channel(_NETLINK_SOCK_DIAG)
    closed = 0
    try:
        for conn in connections:
            request = (_REQUEST.pack(conn.family, _socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
                       + conn.sockid)
            try:
                channel.ask(_SOCK_DESTROY, request, _SOCK_DESTROY, ack=True)
            except netlink.NetlinkError as err:
                if err.errno == _ENOENT:
                    continue
                if err.errno == _EOPNOTSUPP:
                    raise Unsupported(err.errno, "this kernel cannot destroy sockets "
                                                 "(CONFIG_INET_DIAG_DESTROY is off)") from None
                raise
            closed += 1
        return closed
    finally:
        channel.close()
