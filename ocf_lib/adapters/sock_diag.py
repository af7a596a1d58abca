"""TCP connections on a local address, listed and closed through the kernel's sock_diag
netlink interface (what `ss` and `ss -K` use), without running a program.

Why: when a floating address leaves a node, the connections this node holds on it stay
open. A client that is only reading (an idle Kubernetes watch) never learns they are dead
and waits for its own timeout, tens of seconds. Destroying them (SOCK_DESTROY) makes the
kernel send each client a reset at once, so it reconnects to the address's new owner.
Destroy while the address is still on the node: once it is gone, the kernel has no route
for a reset from it and the client hears nothing (checked on this platform).

`reset` closes every connection on an address (what stop does), `on_address` and
`destroy` do the same in two steps for those who look at the list first. SOCK_DESTROY needs
CAP_NET_ADMIN and a kernel built with CONFIG_INET_DIAG_DESTROY; without it `reset` and
`destroy` raise Unsupported, which the caller reports as a warning.
"""
import _socket
import _struct

from ocf_lib.adapters import inet, netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY, _SOCK_DESTROY = 20, 21
# struct inet_diag_req_v2: family, protocol, extensions, pad, states, then the socket id.
_REQUEST = _struct.Struct("=BBBxI")
# struct inet_diag_sockid: ports (big-endian), addresses (16 bytes each, network order),
# interface and cookie (host order). Kept raw: SOCK_DESTROY names a socket by it.
_SOCKID_SIZE = 48
_PORTS = _struct.Struct("!HH")
# struct inet_diag_msg: family, state, timer, retransmits, then the socket id.
_MESSAGE_HEAD = _struct.Struct("=BBBB")
# A dump's filter (INET_DIAG_REQ_BYTECODE), one instruction: struct inet_diag_bc_op (code,
# bytes to skip on a match, on a mismatch), then struct inet_diag_hostcond (family, prefix
# length, port or -1 for any) and the address.
_BYTECODE, _BC_JMP, _BC_S_COND = 1, 1, 7
_ATTRIBUTE = _struct.Struct("=HH")  # struct nlattr: length, type
_BC_OP = _struct.Struct("=BBH")
_HOSTCOND = _struct.Struct("=BBxxi")
# struct nlmsghdr (length, type, flags, sequence, port id), for the requests sent here: dumps
# read as they come, and destroys in batches. Without NLM_F_ACK the kernel answers a
# destroy only when it refuses it (struct nlmsgerr).
_HEADER = _struct.Struct("=IHHII")
_NLM_F_REQUEST, _NLM_F_DUMP, _NLMSG_ERROR = 0x1, 0x300, 2
_ERRNO = _struct.Struct("=i")
_SOL_NETLINK, _NETLINK_CAP_ACK = 270, 10
_BATCH = 128  # destroys a send carries
_RECV_SIZE = 65536  # the kernel fills at most 32 KiB of a dump at a time
_ROOM = 128 * 1024  # receive buffer (the kernel doubles it): a batch's refusals, ~770 B each

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
    """One TCP socket as the kernel's dump describes it: family, state, the kernel's id for
    it, local and remote (address, port). Only the dump's message is kept; the rest is read
    from it when asked for, so that a list of thousands costs no formatting of addresses
    that destroying them does not need."""

    __slots__ = ("message",)

    def __init__(self, message: bytes) -> None:
        self.message = message

    @property
    def family(self) -> int:
        return self.message[0]

    @property
    def state(self) -> int:
        return self.message[1]

    @property
    def sockid(self) -> bytes:
        return self.message[_MESSAGE_HEAD.size:_SOCKID_END]

    @property
    def local(self) -> tuple[str, int]:
        return self._end(4, 0)

    @property
    def remote(self) -> tuple[str, int]:
        return self._end(20, 1)

    def _end(self, offset: int, which: int) -> tuple[str, int]:
        """One end's address (at offset in the socket id) and port (first or second)."""
        size = 4 if self.family == _socket.AF_INET else 16
        start = _MESSAGE_HEAD.size + offset
        return (_socket.inet_ntop(self.family, self.message[start:start + size]),
                _PORTS.unpack_from(self.message, _MESSAGE_HEAD.size)[which])

    def __repr__(self) -> str:
        return f"Connection({self.local[0]}:{self.local[1]} <- {self.remote[0]}:{self.remote[1]})"


def on_address(ip: str) -> list[Connection]:
    """The TCP connections accepted on ip by a socket that still listens there (or on the
    wildcard address; for IPv4 also as ::ffff:ip by a dual-stack socket), in every state but
    LISTEN and TIME_WAIT.

    A dump of connections walks the kernel's whole table of established sockets, shared by
    every network namespace and sized by the machine's memory (about 2 ms with 24 GiB), so
    it is made only for a family in which something listens that could have accepted them:
    a dump of listeners alone (a small table) tells. The kernel passes on only the sockets
    on ip (a filter sent with the dump): the node's others (a proxy's connections to its
    backends, as many again) cost no message."""
    return on_addresses([ip])[ip]


def on_addresses(ips: list[str]) -> dict[str, list[Connection]]:
    """on_address() of each of ips, with one walk of each table for all of them (a filter
    passes the sockets on any of them): what a node's watcher pays to follow many addresses
    stays that of one."""
    channel = netlink.Channel(_NETLINK_SOCK_DIAG)
    try:
        listeners: dict[int, list[bytes]] = {}

        def listening(family: int) -> list[bytes]:
            if family not in listeners:
                listeners[family] = _dump(channel, family, 1 << _LISTEN)
            return listeners[family]

        wanted: dict[int, dict[tuple[int, bytes], str]] = {}  # dump family: address: ip
        for ip in ips:
            family, packed = inet.parse_ip(ip)
            for dump_family in _accepting(listening, family, packed):
                wanted.setdefault(dump_family, {})[family, packed] = ip
        found: dict[str, list[Connection]] = {ip: [] for ip in ips}
        for dump_family, addresses in sorted(wanted.items()):
            owners = {(packed if dump_family == family else _V4_MAPPED + packed): ip
                      for (family, packed), ip in addresses.items()}
            for message in _dump(channel, dump_family, _STATES, list(addresses)):
                found[owners[_local(message)]].append(Connection(message))
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
    channel = netlink.Channel(_NETLINK_SOCK_DIAG)
    try:
        return [Connection(message)
                for dump_family in sorted({family, _socket.AF_INET6})
                for message in _dump(channel, dump_family, 1 << TIME_WAIT, [(family, packed)])]
    finally:
        channel.close()


def reset(ip: str) -> int:
    """Close every connection on_address(ip) lists, each client getting a reset, while the
    dump that lists them goes on; return how many were closed. Unsupported when the kernel
    cannot.

    The dump comes in parts of about 300 sockets (the 32 KiB the kernel fills at a time).
    Each part is destroyed as soon as the next one has arrived, so the first clients learn
    within milliseconds, not after the whole dump (tens of milliseconds at 20,000). Not
    before: the kernel resumes a dump at a position counted within a bucket of its hash
    table, and removing sockets ahead of that position would make it skip as many. A last
    look (on_address) closes whatever a dump could still have passed over; as a rule it
    finds nothing, at the cost of one more walk of the table."""
    family, packed = inet.parse_ip(ip)
    channel = netlink.Channel(_NETLINK_SOCK_DIAG)
    destroyer = _Destroyer()
    closed = 0
    try:
        def listening(family: int) -> list[bytes]:
            return _dump(channel, family, 1 << _LISTEN)

        for dump_family in _accepting(listening, family, packed):
            waiting: list[bytes] = []
            for part in _dump_parts(channel, dump_family, _STATES, [(family, packed)]):
                closed += destroyer.send(waiting)
                waiting = part
            closed += destroyer.send(waiting)
        return closed + destroyer.send([c.message for c in on_address(ip)])
    finally:
        channel.close()
        destroyer.close()


def destroy(connections: list[Connection]) -> int:
    """Close each connection at once, the peer getting a reset (a TIME_WAIT remain is just
    forgotten: Linux 6.0 and later); return how many were closed (one already gone does not
    count). Unsupported when the kernel cannot."""
    if not connections:
        return 0
    destroyer = _Destroyer()
    try:
        return destroyer.send([conn.message for conn in connections])
    finally:
        destroyer.close()


class _Destroyer:
    """A netlink socket that destroys sockets _BATCH to a send, without asking for
    acknowledgements: the kernel handles every request of a send before the send returns
    and answers only those it refuses, so a batch costs one system call and the reading of
    its refusals (none, as a rule). One request and its acknowledgement at a time cost
    twice as long (11 us a connection against 5.5, on an Intel Xeon)."""

    def __init__(self) -> None:
        self.channel = netlink.Channel(_NETLINK_SOCK_DIAG)
        self.channel.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, _ROOM)
        self.channel.sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)  # refusals, no copy

    def send(self, messages: list[bytes]) -> int:
        """Destroy the sockets these dump messages describe; return how many were closed."""
        gone = 0
        for start in range(0, len(messages), _BATCH):
            self.channel.sock.send(b"".join(
                _DESTROY_HEAD[message[0]] + message[_MESSAGE_HEAD.size:_SOCKID_END]
                for message in messages[start:start + _BATCH]))
            gone += self._refused()
        return len(messages) - gone

    def _refused(self) -> int:
        """Read the refusals of the last batch; return how many named a socket gone
        already. Unsupported when the kernel cannot destroy sockets; NetlinkError for any
        other refusal."""
        gone = 0
        while True:
            try:
                data = self.channel.sock.recv(_RECV_SIZE, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return gone
            offset = 0
            while offset + _HEADER.size + _ERRNO.size <= len(data):
                length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
                code = -_ERRNO.unpack_from(data, offset + _HEADER.size)[0]
                offset += max(_HEADER.size, (length + 3) & ~3)
                if kind != _NLMSG_ERROR or code == 0:
                    continue
                if code == _ENOENT:
                    gone += 1
                elif code == _EOPNOTSUPP:
                    raise Unsupported(code, "this kernel cannot destroy sockets "
                                            "(CONFIG_INET_DIAG_DESTROY is off)")
                else:
                    import os  # here only: no other path of the agents needs it
                    raise netlink.NetlinkError(code, "socket destroy refused: "
                                                     f"{os.strerror(code)}")

    def close(self) -> None:
        self.channel.close()


_SOCKID_END = _MESSAGE_HEAD.size + _SOCKID_SIZE
_DESTROY_HEAD = {  # a destroy request but for the socket id
    family: _HEADER.pack(_HEADER.size + _REQUEST.size + _SOCKID_SIZE, _SOCK_DESTROY,
                         _NLM_F_REQUEST, 0, 0)
    + _REQUEST.pack(family, _socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
    for family in (_socket.AF_INET, _socket.AF_INET6)}


def _dump(channel: "netlink.Channel", dump_family: int, states: int,
          local: "list[tuple[int, bytes]] | None" = None) -> list[bytes]:
    """The messages of a whole dump (see _dump_parts)."""
    return [message for part in _dump_parts(channel, dump_family, states, local)
            for message in part]


def _dump_parts(channel: "netlink.Channel", dump_family: int, states: int,
                local: "list[tuple[int, bytes]] | None" = None) -> "Iterator[list[bytes]]":
    """The TCP sockets of dump_family in states, a part (a datagram) at a time, as the
    kernel sends them: with local, (family, packed address) pairs, only those whose local
    address is one of them (an IPv4 one also as ::ffff:packed in an IPv6 dump, which the
    kernel's filter matches too)."""
    request = _REQUEST.pack(dump_family, _socket.IPPROTO_TCP, 0, states) + bytes(_SOCKID_SIZE)
    if local:
        request += _local_filter(local)
    channel.seq += 1
    channel.sock.send(_HEADER.pack(_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY,
                                   _NLM_F_REQUEST | _NLM_F_DUMP, channel.seq, 0) + request)
    done = False
    while not done:
        part: list[bytes] = []
        done = netlink._collect(channel.sock.recv(_RECV_SIZE), channel.seq,
                                _SOCK_DIAG_BY_FAMILY, part)
        yield part


def _local_filter(local: "list[tuple[int, bytes]]") -> bytes:
    """A dump's filter (attribute INET_DIAG_REQ_BYTECODE): a local address of local, any
    port. The last address's instruction jumps on a match past itself, to the end of the
    program (the socket is passed on), on a mismatch 4 bytes beyond it (dropped). Each one
    before it jumps on a match to a JMP right after it, which always jumps to the end (a
    match's jump is one byte: it cannot reach the end of a long program), and on a mismatch
    past that JMP, to the next address."""
    conditions = [_HOSTCOND.pack(family, len(packed) * 8, -1) + packed
                  for family, packed in local]
    total = sum(_BC_OP.size + len(c) for c in conditions) + _BC_OP.size * (len(local) - 1)
    program, offset = b"", 0
    for condition in conditions[:-1]:
        size = _BC_OP.size + len(condition)
        program += _BC_OP.pack(_BC_S_COND, size, size + _BC_OP.size) + condition
        program += _BC_OP.pack(_BC_JMP, _BC_OP.size, total - offset - size)
        offset += size + _BC_OP.size
    size = _BC_OP.size + len(conditions[-1])
    program += _BC_OP.pack(_BC_S_COND, size, size + 4) + conditions[-1]
    return _ATTRIBUTE.pack(_ATTRIBUTE.size + total, _BYTECODE) + program


def _local(message: bytes) -> bytes:
    size = 4 if message[0] == _socket.AF_INET else 16
    return message[_MESSAGE_HEAD.size + 4:_MESSAGE_HEAD.size + 4 + size]


def _accepting(listening: "Callable[[int], list[bytes]]", family: int, packed: bytes
               ) -> list[int]:
    """The families of the sockets under which connections to the address may have been
    accepted by the sockets listening now (listening(family): a dump of them): on it or on
    the wildcard address, and for IPv4 also IPv6 ones (as ::ffff:address) when a socket
    listens there, or on :: without IPV6_V6ONLY."""
    any4, any6, mapped = bytes(4), bytes(16), _V4_MAPPED + packed
    families = []
    if family == _socket.AF_INET:
        if any(_local(m) in (packed, any4) for m in listening(family)):
            families.append(family)
        if any(_local(m) == mapped or (_local(m) == any6 and _dual_stack(m))
               for m in listening(_socket.AF_INET6)):
            families.append(_socket.AF_INET6)
    elif any(_local(m) in (packed, any6) for m in listening(family)):
        families.append(family)
    return families


def _dual_stack(message: bytes) -> bool:
    """An IPv6 listener without IPV6_V6ONLY: it takes IPv4 connections too."""
    attributes = netlink.attributes(message, _SOCKID_END + 20)
    return attributes.get(_SKV6ONLY, b"\1")[:1] == b"\0"
