"""Tickle ACKs: make the clients of connections another node held on an address learn at
once that those connections are gone, after this node took the address over.

A client of a node that died (or left without a word) sits on its connection until its own
timeout, tens of seconds for an idle Kubernetes watch. The technique is CTDB's for its
public addresses: the new owner sends each such client a TCP ACK from the address and port
the client is connected to, with sequence numbers the client cannot expect. The client's
kernel answers with an ACK of its own carrying its real numbers; that answer reaches the
new owner, which has no such connection and resets it, with numbers the client accepts, and
the client reconnects, to the new owner, at once.

The ACKs go out through a raw IP socket bound to the address (the kernel adds the IP
header and routes it), one datagram per connection. Their timing is the caller's
(ocf_lib.logic.handover paces and repeats them): a Preparer builds the segments (about
0.5 µs each), a Sender sends them, a batch at a time (about 2.5 µs each).
"""
import _socket

from ocf_lib.adapters import inet

_WINDOW = 1234  # any: the client only looks at the numbers

Tickle = tuple[bytes, str]  # (TCP segment, client's address): one prepared tickle


def ack_segment(local: bytes, port: int, client: bytes, client_port: int) -> bytes:
    """A bare TCP ACK from local:port to client:client_port, sequence and acknowledgement
    numbers 0, with its checksum (packed addresses of one family)."""
    return inet.tcp_segment(local, port, client, client_port, seq=0, ack=0, flags=inet.TCP_ACK,
                            window=_WINDOW)


def _word_sum(data: bytes) -> int:
    """The sum of data's 16-bit words (even length), not yet folded."""
    return sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))


class Preparer:
    """Builds the tickles from one address, as fast as a takeover needs them (a batch just
    before it is sent): every tickle's checksum differs from the others' by the clients'
    address and ports only, so the rest of the sum (this address, the pseudo-header's
    protocol and length, the ACK's fixed fields) is added up once, and each client's
    address once (a busy node's clients are a few thousand addresses at most)."""

    def __init__(self, address: str) -> None:
        self.family, self.local = inet.parse_ip(address)
        zero = bytes(len(self.local))
        # The checksum of a tickle between zero addresses and ports is the complement of
        # everything but the addresses and the ports.
        fixed = ack_segment(zero, 0, zero, 0)
        self._fixed = (~int.from_bytes(fixed[16:18], "big") & 0xFFFF) + _word_sum(self.local)
        self._clients: dict[bytes, tuple[int, str]] = {}

    def prepare(self, connections: "list[tuple[bytes, int, int]]") -> list[Tickle]:
        """The tickle of each (client's packed address, client's port, port of address),
        clients of address's family."""
        tickles = []
        for client, client_port, port in connections:
            known = self._clients.get(client)
            if known is None:
                if len(client) != len(self.local):
                    continue
                known = self._clients[client] = (self._fixed + _word_sum(client),
                                                  _socket.inet_ntop(self.family, client))
            total = known[0] + port + client_port
            total = (total & 0xFFFF) + (total >> 16)
            total = (total & 0xFFFF) + (total >> 16)
            tickles.append((inet.TCP_HEADER.pack(port, client_port, 0, 0, 5 << 4, inet.TCP_ACK,
                                                 _WINDOW, ~total & 0xFFFF, 0), known[1]))
        return tickles


class Sender:
    """A raw TCP socket bound to address, to send tickles from it. OSError when it cannot
    be opened (no CAP_NET_RAW, the address is not here)."""

    def __init__(self, address: str) -> None:
        family = inet.parse_ip(address)[0]
        self._sock = _socket.socket(family, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                    _socket.IPPROTO_TCP)
        try:
            self._sock.bind((address, 0))
        except OSError:
            self._sock.close()
            raise

    def send(self, tickles: list[Tickle]) -> int:
        """Send each; return how many went out (a client the kernel cannot route to, or one
        a full transmit queue dropped, is counted out)."""
        sent = 0
        for segment, client in tickles:
            try:
                self._sock.sendto(segment, (client, 0))
                sent += 1
            except OSError:
                pass
        return sent

    def close(self) -> None:
        self._sock.close()
