"""ocf_lib.adapters.tickle: a client whose connection's node is gone learns it from the
address's new owner at once. Three hosts on a switch: `old` holds a connection from
`client` on the VIP, then goes silent (its link down); `new` takes the VIP over, announces
it and tickles the client, which gets a reset instead of waiting on a dead connection.
Also when `new` held the address a moment before and keeps a TIME_WAIT remain of the very
client port (ocf_lib.logic.handover.tickle_clients)."""
import contextlib
import os
import signal
import subprocess
import time

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
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('', int(sys.argv[2]) if len(sys.argv) > 2 else 0))
s.settimeout(5); s.connect((sys.argv[1], 7000))
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


@pytest.mark.parametrize("vip, clients", [
    ("198.18.3.10", [f"198.18.{i}.{i * 37 % 256}" for i in range(1, 9)]),
    ("2001:2:3::10", [f"2001:2:3::{i:x}:{i * 4099:x}" for i in range(1, 9)])])
def test_each_prepared_tickle_is_the_bare_ack_for_its_connection(vip, clients) -> None:
    """The Preparer sums the checksum's fixed part once: byte for byte what ack_segment
    builds, for any ports; a client of the other family is left out."""
    import random
    rng = random.Random(25)
    packed = [inet.parse_ip(client)[1] for client in clients]
    connections = [(rng.choice(packed), rng.randrange(65536), rng.choice([0, 1, 6443, 65535]))
                   for _ in range(5_000)]
    other = inet.parse_ip("2001:2::1" if "." in vip else "198.18.0.1")[1]
    tickles = tickle.Preparer(vip).prepare([(other, 40000, 6443), *connections])
    local = inet.parse_ip(vip)[1]
    assert [segment for segment, _ in tickles] == [
        tickle.ack_segment(local, port, client, client_port)
        for client, client_port, port in connections]
    assert {client for _, client in tickles} == set(clients)


# Serves one connection and closes it first: the TIME_WAIT remain stays on the server's side.
CLOSER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], 7000)); s.listen(); print('listening', flush=True)
c = s.accept()[0]; c.close()
"""
ONE_SHOT = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('', int(sys.argv[2]))); s.settimeout(5); s.connect((sys.argv[1], 7000))
assert s.recv(1) == b''
"""
CLIENT_PORT = 41999  # what the client uses for its short request and then for its stream
# Each formatted with vip, client and port; prints how many tickles went out (at once).
TICKLE = ("from ocf_lib.adapters import inet, tickle\n"
          "sent = tickle.Sender({vip!r}).send(tickle.Preparer({vip!r}).prepare("
          "[(inet.parse_ip({client!r})[1], {port}, 7000)]))\n"
          "print(sent)")
TICKLE_CLIENTS = ("from ocf_lib.adapters import inet\n"
                  "from ocf_lib.logic import handover\n"
                  "handover.end_remains({vip!r})\n"
                  "print(handover.tickle_clients({vip!r}, "
                  "[(inet.parse_ip({client!r})[1], {port}, 7000)]))")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tickled_client_of_a_lost_node_gets_a_reset(netns_pool: NetnsPool,
                                                      family: str) -> None:
    vip, old_ip, new_ip, client_ip, prefix = FAMILIES[family]
    old, new, client, switch = hosts(netns_pool, family)
    old.ip("addr", "add", f"{vip}/{prefix}", "dev", "lan0", "nodad")
    lose_a_stream(old, new, client, switch, family, TICKLE)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_time_wait_remain_on_the_new_owner_does_not_swallow_the_reset(
        netns_pool: NetnsPool, family: str) -> None:
    """Seen in the failover benchmark: the new owner had held the address less than a
    minute before, and had closed a short request from the very client port the stream
    now uses (clients hand out ports in sequence). The client's answer to the tickle met
    that TIME_WAIT remain, which answered with an ACK: no reset, the client waited for its
    timeout. tickle_clients ends the remains first."""
    vip, old_ip, new_ip, client_ip, prefix = FAMILIES[family]
    old, new, client, switch = hosts(netns_pool, family)
    new.ip("addr", "add", f"{vip}/{prefix}", "dev", "lan0", "nodad")
    closer = new.popen(PYTHON, "-c", CLOSER, vip, stdout=subprocess.PIPE, text=True)
    try:
        assert closer.stdout.readline().strip() == "listening"
        client.run(PYTHON, "-c", ONE_SHOT, vip, str(CLIENT_PORT))
    finally:
        closer.wait(10)
    remains = new.run(PYTHON, "-c", "from ocf_lib.adapters import sock_diag\n"
                      f"print(len(sock_diag.time_waits({vip!r})))").stdout.strip()
    assert remains == "1", "new keeps a TIME_WAIT remain of the short request"
    new.ip("addr", "del", f"{vip}/{prefix}", "dev", "lan0")  # the address moves to old
    old.ip("addr", "add", f"{vip}/{prefix}", "dev", "lan0", "nodad")
    client.ip("neigh", "replace", vip, "lladdr", mac(old), "dev", "lan0")  # announced
    lose_a_stream(old, new, client, switch, family, TICKLE_CLIENTS, CLIENT_PORT)


def hosts(netns_pool: NetnsPool, family: str) -> tuple:
    """old, new and client with their addresses, and the switch between them."""
    vip, old_ip, new_ip, client_ip, prefix = FAMILIES[family]
    old, new, client = netns_pool.new(), netns_pool.new(), netns_pool.new()
    switch = netns_pool.switch([old, new, client])
    for ns, address in ((old, old_ip), (new, new_ip), (client, client_ip)):
        ns.ip("addr", "add", f"{address}/{prefix}", "dev", "lan0", "nodad")
    return old, new, client, switch


def lose_a_stream(old, new, client, switch, family: str, tickle_code: str,
                  client_port: int = 0) -> None:
    """A stream from client to old on the VIP; old goes silent, new takes the address and
    runs tickle_code (formatted with vip, client, port): the client must get a reset."""
    vip, old_ip, new_ip, client_ip, prefix = FAMILIES[family]
    server = old.popen(PYTHON, "-c", SERVER, vip, stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    reader = client.popen(PYTHON, "-c", CLIENT, vip, str(client_port), stdout=subprocess.PIPE,
                          text=True)
    try:
        port = int(reader.stdout.readline())
        old_is_lost(new, client, switch, family)
        sent = new.run(PYTHON, "-c", tickle_code.format(vip=vip, client=client_ip, port=port)
                       ).stdout.strip()
        assert sent == "1"
        assert reader.stdout.readline().strip() == "ConnectionResetError"
    finally:
        server.kill()
        reader.kill()


def old_is_lost(new, client, switch, family: str) -> None:
    """old goes silent (its link down), its connections with it; new takes the VIP and, as
    the agent's start does, tells the link the address moved (the client's neighbour entry
    for the VIP points at new now)."""
    vip, old_ip, new_ip, client_ip, prefix = FAMILIES[family]
    switch.ip("link", "set", "port0", "down")
    new.ip("addr", "add", f"{vip}/{prefix}", "dev", "lan0", "nodad")
    client.ip("neigh", "replace", vip, "lladdr", mac(new), "dev", "lan0")


def mac(ns) -> str:
    import json
    return json.loads(ns.ip("-j", "link", "show", "dev", "lan0"))[0]["address"]


MANY = 2_500  # three batches: two senders, one of them a process of its own
# Formatted with vip and client; the client's ports are its arguments.
TICKLE_MANY = ("import sys\n"
               "from ocf_lib.adapters import inet\n"
               "from ocf_lib.logic import handover\n"
               "client = inet.parse_ip({client!r})[1]\n"
               "print(handover.tickle_clients({vip!r}, [(client, int(port), 7000)\n"
               "                                         for port in sys.argv[1:]]))")


def test_the_clients_of_thousands_of_connections_are_tickled_by_all_the_senders(
        netns_pool: NetnsPool) -> None:
    """tickle_clients shares the batches among TICKLE_SENDERS processes: every client is
    reset, and what the first round reached is counted from all of them, once."""
    from ocf_lib.logic import handover
    assert -(-MANY // handover.TICKLE_BATCH) > handover.TICKLE_SENDERS > 1
    with many_lost(netns_pool) as (new, held, argv):
        assert new.run(*argv).stdout.strip() == str(MANY)
        assert wait_until_ended(held) == {"reset"}


def test_a_tickler_ended_by_a_stop_takes_its_other_senders_along(netns_pool: NetnsPool) -> None:
    """A stop SIGKILLs the tickler it recorded (the first sender): the others end at their
    next batch instead of tickling from an address that is gone (here rounds would go on
    for half a minute)."""
    with many_lost(netns_pool) as (new, held, argv):
        python, dash_c, code, *ports = argv
        code = f"from ocf_lib.logic import handover\nhandover.TICKLE_ROUNDS = 50\n{code}"
        tickler = new.popen(python, dash_c, code, *ports, stdout=subprocess.DEVNULL)
        try:
            assert wait_until_ended(held) == {"reset"}, "the first round went out"
            assert len(new.pids()) == 2, "the tickler and its other sender"
            os.kill(tickler.pid, signal.SIGKILL)  # ip netns exec became the tickler
            deadline = time.monotonic() + 10
            while new.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not new.pids(), "the other sender ended at its next batch"
        finally:
            tickler.kill()
            tickler.wait()


@contextlib.contextmanager
def many_lost(netns_pool: NetnsPool):
    """MANY connections from client to old on the VIP; old gone, new holding the address:
    (new, the lab.holders.Held, the argv that tickles them all from new and prints what
    the first round reached)."""
    from lab import holders
    vip, old_ip, new_ip, client_ip, prefix = FAMILIES["ipv4"]
    old, new, client, switch = hosts(netns_pool, "ipv4")
    old.ip("addr", "add", f"{vip}/{prefix}", "dev", "lan0", "nodad")
    server = old.popen(*holders.serve_command(7000), stdin=subprocess.DEVNULL)
    try:
        with holders.Held(client.exec_argv, vip, 7000, MANY, [client_ip]) as held:
            held.wait_ready(60)
            old_is_lost(new, client, switch, "ipv4")
            ports = [line.split()[-2].rsplit(":", 1)[1] for line in client.run(
                "ss", "-Htn", "state", "established", "dst", vip).stdout.splitlines()]
            assert len(ports) == MANY
            yield new, held, [PYTHON, "-c", TICKLE_MANY.format(vip=vip, client=client_ip),
                              *ports]
    finally:
        server.kill()
        server.wait()


def wait_until_ended(held, seconds: float = 10) -> set[str]:
    """Until every connection held ended (seconds at most): how they ended."""
    deadline = time.monotonic() + seconds
    while held.still_open() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held.still_open() == 0
    return {kind for kind, _ in held.ended.values()}
