"""ocf_lib.adapters.sock_diag: TCP connections on an address, listed by the kernel's dump
and closed with a reset each, also thousands at a time (stop's resets).

`lan` gives two hosts on one link: node (lan0: 198.18.0.1/24, 2001:2::1/64), where the
address is, and peer (lan0: 198.18.0.2/24, 2001:2::2/64), the client host. The crowds of
connections are bench.stop_resets's: listeners sharing the port on node, client processes
on peer, each from an address of its own.
"""
import socket
import struct

from bench.stop_resets import Crowd
from ocf_lib.adapters import sock_diag
from ocfshim import ipaddr2 as agent

PYTHON = "/usr/bin/python3"
V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}


def test_the_dump_filter_passes_sockets_on_the_address_alone():
    """INET_DIAG_REQ_BYTECODE with one S_COND: a match jumps to the program's end (yes =
    the instruction's 16 or 28 bytes), a mismatch 4 bytes beyond it (no); any port (-1)."""
    v4 = sock_diag._local_filter(socket.AF_INET, socket.inet_aton("198.18.0.10"))
    assert v4 == (struct.pack("=HH", 20, 1) + struct.pack("=BBH", 7, 16, 20)
                  + struct.pack("=BBxxi", socket.AF_INET, 32, -1) + bytes([198, 18, 0, 10]))
    v6 = sock_diag._local_filter(socket.AF_INET6, socket.inet_pton(socket.AF_INET6,
                                                                   "2001:2::10"))
    assert v6[:12] == (struct.pack("=HH", 32, 1) + struct.pack("=BBH", 7, 28, 32)
                       + struct.pack("=BBxx", socket.AF_INET6, 128))
    assert v6[16:] == socket.inet_pton(socket.AF_INET6, "2001:2::10")


def test_a_connection_is_read_from_its_dump_message():
    sockid = (struct.pack("!HH", 6443, 40000) + socket.inet_aton("198.18.0.10") + bytes(12)
              + socket.inet_aton("198.18.0.100") + bytes(12) + struct.pack("=IQ", 0, 77))
    conn = sock_diag.Connection(bytes([socket.AF_INET, sock_diag.ESTABLISHED, 0, 0]) + sockid
                                + bytes(24))
    assert (conn.family, conn.state, conn.sockid) == (socket.AF_INET, sock_diag.ESTABLISHED,
                                                      sockid)
    assert (conn.local, conn.remote) == (("198.18.0.10", 6443), ("198.18.0.100", 40000))
    assert repr(conn) == "Connection(198.18.0.10:6443 <- 198.18.0.100:40000)"


# Lists the connections on argv[1] and destroys them, then destroys them again, a thousand
# times over: prints both counts.
DESTROY_TWICE = """
import sys
from ocf_lib.adapters import sock_diag
connections = sock_diag.on_address(sys.argv[1])
print(sock_diag.destroy(connections), sock_diag.destroy(connections * 1000))
"""


def test_connections_already_gone_count_none_and_fail_nothing(lan):
    """The kernel refuses each destroy of a socket that is gone (ENOENT); a whole batch of
    such refusals fits in what destroy reads back, and none of them is an error."""
    node, peer = lan
    assert agent("start", V4, node).rc == 0
    crowd = Crowd(node, peer, V4["ip"], 1)
    try:
        assert node.run(PYTHON, "-c", DESTROY_TWICE, V4["ip"]).stdout.split() == ["1", "0"]
        assert crowd.seen()["reset"] == 1
    finally:
        crowd.close()
