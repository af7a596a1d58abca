"""ocf_lib.adapters.sock_diag: TCP connections on an address, listed by the kernel's dump
and closed with a reset each, also thousands at a time (stop's resets).

`lan` gives two hosts on one link: node (lan0: 198.18.0.1/24, 2001:2::1/64), where the
address is, and peer (lan0: 198.18.0.2/24, 2001:2::2/64), the client host. The crowds of
connections are bench.stop_resets's: listeners sharing the port on node, client processes
on peer, each from an address of its own.
"""
import socket
import subprocess
import struct

import pytest

from bench.stop_resets import Crowd
from lab import REPO
from ocf_lib.adapters import sock_diag
from ocfshim import ipaddr2 as agent

PYTHON = "/usr/bin/python3"
V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
V6 = {"ip": "2001:2::10", "nic": "lan0", "cidr_netmask": "64", "nodad": "true"}


def test_the_dump_filter_passes_sockets_on_the_address_alone():
    """INET_DIAG_REQ_BYTECODE with one S_COND: a match jumps to the program's end (yes =
    the instruction's 16 or 28 bytes), a mismatch 4 bytes beyond it (no); any port (-1)."""
    v4 = sock_diag._local_filter([(socket.AF_INET, socket.inet_aton("198.18.0.10"))])
    assert v4 == (struct.pack("=HH", 20, 1) + struct.pack("=BBH", 7, 16, 20)
                  + struct.pack("=BBxxi", socket.AF_INET, 32, -1) + bytes([198, 18, 0, 10]))
    v6 = sock_diag._local_filter([(socket.AF_INET6, socket.inet_pton(socket.AF_INET6,
                                                                     "2001:2::10"))])
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
    assert run_with_crowd(lan, DESTROY_TWICE, 1) == (["1", "0"], 1)


# Resets the connections on argv[1] with a dump that loses its first connection, as one
# that resumed past a socket would: prints how many were reset and how many were lost.
LOSE_ONE = """
import sys
from ocf_lib.adapters import sock_diag
whole = sock_diag._dump_parts
lost = []
def losing(channel, dump_family, states, local=None):
    for part in whole(channel, dump_family, states, local):
        if local and part and not lost:
            lost.append(part.pop(0))
        yield part
sock_diag._dump_parts = losing
print(sock_diag.reset(sys.argv[1]), len(lost))
"""


def test_a_connection_the_dump_passed_over_is_still_reset(lan):
    """reset's last look: a socket the streamed dump did not report (the kernel resumes a
    dump by position, and sockets destroyed meanwhile shift it) is found and reset."""
    assert run_with_crowd(lan, LOSE_ONE, 500) == (["500", "1"], 500)


def run_with_crowd(lan, code: str, count: int) -> tuple[list[str], int]:
    """Start the IPv4 address on node, open count connections to it from peer and run code
    in node with the address as argv[1]: the words it printed, and how many clients were
    reset by then."""
    node, peer = lan
    assert agent("start", V4, node).rc == 0
    crowd = Crowd(node, peer, V4["ip"], count)
    try:
        return node.run(PYTHON, "-c", code, V4["ip"]).stdout.split(), crowd.seen()["reset"]
    finally:
        crowd.close()


@pytest.mark.parametrize("params,bind,count", [(V4, "0.0.0.0", 5000), (V4, "::", 2000),
                                               (V6, "::", 2000)],
                         ids=["ipv4", "ipv4-on-a-dual-stack-socket", "ipv6"])
def test_stop_resets_every_one_of_thousands_of_connections(lan, params, bind, count):
    """Stop destroys the connections while the kernel's dump of them goes on, in batches:
    each client still gets its reset (the client sockets are asked afterwards, ECONNRESET),
    and only the address's connections are touched."""
    node, peer = lan
    assert agent("start", params, node).rc == 0
    crowd = Crowd(node, peer, params["ip"], count, bind)
    own = Crowd(node, peer, "198.18.0.1", 10)  # on the node's own address: left open
    try:
        out = agent("stop", params, node)
        assert out.rc == 0, out
        assert f"reset {count} connection(s)" in out.stderr
        assert crowd.seen() == {"reset": count, "open": 0, "closed": 0, "other": 0}
        assert own.seen() == {"reset": 0, "open": 10, "closed": 0, "other": 0}
    finally:
        crowd.close()
        own.close()


def test_one_look_finds_the_connections_of_several_addresses_apart(lan):
    """on_addresses: one filtered dump for many addresses (a chain of conditions the kernel
    accepts), each connection under its own address, none of the node's other ones."""
    node, peer = lan
    ips = [f"198.18.0.{n}" for n in range(10, 50)]  # a program of 39 JMPs
    for ip in ips:
        node.ip("addr", "add", f"{ip}/24", "dev", "lan0")
    server = node.popen("/usr/bin/python3", "-c", """
import socket, time
listener = socket.socket(socket.AF_INET6)
listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
listener.bind(("::", 6443)); listener.listen(100)
print("listening", flush=True)
held = []
while True:
    held.append(listener.accept()[0])
""", stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline().strip() == b"listening", "clients connect only then"
        client = peer.popen("/usr/bin/python3", "-c", f"""
import socket, sys, time
held = []
for n, ip in enumerate({ips + ["198.18.0.1"]!r}):
    for _ in range(n + 1):
        held.append(socket.create_connection((ip, 6443), timeout=5))
print("ok", flush=True); time.sleep(60)
""", stdout=subprocess.PIPE)
        try:
            assert client.stdout.readline().strip() == b"ok"
            found = node.run("/usr/bin/python3", "-c", f"""
import sys; sys.path.insert(0, {REPO!r})
from ocf_lib.adapters import sock_diag
found = sock_diag.on_addresses({ips[1:]!r})
print(" ".join(f"{{ip}}={{len(c)}}:{{len({{x.local[0] for x in c}})}}" for ip, c in found.items()))
""").stdout.split()
            assert found == [f"{ip}={n + 2}:1" for n, ip in enumerate(ips[1:])]
        finally:
            client.kill()
            client.wait()
    finally:
        server.kill()
        server.wait()
