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
header and routes it), one datagram per connection: thousands cost milliseconds.
"""
import _socket

from ocf_lib.adapters import inet

_WINDOW = 1234  # any: the client only looks at the numbers


def ack_segment(local: bytes, port: int, client: bytes, client_port: int) -> bytes:
    """A bare TCP ACK from local:port to client:client_port, sequence and acknowledgement
    numbers 0, with its checksum (packed addresses of one family)."""
    return inet.tcp_segment(local, port, client, client_port, seq=0, ack=0, flags=inet.TCP_ACK,
                            window=_WINDOW)


def send(address: str, connections: list[tuple[str, int, int]]) -> int:
    """Send a tickle ACK from address to each (client, client port, port of address) of
    connections; return how many went out (a client of another family is skipped, one the
    kernel cannot route to is counted out). OSError when no raw socket can be opened."""
    family, local = inet.parse_ip(address)
    sock = _socket.socket(family, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, _socket.IPPROTO_TCP)
    sent = 0
    try:
        sock.bind((address, 0))
        for client, client_port, port in connections:
            try:
                client_family, packed = inet.parse_ip(client)
            except ValueError:
                continue
            if client_family != family:
                continue
            try:
                sock.sendto(ack_segment(local, port, packed, client_port), (client, 0))
                sent += 1
            except OSError:
                pass  # no route to that client from here: nothing to tell it
        return sent
    finally:
        sock.close()
