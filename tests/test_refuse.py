"""A client that reconnects while the VIP moves: refused at once by the node the address has
just left (its refuser, ocf_lib.adapters.refuse), instead of waiting for its SYN to be sent
again.

`lan` gives two hosts on one link: node (lan0: 198.18.0.1/24, 2001:2::1/64), where the
agent runs, and peer (lan0: 198.18.0.2/24, 2001:2::2/64), the client. The peer's neighbour
entry for the VIP still names node's MAC after stop; node no longer takes packets for the
address, and with forwarding off its kernel drops the SYN without a word (counted as an
input address error): without the refuser the client's connect() waits for its first
retransmission (1 s; 1.02 s measured here before the refuser existed).
"""
import os
import subprocess
import time

import pytest

from hardening import refusers
from lab import AGENTS
from ocf_lib.adapters import announce, inet, refuse
from ocf_lib.helpers import refuser as refusing
from ocf_lib.helpers import registry
from ocf_lib.logic import vip as vips
from ocfshim import STATE_DIR, agent_env, imported_modules, mac_of, neighbour_mac
from ocfshim import ipaddr2 as agent

PYTHON = "/usr/bin/python3"
V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
V6 = {"ip": "2001:2::10", "nic": "lan0", "cidr_netmask": "64", "nodad": "true"}
FAMILIES = {"ipv4": V4, "ipv6": V6}
REFUSED_WITHIN = 0.5  # s: refused at once, against a wait for the SYN's retransmission (1 s)

# Holds every connection it accepts, on every address of its host (IPv4 ones as ::ffff:a.b.c.d).
SERVER = """
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::', 7000))
s.listen(64)
print('listening', flush=True)
held = []
while True:
    held.append(s.accept()[0])
"""
# Connects to the VIP, then reconnects once: 'held' keeps the connection like an idle watch
# and reconnects as soon as it is reset; 'fresh' closes it and reconnects when told to (a
# line on stdin). Prints what the reconnection's connect() ended with, and how long it took.
CLIENT = """
import socket, sys, time
vip, mode = sys.argv[1], sys.argv[2]
first = socket.create_connection((vip, 7000), timeout=5)
print('open', flush=True)
if mode == 'held':
    first.settimeout(30)
    try:
        first.recv(1)
    except OSError:
        pass
else:
    first.close()
    sys.stdin.readline()
began = time.monotonic()
try:
    socket.create_connection((vip, 7000), timeout=float(sys.argv[3])).close()
    outcome = 'connected'
except OSError as err:
    outcome = type(err).__name__
print(outcome, round(time.monotonic() - began, 3), flush=True)
"""


def address_errors(ns, ipv6: bool) -> int:
    """Packets ns's kernel dropped because they were for an address it does not take:
    with forwarding off, dropped without an ICMP error or a reset."""
    if ipv6:
        for line in ns.run("cat", "/proc/net/snmp6").stdout.splitlines():
            name, value = line.split()
            if name == "Ip6InAddrErrors":
                return int(value)
        raise AssertionError("no Ip6InAddrErrors in /proc/net/snmp6")
    rows = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines()
            if line.startswith("Ip:")]
    return int(dict(zip(rows[0], rows[1]))["InAddrErrors"])


@pytest.fixture
def server(lan):
    node, _ = lan
    proc = node.popen(PYTHON, "-c", SERVER, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def client(ns, ip, mode, timeout):
    proc = ns.popen(PYTHON, "-c", CLIENT, ip, mode, str(timeout), stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


def reconnection(proc, go: bool = False) -> tuple[str, float]:
    """What the client's reconnection ended with, and how long its connect() took."""
    out, _ = proc.communicate("go\n" if go else None, timeout=30)
    outcome, seconds = out.split()
    return outcome, float(seconds)


# Holds a connection to the VIP like an idle watch; when it is reset, reconnects until it
# gets through (at most 20 tries), and prints each try's outcome and the time its connect()
# took, then the name of the server it reached.
RECONNECTING_CLIENT = """
import socket, sys, time
vip = sys.argv[1]
first = socket.create_connection((vip, 7000), timeout=5)
print('open', first.recv(16).decode(), flush=True)
first.settimeout(30)
try:
    first.recv(1)
except OSError:
    pass
for _ in range(20):
    began = time.monotonic()
    try:
        s = socket.create_connection((vip, 7000), timeout=5)
    except OSError as err:
        print(type(err).__name__, round(time.monotonic() - began, 3), flush=True)
        time.sleep(0.01)
        continue
    print('connected', round(time.monotonic() - began, 3), flush=True)
    s.settimeout(5)
    print(s.recv(16).decode(), flush=True)
    break
"""
# Greets every client with its host's name, and holds the connection.
NAMED_SERVER = SERVER.replace("held.append(s.accept()[0])",
                              "c = s.accept()[0]; c.send(sys.argv[1].encode()); held.append(c)"
                              ).replace("import socket", "import socket, sys")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_reset_client_reaches_the_new_owner_without_waiting_for_a_retransmission(
        netns_pool, tmp_path, family):
    """Three hosts on a switch; the VIP moves from old to new as Pacemaker moves it (stop,
    then start on the other node; each node has a state directory of its own). The client
    of a connection that stop resets reconnects at once: each try is refused at once or
    gets through, none waits for a retransmission, and it reaches new."""
    params = FAMILIES[family]
    state = {name: {"HA_RSCTMP": str(tmp_path / name)} for name in ("old", "new")}
    old, new, peer = netns_pool.new(), netns_pool.new(), netns_pool.new()
    netns_pool.switch([old, new, peer])
    for number, host in enumerate((old, new, peer), start=1):
        host.ip("addr", "add", f"198.18.0.{number}/24", "dev", "lan0")
        host.ip("addr", "add", f"2001:2::{number}/64", "dev", "lan0", "nodad")
    servers = [host.popen(PYTHON, "-c", NAMED_SERVER, name, stdout=subprocess.PIPE, text=True)
               for host, name in ((old, "old"), (new, "new"))]
    for proc in servers:
        assert proc.stdout.readline().strip() == "listening"
    assert agent("start", params, old, extra=state["old"]).rc == 0
    proc = peer.popen(PYTHON, "-c", RECONNECTING_CLIENT, params["ip"], stdout=subprocess.PIPE,
                      text=True)
    try:
        assert proc.stdout.readline().strip() == "open old"
        out = agent("stop", params, old, extra=state["old"])
        assert out.rc == 0, out
        out = agent("start", params, new, extra=state["new"])
        assert out.rc == 0, out
        lines = proc.communicate(timeout=60)[0].splitlines()
    finally:
        proc.kill()
        for server in servers:
            server.kill()
    tries = [(line.split()[0], float(line.split()[1])) for line in lines[:-1]]
    assert lines[-1] == "new", lines
    assert all(seconds < REFUSED_WITHIN for _, seconds in tries), tries


@pytest.mark.parametrize("mode", ["fresh", "held"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_client_reconnecting_after_stop_is_refused_at_once(lan, server, family, mode):
    """'fresh': the guide's topology, where HAProxy stopped first (the server goes before
    stop, no connection is left on the address) and the client's next SYN comes once the
    address is gone. 'held': the clone topology, a connection that stop resets; the client
    reconnects at once, while the address is still on node but its local route has gone."""
    node, peer = lan
    params = FAMILIES[family]
    assert agent("start", params, node).rc == 0
    proc = client(peer, params["ip"], mode, REFUSED_WITHIN)
    try:
        if mode == "fresh":
            server.kill()
            server.wait()
        dropped = address_errors(node, family == "ipv6")
        out = agent("stop", params, node)
        assert out.rc == 0, out
        outcome = reconnection(proc, go=mode == "fresh")
    finally:
        proc.kill()
    assert neighbour_mac(peer, params["ip"]) == mac_of(node), "the SYN went to the old node"
    assert address_errors(node, family == "ipv6") > dropped, "whose kernel dropped it"
    assert outcome[0] == "ConnectionRefusedError", outcome


# -- the frames and the filter, on recorded and constructed bytes ---------------------------

NODE_MAC = bytes.fromhex("e6096da1647d")
CLIENT_MAC = bytes.fromhex("96ea0e5c70b6")
OTHER_MAC = bytes.fromhex("020000000042")
_, VIP4 = inet.parse_ip("198.18.0.10")
_, VIP6 = inet.parse_ip("2001:2::10")
# Recorded with tcpdump between two namespaces: 198.18.0.1 (2001:2::1) connecting to port
# 6443 of 198.18.0.10 (2001:2::10), a port nobody listens on, and the kernel's answer.
SYN4 = bytes.fromhex(
    "e6096da1647d96ea0e5c70b608004500003c6ea1400040063febc6120001c612000aa5f4192b8b670fa9"
    "00000000a002faf08c5e0000020405b40402080aca830bd5000000000103030a")
KERNEL_RESET4 = bytes.fromhex(
    "96ea0e5c70b6e6096da1647d080045000028000040004006aea0c612000ac6120001192ba5f400000000"
    "8b670faa50140000c96f0000")
SYN6 = bytes.fromhex(
    "e6096da1647d96ea0e5c70b686dd600c8086002806402001000200000000000000000000000120010002"
    "000000000000000000000010c232192b7c05a6d500000000a002fd2040450000020405a00402080ae2c7"
    "a8fc000000000103030a")
KERNEL_RESET6 = bytes.fromhex(  # its flow label is random, its checksum left to offload
    "96ea0e5c70b6e6096da1647d86dd6006a977001406402001000200000000000000000000001020010002"
    "000000000000000000000001192bc232000000007c05a6d65014000040310000")
HOST, BROADCAST, MULTICAST, OTHERHOST, OUTGOING = 0, 1, 2, 3, 4
TCP4, TCP6 = 14 + 20, 14 + 40  # where the TCP header starts in the recorded SYNs


def run_filter(code, frame, pkttype=HOST, vlan=False):
    """The classic BPF interpreter the kernel runs, for the instructions the refuser's
    filter uses: how many bytes of frame it keeps (0: dropped). A load beyond the frame
    drops it, as in the kernel."""
    a = x = pc = 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op in (0x20, 0x28, 0x30):
            if k == 0xFFFFF000 + 4:
                a = pkttype
            elif k == 0xFFFFF000 + 48:
                a = int(vlan)
            else:
                size = {0x20: 4, 0x28: 2, 0x30: 1}[op]
                if k + size > len(frame):
                    return 0
                a = int.from_bytes(frame[k:k + size], "big")
        elif op == 0xB1:
            x = 4 * (frame[k] & 0xF)
        elif op == 0x50:
            if x + k >= len(frame):
                return 0
            a = frame[x + k]
        elif op == 0x54:
            a &= k
        elif op in (0x15, 0x45):
            pc += jt if (a == k if op == 0x15 else a & k) else jf
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {op:#x} is not one the filter should use")


def with_byte(frame, offset, value):
    return frame[:offset] + bytes([value]) + frame[offset + 1:]


def with_ipv4_options(frame):
    """frame (IPv4) with 4 bytes of IP options (NOPs) before its TCP header."""
    header = bytearray(frame[14:TCP4])
    header[0] = 0x46
    header[2:4] = (len(frame) - 14 + 4).to_bytes(2, "big")
    return frame[:14] + bytes(header) + b"\x01" * 4 + frame[TCP4:]


FILTERED = [  # (what, family, frame, pkttype, vlan, kept)
    ("a SYN to the VIP", "ipv4", SYN4, HOST, False, True),
    ("a SYN to the VIP", "ipv6", SYN6, HOST, False, True),
    ("a SYN after IP options", "ipv4", with_ipv4_options(SYN4), HOST, False, True),
    ("a SYN only seen (promiscuous)", "ipv4", SYN4, OTHERHOST, False, False),
    ("a SYN only seen (promiscuous)", "ipv6", SYN6, OTHERHOST, False, False),
    ("a SYN to a group MAC", "ipv4", SYN4, BROADCAST, False, False),
    ("a SYN to a group MAC", "ipv6", SYN6, MULTICAST, False, False),
    ("a SYN tagged for a VLAN", "ipv4", SYN4, HOST, True, False),
    ("a SYN this host sends", "ipv6", SYN6, OUTGOING, False, False),
    ("a SYN-ACK", "ipv4", with_byte(SYN4, TCP4 + 13, 0x12), HOST, False, False),
    ("a SYN-ACK", "ipv6", with_byte(SYN6, TCP6 + 13, 0x12), HOST, False, False),
    ("a SYN-ACK after IP options", "ipv4",
     with_byte(with_ipv4_options(SYN4), TCP4 + 4 + 13, 0x12), HOST, False, False),
    ("an ACK", "ipv4", with_byte(SYN4, TCP4 + 13, 0x10), HOST, False, False),
    ("a reset", "ipv6", with_byte(SYN6, TCP6 + 13, 0x04), HOST, False, False),
    ("a SYN to another address", "ipv4", with_byte(SYN4, 33, 11), HOST, False, False),
    ("a SYN to another address", "ipv6", with_byte(SYN6, 53, 0x11), HOST, False, False),
    ("UDP to the VIP", "ipv4", with_byte(SYN4, 23, 17), HOST, False, False),
    ("a later fragment", "ipv4", with_byte(SYN4, 21, 0x10), HOST, False, False),
    ("TCP after an extension header", "ipv6", with_byte(SYN6, 20, 0), HOST, False, False),
    ("a truncated SYN", "ipv4", SYN4[:40], HOST, False, False),
    ("a gratuitous ARP for the VIP", "ipv4",
     announce.arp_frame(1, OTHER_MAC, VIP4, bytes(6), VIP4), BROADCAST, False, True),
    ("an ARP reply from the VIP", "ipv4",
     announce.arp_frame(2, OTHER_MAC, VIP4, CLIENT_MAC, VIP4[:3] + b"\x02"), HOST, False, True),
    ("a gratuitous ARP this host sends", "ipv4",
     announce.arp_frame(1, NODE_MAC, VIP4, bytes(6), VIP4), OUTGOING, False, False),
    ("an ARP request for the VIP", "ipv4",
     announce.arp_frame(1, CLIENT_MAC, VIP4[:3] + b"\x02", bytes(6), VIP4), BROADCAST, False,
     False),
    ("an unsolicited NA for the VIP", "ipv6", announce.na_frame(OTHER_MAC, VIP6), MULTICAST,
     False, True),
    ("an NA this host sends", "ipv6", announce.na_frame(NODE_MAC, VIP6), OUTGOING, False,
     False),
    ("an NA for another address", "ipv6", announce.na_frame(OTHER_MAC, VIP6[:15] + b"\x11"),
     MULTICAST, False, False),
    ("a neighbour solicitation", "ipv6", with_byte(announce.na_frame(OTHER_MAC, VIP6), 54, 135),
     MULTICAST, False, False),
    ("an IPv6 frame", "ipv4", SYN6, HOST, False, False),
    ("an IPv4 frame", "ipv6", SYN4, HOST, False, False),
]


@pytest.mark.parametrize("what,family,frame,pkttype,vlan,kept", FILTERED,
                         ids=[f"{f[1]}-{f[0]}" for f in FILTERED])
def test_the_filter_wakes_the_refuser_only_for_syns_to_the_vip_and_its_announcements(
        what, family, frame, pkttype, vlan, kept):
    address = VIP4 if family == "ipv4" else VIP6
    code = refuse.program(inet.AF_INET if family == "ipv4" else inet.AF_INET6, address)
    assert code[-1] == (0x06, 0, 0, 0) and len(code) < 64
    assert (run_filter(code, frame, pkttype, vlan) > 0) == kept, what


def test_a_recorded_syn_is_read_with_its_numbers():
    syn = refuse.parse_syn(SYN4, VIP4)
    assert (syn.mac, syn.client, syn.client_port, syn.port, syn.seq, syn.length) == \
        (CLIENT_MAC, bytes([198, 18, 0, 1]), 42484, 6443, 2338787241, 1)
    syn = refuse.parse_syn(SYN6, VIP6)
    assert (syn.client, syn.client_port, syn.port, syn.seq, syn.length) == \
        (inet.parse_ip("2001:2::1")[1], 49714, 6443, 2080745173, 1)
    assert refuse.parse_syn(with_ipv4_options(SYN4), VIP4).port == 6443


def test_data_in_a_syn_is_acknowledged_too():
    """A SYN may carry data (TCP Fast Open): the reset acknowledges all of it."""
    data = b"GET /"
    frame = SYN4[:16] + (len(SYN4) - 14 + len(data)).to_bytes(2, "big") + SYN4[18:] + data
    assert refuse.parse_syn(frame, VIP4).length == 1 + len(data)
    frame = SYN6[:18] + (len(SYN6) - 54 + len(data)).to_bytes(2, "big") + SYN6[20:] + data
    assert refuse.parse_syn(frame, VIP6).length == 1 + len(data)


@pytest.mark.parametrize("what,frame,address", [
    ("a SYN-ACK", with_byte(SYN4, TCP4 + 13, 0x12), VIP4),
    ("to another address", SYN4, bytes([198, 18, 0, 11])),
    ("an IPv4 SYN for an IPv6 VIP", SYN4, VIP6),
    ("from a group MAC", with_byte(SYN4, 6, 0x97), VIP4),
    ("from the unspecified address", SYN4[:26] + bytes(4) + SYN4[30:], VIP4),
    ("from a multicast address", SYN6[:22] + b"\xff\x02" + SYN6[24:], VIP6),
    ("a first fragment", with_byte(SYN4, 20, 0x60), VIP4),
    ("not TCP", with_byte(SYN6, 20, 17), VIP6),
    ("truncated", SYN6[:60], VIP6),
    ("no IP version 4", with_byte(SYN4, 14, 0x65), VIP4),
])
def test_what_is_no_syn_to_the_vip_is_not_answered(what, frame, address):
    assert refuse.parse_syn(frame, address) is None, what


def test_the_reset_is_the_kernels_for_a_closed_port_byte_for_byte():
    reset = refuse.reset_frame(NODE_MAC, VIP4, refuse.parse_syn(SYN4, VIP4))
    assert len(reset) == 60 and reset[54:] == bytes(6), "padded to the Ethernet minimum"
    assert reset[:54] == KERNEL_RESET4


def test_the_ipv6_reset_is_the_kernels_but_for_flow_label_and_a_full_checksum():
    reset = refuse.reset_frame(NODE_MAC, VIP6, refuse.parse_syn(SYN6, VIP6))
    assert len(reset) == len(KERNEL_RESET6)
    assert reset[14:18] == bytes.fromhex("60000000"), "no flow label"
    assert reset[18:70] == KERNEL_RESET6[18:70] and reset[72:] == KERNEL_RESET6[72:]
    assert reset[:14] == KERNEL_RESET6[:14]
    assert inet.transport_checksum(VIP6, reset[38:54], 6, reset[54:]) == 0


def test_the_reset_acknowledges_across_the_sequence_number_wrap():
    syn = refuse.parse_syn(SYN4[:TCP4 + 4] + b"\xff\xff\xff\xff" + SYN4[TCP4 + 8:], VIP4)
    reset = refuse.reset_frame(NODE_MAC, VIP4, syn)
    assert reset[TCP4 + 8:TCP4 + 12] == bytes(4)
    assert inet.checksum(reset[14:TCP4]) == 0, "the IPv4 header's checksum checks"
    assert inet.transport_checksum(VIP4, reset[30:34], 6, reset[TCP4:54]) == 0


def test_the_claimant_is_whoever_announces_the_vip():
    assert refuse.claimant(announce.arp_frame(1, OTHER_MAC, VIP4, bytes(6), VIP4), VIP4) == \
        OTHER_MAC
    assert refuse.claimant(announce.na_frame(OTHER_MAC, VIP6), VIP6) == OTHER_MAC
    assert refuse.claimant(SYN4, VIP4) is None and refuse.claimant(SYN6, VIP6) is None


# -- the refuser's life ------------------------------------------------------------------------

def refused_at_once(ns, ip):
    """A connect() from ns to ip:7000: refused within REFUSED_WITHIN, or how it ended."""
    proc = ns.run(PYTHON, "-c", "import socket, sys\n"
                  f"try: socket.create_connection(({ip!r}, 7000), {REFUSED_WITHIN})\n"
                  "except OSError as err: print(type(err).__name__)", check=False)
    return proc.stdout.strip() == "ConnectionRefusedError" or proc.stdout.strip() or proc.stderr


def learn_the_vip(ns, ip):
    """ns learns which MAC has ip (a neighbour entry for it), as any client of it has."""
    ns.run(PYTHON, "-c", "import socket\n"
           f"try: socket.create_connection(({ip!r}, 7000), 1)\nexcept OSError: pass")


def one_within(ns, seconds=2.0):
    """Whether one refuser runs in ns within seconds: stop returns as soon as it knows the
    refuser's pid, and the refuser takes its name a moment later."""
    deadline = time.monotonic() + seconds
    while len(refusers(ns)) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(refusers(ns)) == 1


def gone_within(ns, seconds):
    deadline = time.monotonic() + seconds
    while refusers(ns) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not refusers(ns)


@pytest.fixture
def log(tmp_path):
    """HA_LOGFILE for the agent, and what it holds."""
    path = tmp_path / "agent.log"
    return {"HA_LOGFILE": str(path)}, lambda: path.read_text() if path.exists() else ""


@pytest.mark.parametrize("family", FAMILIES)
def test_the_refuser_ends_soon_after_another_host_announces_the_address(lan, log, family):
    node, peer = lan
    params = FAMILIES[family]
    extra, logged = log
    assert agent("start", params, node).rc == 0
    learn_the_vip(peer, params["ip"])
    assert agent("stop", params, node, extra=extra).rc == 0
    assert one_within(node)
    assert refused_at_once(peer, params["ip"]) is True
    peer.ip("addr", "add", f"{params['ip']}/{params['cidr_netmask']}", "dev", "lan0", "nodad")
    peer.run(PYTHON, "-c", "from ocf_lib.adapters import announce\n"
             f"announce.announce('lan0', {params['ip']!r}, count=1)")
    assert gone_within(node, 3), "the refuser outlived the new owner's announcement"
    assert f"refused 1 connection(s) to {params['ip']} on lan0; it ended: {mac_of(peer)} " \
           f"announced {params['ip']}" in logged()


def test_the_refuser_is_not_ended_by_this_nodes_own_announcements(lan):
    node, peer = lan
    assert agent("start", V4, node).rc == 0
    learn_the_vip(peer, V4["ip"])
    assert agent("stop", V4, node).rc == 0
    node.run(PYTHON, "-c", "from ocf_lib.adapters import announce\n"
             f"announce.announce('lan0', {V4['ip']!r}, count=2, interval_ms=10)")
    time.sleep(refusing.REFUSE_AFTER_ANNOUNCEMENT + 0.2)
    assert one_within(node)
    assert refused_at_once(peer, V4["ip"]) is True


def test_start_ends_the_refuser_before_the_address_is_back(lan, log):
    node, peer = lan
    extra, logged = log
    assert agent("start", V4, node).rc == 0
    assert agent("stop", V4, node).rc == 0
    assert one_within(node)
    out = agent("start", V4, node, extra=extra)
    assert out.rc == 0, out
    assert refusers(node) == []
    assert "is on this node again" not in logged(), "ended by start, not by its own look"
    assert agent("stop", V4, node).rc == 0, "and a stop leaves a new one"
    assert one_within(node)


def test_the_address_added_here_by_other_means_ends_the_refuser(lan, log):
    node, _ = lan
    extra, logged = log
    assert agent("start", V4, node).rc == 0
    assert agent("stop", V4, node, extra=extra).rc == 0
    node.ip("addr", "add", "198.18.0.10/24", "dev", "lan0")
    assert gone_within(node, 2)
    assert "198.18.0.10 is on this node again" in logged()


def test_a_stop_ends_the_refuser_recorded_before_it_leaves_its_own(lan, monkeypatch):
    """A refuser that an earlier stop left and that never ended (a stand-in here: a sleep
    recorded as one) goes when stop leaves another: one refuser per resource at most."""
    from ocf_lib.ocf.state import StateDir, pid_record
    node, _ = lan
    monkeypatch.setenv("HA_RSCTMP", STATE_DIR)
    assert agent("start", V4, node).rc == 0
    stand_in = node.popen("sleep", "60")
    try:
        StateDir("IPaddr2", "test-rsc").write("refuser", pid_record(stand_in.pid))
        assert agent("stop", V4, node).rc == 0
        assert stand_in.wait(timeout=5) == -9
        assert one_within(node)
    finally:
        stand_in.kill()


def test_the_refuser_ends_after_its_bound(lan):
    node, peer = lan
    params = {**V4, "refuse_after_stop": "1"}
    assert agent("start", params, node).rc == 0
    learn_the_vip(peer, V4["ip"])
    began = time.monotonic()
    assert agent("stop", params, node).rc == 0
    assert refused_at_once(peer, V4["ip"]) is True
    assert gone_within(node, 3)
    assert time.monotonic() - began >= 1
    assert refused_at_once(peer, V4["ip"]) == "TimeoutError", "silence again, as before"


def test_refuse_after_stop_0_leaves_no_refuser(lan):
    node, peer = lan
    params = {**V4, "refuse_after_stop": "0"}
    assert agent("start", params, node).rc == 0
    learn_the_vip(peer, V4["ip"])
    assert agent("stop", params, node).rc == 0
    assert refusers(node) == []
    assert refused_at_once(peer, V4["ip"]) == "TimeoutError"


def test_stop_succeeds_when_the_packet_socket_cannot_be_opened(lan):
    """Without CAP_NET_RAW (which a packet socket needs, and nothing else stop does):
    stop removes the address and succeeds, with a warning, and leaves no refuser."""
    node, _ = lan
    assert agent("start", V4, node).rc == 0
    proc = node.run("setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw",
                    os.path.join(AGENTS, "IPaddr2"), "stop", env=agent_env(V4), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "connections to 198.18.0.10 will not be refused after stop: opening a raw packet " \
           "socket was refused" in proc.stderr
    assert "198.18.0.10/24" not in node.addresses("lan0")
    assert refusers(node) == []


# A TCP SYN to the VIP, sent whole from the peer's lan0 to the destination MAC given (hex).
SEND_SYN = """
import socket, sys
frame = bytes.fromhex(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('lan0', 0))
s.send(bytes.fromhex(sys.argv[2]) + s.getsockname()[4] + frame[12:])
"""


def test_a_syn_the_node_only_sees_is_never_answered(lan):
    """In promiscuous mode the node's lan0 takes in frames for other MACs (PACKET_OTHERHOST):
    the refuser leaves them alone. The same SYN sent to the node's MAC is refused."""
    node, peer = lan
    assert agent("start", V4, node).rc == 0
    assert agent("stop", V4, node).rc == 0
    node.ip("link", "set", "lan0", "promisc", "on")
    syn = SYN4[:26] + bytes([198, 18, 0, 2]) + SYN4[30:]  # from the peer's address
    capture = peer.popen("tcpdump", "-i", "lan0", "-n", "-l", "--immediate-mode", "-c", "1",
                         "tcp[tcpflags] & tcp-rst != 0", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        while "listening on" not in capture.stderr.readline():
            pass
        peer.run(PYTHON, "-c", SEND_SYN, syn.hex(), "020000000099")
        with pytest.raises(subprocess.TimeoutExpired):
            capture.wait(timeout=0.5)
        peer.run(PYTHON, "-c", SEND_SYN, syn.hex(), mac_of(node).replace(":", ""))
        out, _ = capture.communicate(timeout=5)
    finally:
        capture.kill()
    assert "198.18.0.10.6443 > 198.18.0.2.42484: Flags [R.], seq 0, ack 2338787242" in out


def test_monitor_imports_nothing_of_the_refuser(lan):
    node, _ = lan
    assert agent("start", V4, node).rc == 0
    imported = imported_modules("IPaddr2", "monitor", V4, ns=node, interval_ms=10000)
    assert not imported & {"ocf_lib.adapters.refuse", "ocf_lib.adapters.process", "array"}, \
        sorted(imported)


@pytest.mark.parametrize("ending", ["no", "stop died"])
def test_a_refuser_started_ahead_waits_and_ends_unused_when_the_address_did_not_go(
        tmp_path, monkeypatch, ending):
    """Stop starts its refuser before the address goes (the fork is not part of the
    clients' wait); until stop says the address has gone, it answers nothing, and a stop
    that failed to remove the address, or died, leaves it nothing to do."""
    from ocf_lib.ocf.state import StateDir

    class Unused:
        def __init__(self):
            self.read_end, self.write_end = os.pipe()

        def fileno(self):
            return self.read_end

        def answer(self):
            raise AssertionError("answered")

    monkeypatch.setenv("HA_RSCTMP", str(tmp_path))
    state, unused = StateDir("IPaddr2", "test-rsc"), Unused()
    pending = refusing.PendingRefuser(unused, vips.parse("198.18.0.10", "lan0", "24", "", "",
                                                         "forever"), 10, state, log=None)
    pid = registry.running(state, "refuser")
    time.sleep(0.2)
    assert pid and os.path.exists(f"/proc/{pid}")  # waiting for its stop's word
    if ending == "no":
        pending.release(False)
    else:
        os.close(pending._go)  # what the kernel does for a stop that died
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Running, not a zombie (the refuser is detached: init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
