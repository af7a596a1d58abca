"""ocf_lib.adapters.tickle: a client whose connection's node is gone learns it from the
address's new owner at once. Three hosts on a switch: `old` holds a connection from
`client` on the VIP, then goes silent (its link down); `new` takes the VIP over, announces
it and tickles the client, which gets a reset instead of waiting on a dead connection."""
import subprocess

import pytest

from lab.netns import NetnsPool
from ocf_lib.adapters import inet, tickle

PYTHON = "/usr/bin/python3"
# (family, VIP, old, new, client, prefix)
FAMILIES = {"ipv4": ("198.18.3.10", "198.18.3.1", "198.18.3.2", "198.18.3.100", 24),
            "ipv6": ("2001:2:3::10", "2001:2:3::1", "2001:2:3::2", "2001:2:3::100", 64)}
SERVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], 7000)); s.listen(); print('listening', flush=True)
c = s.accept()[0]; time.sleep(60)
"""
CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
print(s.getsockname()[1], flush=True)
s.settimeout(20); began = time.monotonic()
try:
    print(s.recv(1) or 'eof', flush=True)
except OSError as err:
    print(type(err).__name__, flush=True)
"""


def test_the_segment_is_a_bare_ack_with_a_valid_checksum() -> None:
    _, local = inet.parse_ip("198.18.3.10")
    _, client = inet.parse_ip("198.18.3.100")
    segment = tickle.ack_segment(local, 6443, client, 40000)
    assert len(segment) == 20
    assert segment[:4] == (6443).to_bytes(2, "big") + (40000).to_bytes(2, "big")
    assert segment[4:12] == bytes(8), "sequence and acknowledgement numbers 0"
    assert (segment[12], segment[13]) == (5 << 4, 0x10), "20-byte header, ACK only"
    assert inet.transport_checksum(local, client, 6, segment) == 0, "the checksum checks"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tickled_client_of_a_lost_node_gets_a_reset(netns_pool: NetnsPool,
                                                      family: str) -> None:
    vip, old_ip, new_ip, client_ip, prefix = FAMILIES[family]
    old, new, client = netns_pool.new(), netns_pool.new(), netns_pool.new()
    switch = netns_pool.switch([old, new, client])
    for ns, address in ((old, old_ip), (new, new_ip), (client, client_ip)):
        ns.ip("addr", "add", f"{address}/{prefix}", "dev", "lan0", "nodad")
    old.ip("addr", "add", f"{vip}/{prefix}", "dev", "lan0", "nodad")
    server = old.popen(PYTHON, "-c", SERVER, vip, stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    reader = client.popen(PYTHON, "-c", CLIENT, vip, stdout=subprocess.PIPE, text=True)
    try:
        port = int(reader.stdout.readline())
        switch.ip("link", "set", "port0", "down")  # old is gone, its connection with it
        new.ip("addr", "add", f"{vip}/{prefix}", "dev", "lan0", "nodad")
        # What the agent's start does: tell the link the address moved (the client's
        # neighbour entry for the VIP points at new now), then tickle.
        client.ip("neigh", "replace", vip, "lladdr", mac(new), "dev", "lan0")
        sent = new.run(PYTHON, "-c", "from ocf_lib.adapters import tickle\n"
                       f"print(tickle.send({vip!r}, [({client_ip!r}, {port}, 7000)]))"
                       ).stdout.strip()
        assert sent == "1"
        assert reader.stdout.readline().strip() == "ConnectionResetError"
    finally:
        server.kill()
        reader.kill()


def mac(ns) -> str:
    import json
    return json.loads(ns.ip("-j", "link", "show", "dev", "lan0"))[0]["address"]
