"""ocf_lib.adapters.announce: frames checked byte by byte, then sent for real between two
namespaces.

The real tests run the library inside the `node` namespace (a child Python process under
`ip netns exec`) and judge the result where an operator would: the peer's neighbour table,
and what tcpdump -- a decoder that is not ours -- sees arriving at the peer.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import textwrap
import time

import pytest

from lab.netns import Netns
from ocfshim import modules_loaded_by, public_tree
from ocf_lib.adapters import announce
from ocf_lib.adapters.announce import AnnounceError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
VIP4, VIP6 = "198.18.0.10", "2001:2::10"
ELSEWHERE = "02:00:00:00:00:99"


def ip4(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


# --- frames, without a network -----------------------------------------------------------

def test_gratuitous_request_frame_is_broadcast_arp_request_for_the_address_itself() -> None:
    frame = announce.arp_frame(1, MAC_A, ip4(VIP4), bytes(6), ip4(VIP4))
    assert len(frame) == 60 and frame[42:] == bytes(18)
    assert frame[:14] == b"\xff" * 6 + MAC_A + b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert frame[22:42] == MAC_A + ip4(VIP4) + bytes(6) + ip4(VIP4)


def test_unsolicited_na_frame_has_override_only_hop_limit_255_and_valid_checksum() -> None:
    vip = bytes.fromhex("20010002" + "00" * 11 + "10")
    all_nodes = bytes.fromhex("ff02" + "00" * 13 + "01")
    frame = announce.na_frame(MAC_A, vip)
    assert frame[:14] == bytes.fromhex("333300000001") + MAC_A + b"\x86\xdd"
    version, payload_length, next_header, hop_limit = struct.unpack("!IHBB", frame[14:22])
    assert (version >> 28, payload_length, next_header, hop_limit) == (6, 32, 58, 255)
    assert frame[22:38] == vip and frame[38:54] == all_nodes
    icmp = frame[54:]
    assert len(icmp) == payload_length
    assert icmp[:2] == bytes([136, 0])
    assert struct.unpack("!I", icmp[4:8])[0] == 0x20000000  # O set; R and S clear
    assert icmp[8:24] == vip and icmp[24:32] == bytes([2, 1]) + MAC_A
    # A correct checksum makes the one's-complement sum over pseudo-header and message,
    # checksum included, come out as all ones.
    data = vip + all_nodes + struct.pack("!I3xB", len(icmp), 58) + icmp
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


def test_arp_claimant_is_whoever_gives_the_address_as_sender() -> None:
    reply = announce.arp_frame(2, MAC_B, ip4(VIP4), MAC_A, bytes(4))
    announcement = announce.arp_frame(1, MAC_B, ip4(VIP4), bytes(6), ip4(VIP4))
    rival_probe = announce.arp_frame(1, MAC_B, bytes(4), bytes(6), ip4(VIP4))
    assert announce.arp_claimant(reply, ip4(VIP4)) == MAC_B
    assert announce.arp_claimant(announcement, ip4(VIP4)) == MAC_B
    assert announce.arp_claimant(rival_probe, ip4(VIP4)) is None
    assert announce.arp_claimant(reply, ip4("198.18.0.11")) is None
    assert announce.arp_claimant(reply[:30], ip4(VIP4)) is None
    assert announce.arp_claimant(reply[:12] + b"\x86\xdd" + reply[14:], ip4(VIP4)) is None


def test_na_claimant_is_the_sender_of_an_advertisement_for_the_address() -> None:
    vip = bytes.fromhex("20010002" + "00" * 11 + "10")
    other = bytes.fromhex("20010002" + "00" * 11 + "11")
    advertisement = announce.na_frame(MAC_B, vip)
    assert announce.na_claimant(advertisement, vip) == MAC_B
    assert announce.na_claimant(advertisement, other) is None
    hop_limit_64 = advertisement[:21] + bytes([64]) + advertisement[22:]
    assert announce.na_claimant(hop_limit_64, vip) is None, "dropped by every neighbour"
    solicitation = advertisement[:54] + bytes([135]) + advertisement[55:]
    assert announce.na_claimant(solicitation, vip) is None
    assert announce.na_claimant(advertisement[:70], vip) is None
    assert announce.na_claimant(announce.arp_frame(1, MAC_B, ip4(VIP4), bytes(6), ip4(VIP4)),
                                vip) is None


@pytest.mark.parametrize("name", ["", "a" * 16, ".", "..", "../etc", "lan 0", "lan0\n",
                                  "eth0:1", "a\0b"])
def test_malformed_interface_name_is_refused(name: str) -> None:
    with pytest.raises(AnnounceError, match="not a valid interface name"):
        announce.announce(name, VIP4, count=1)


@pytest.mark.parametrize("call, reason", [
    (lambda: announce.announce("lan0", "198.18.0.300"), "not a valid IP address"),
    (lambda: announce.announce("lan0", VIP4 + "/24"), "prefix length"),
    (lambda: announce.announce("lan0", VIP4, mode="-A"), "neither 'request' nor 'reply'"),
    (lambda: announce.announce("lan0", VIP6, mode="rely"), "neither 'request' nor 'reply'"),
    (lambda: announce.announce("lan0", VIP4, count=-1), "count >= 0"),
    (lambda: announce.announce("lan0", VIP4, mac=b"\x02\x00"), "does not have 6 bytes"),
    (lambda: announce.arp_probe("lan0", VIP4, tries=0), "tries >= 1"),
    (lambda: announce.spawn_background("lan0", VIP4, mode="x"), "neither 'request' nor 'reply'"),
])
def test_bad_arguments_are_refused_before_any_socket_is_opened(call, reason: str) -> None:
    with pytest.raises(AnnounceError, match=reason):
        call()


def test_import_pulls_in_only_cheap_builtin_modules() -> None:
    allowed = {"__future__", "_socket", "errno", "os", "select", "struct", "_struct", "syslog",
               "time", "stat", "_stat", "posixpath", "genericpath", "_collections_abc"}
    loaded = modules_loaded_by("import ocf_lib.adapters.announce")
    ours = {name for name in loaded if not name.startswith("ocf_lib")}
    assert ours <= allowed, f"expensive imports: {sorted(ours - allowed)}"


# --- for real, between two namespaces ----------------------------------------------------

def run_py(ns: Netns, code: str) -> str:
    """Run code inside ns with `from ocf_lib.adapters.announce import *` done; return its stdout."""
    proc = ns.run(PYTHON, "-c", "from ocf_lib.adapters.announce import *\n" + textwrap.dedent(code),
                  check=False, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def mac_of(ns: Netns, dev: str = "lan0") -> str:
    return json.loads(ns.ip("-j", "link", "show", "dev", dev))[0]["address"]


def neighbour(ns: Netns, address: str) -> str | None:
    """The link-layer address ns has cached for address on lan0, if any."""
    entries = json.loads(ns.ip("-j", "neigh", "show", address, "dev", "lan0") or "[]")
    return entries[0].get("lladdr") if entries else None


class Capture:
    """tcpdump on the peer's lan0 for the duration of a with-block.

    After the block, `packets` holds one (timestamp, text) per frame, the text decoded by
    tcpdump -vv with continuation lines joined.
    """

    def __init__(self, ns: Netns, bpf: str) -> None:
        self.argv = ("tcpdump", "-i", "lan0", "-n", "-e", "-tt", "-vv", "-l",
                     "--immediate-mode", bpf)
        self.ns = ns
        self.packets: list[tuple[float, str]] = []

    def __enter__(self) -> Capture:
        self.proc = self.ns.popen(*self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        line = self.proc.stderr.readline()
        if "listening on" not in line:
            self.proc.kill()
            pytest.fail(f"tcpdump did not start: {line}{self.proc.stderr.read()}")
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # let the last frame through before stopping
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        for line in out.splitlines():
            if line[:1].isdigit():
                stamp, text = line.split(" ", 1)
                self.packets.append((float(stamp), text))
            elif self.packets:
                self.packets[-1] = (self.packets[-1][0], self.packets[-1][1] + " " + line.strip())

    def matching(self, *needles: str) -> list[tuple[float, str]]:
        return [p for p in self.packets if all(n in p[1] for n in needles)]


# Linux lets a gratuitous ARP update an entry the receiver already has, whatever its state
# short of PERMANENT, and even within `locktime` of the last update, because the kernel
# recognises it as gratuitous (sender IP == target IP; for a reply also target MAC ==
# sender MAC). net.ipv4.conf.*.arp_accept (default 0) only decides whether an unknown
# address gets a *new* entry, so it does not matter for a takeover: the hosts that talked
# to the VIP are exactly those holding an entry. IPv6 is the same: an unsolicited NA with
# Override replaces an existing entry; creating one is up to accept_untracked_na.
@pytest.mark.parametrize("mode", ["request", "reply"])
def test_gratuitous_arp_moves_peers_stale_entry_to_node(lan: tuple[Netns, Netns],
                                                          mode: str) -> None:
    node, peer = lan
    peer.ip("neigh", "replace", VIP4, "lladdr", ELSEWHERE, "dev", "lan0", "nud", "stale")
    node.ip("addr", "add", f"{VIP4}/24", "dev", "lan0")
    run_py(node, f"announce('lan0', {VIP4!r}, count=2, interval_ms=50, mode={mode!r})")
    assert neighbour(peer, VIP4) == mac_of(node)


def test_unsolicited_na_moves_peers_stale_entry_to_node(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    peer.ip("-6", "neigh", "replace", VIP6, "lladdr", ELSEWHERE, "dev", "lan0", "nud", "stale")
    node.ip("addr", "add", f"{VIP6}/64", "dev", "lan0", "nodad")
    run_py(node, f"announce('lan0', {VIP6!r}, count=2, interval_ms=50)")
    assert neighbour(peer, VIP6) == mac_of(node)


def test_given_mac_is_announced_instead_of_the_interfaces(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    peer.ip("neigh", "replace", VIP4, "lladdr", ELSEWHERE, "dev", "lan0", "nud", "stale")
    run_py(node, f"announce('lan0', {VIP4!r}, count=1, mac=bytes.fromhex('020000000042'))")
    assert neighbour(peer, VIP4) == "02:00:00:00:00:42"


def test_arp_frames_arrive_count_times_interval_apart(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    with Capture(peer, "arp") as capture:
        run_py(node, f"announce('lan0', {VIP4!r}, count=4, interval_ms=150)")
    frames = capture.matching(mac_of(node), f"Request who-has {VIP4} tell {VIP4}")
    assert len(frames) == 4
    _assert_spacing([stamp for stamp, _ in frames], 0.150)


def test_reply_mode_sends_arp_replies_naming_node(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    with Capture(peer, "arp") as capture:
        run_py(node, f"announce('lan0', {VIP4!r}, count=2, interval_ms=0, mode='reply')")
    assert len(capture.matching("> ff:ff:ff:ff:ff:ff", f"Reply {VIP4} is-at {mac_of(node)}")) == 2


def test_neighbor_advertisements_arrive_checksummed_count_times(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    with Capture(peer, "icmp6") as capture:
        run_py(node, f"announce('lan0', {VIP6!r}, count=3, interval_ms=100)")
    frames = capture.matching(f"{VIP6} > ff02::1:", "neighbor advertisement", f"tgt is {VIP6}")
    assert len(frames) == 3
    for _, text in frames:
        assert "hlim 255" in text and "[icmp6 sum ok]" in text and "Flags [override]" in text
        assert f"destination link-address option (2), length 8 (1): {mac_of(node)}" in text
    _assert_spacing([stamp for stamp, _ in frames], 0.100)


def _assert_spacing(stamps: list[float], interval: float) -> None:
    """Frames came roughly interval apart, and the whole burst took about what it should."""
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(gap >= interval * 0.5 for gap in gaps), gaps
    assert interval * len(gaps) * 0.9 <= stamps[-1] - stamps[0] <= interval * len(gaps) + 0.25


def test_arp_probe_names_the_host_that_answers(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    out = run_py(node, """
        found = arp_probe('lan0', '198.18.0.2', timeout_ms=500, tries=2)
        print(format_mac(found))
    """)
    assert out.strip() == mac_of(peer)


def test_arp_probe_finds_nobody_for_an_unused_address(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    out = run_py(node, "print(arp_probe('lan0', '198.18.0.77', timeout_ms=200, tries=2))")
    assert out.strip() == "None"


def test_arp_probe_sends_rfc5227_probes_that_teach_nobody(lan: tuple[Netns, Netns]) -> None:
    node, peer = lan
    with Capture(peer, "arp") as capture:
        run_py(node, "arp_probe('lan0', '198.18.0.77', timeout_ms=100, tries=3)")
    assert len(capture.matching("Request who-has 198.18.0.77 tell 0.0.0.0")) == 3
    assert neighbour(peer, "198.18.0.77") is None


# The outer process plays init: as a child subreaper it adopts the orphaned announcer and
# can report its exit status. The inner process plays the agent: it spawns, checks it has
# no child left to reap, and exits while the announcer still runs.
SUBREAPER = """
import ctypes, os, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
began = time.monotonic()
agent = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True)
agent_seconds = time.monotonic() - began
pid = int(agent.stdout.split()[0])
_, status = os.waitpid(pid, 0)
print(agent.stdout.strip(), round(agent_seconds, 3), os.waitstatus_to_exitcode(status),
      agent.returncode, agent.stderr.strip())
"""
AGENT = """
import os
from ocf_lib.adapters.announce import spawn_background
pid = spawn_background('lan0', '198.18.0.10', count=5, interval_ms=250, mode='request')
try:
    os.waitpid(-1, os.WNOHANG)
    children = 'children-left'
except ChildProcessError:
    children = 'no-children'
print(pid, children)
"""


def test_spawn_background_returns_at_once_and_leaves_no_zombie(lan: tuple[Netns, Netns]
                                                               ) -> None:
    node, peer = lan
    with Capture(peer, "arp") as capture:
        proc = node.run(PYTHON, "-c", SUBREAPER, AGENT, env={**os.environ, "PYTHONPATH": REPO})
    pid, children, agent_seconds, announcer_status, agent_status, *_ = proc.stdout.split()
    assert (children, agent_status) == ("no-children", "0"), proc.stdout
    # The agent, stdout captured like Pacemaker captures it, ended long before the one
    # second of announcing: the announcer kept neither it nor its pipes.
    assert float(agent_seconds) < 0.8
    assert announcer_status == "0"
    assert len(capture.matching(mac_of(node), f"Request who-has {VIP4} tell {VIP4}")) == 5


# The agent traps SIGTERM, as an agent cleaning up on timeout might; the announcer, a
# copy of it, must not run that handler but die as `kill PID` from a stop action intends.
AGENT_THAT_TRAPS_SIGTERM = """
import os, signal, sys
from ocf_lib.adapters.announce import spawn_background
signal.signal(signal.SIGTERM, lambda *_: print('agent handler ran in', os.getpid()))
pid = spawn_background('lan0', '198.18.0.10', count=100, interval_ms=100)
os.kill(pid, signal.SIGTERM)
print(pid, 'killed')
"""


def test_background_announcer_ends_on_sigterm_despite_callers_handler(
        lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    proc = node.run(PYTHON, "-c", SUBREAPER, AGENT_THAT_TRAPS_SIGTERM,
                    env={**os.environ, "PYTHONPATH": REPO}, timeout=20)
    _, said, _, announcer_status, agent_status, *rest = proc.stdout.split()
    assert (said, agent_status, rest) == ("killed", "0", []), proc.stdout
    assert announcer_status == str(-signal.SIGTERM)


def test_missing_interface_is_reported_by_name(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    assert _error(node, f"announce('eth9', {VIP4!r}, count=1)") == \
        "interface 'eth9' does not exist"
    assert _error(node, f"spawn_background('eth9', {VIP6!r})") == "interface 'eth9' does not exist"
    assert _error(node, "arp_probe('eth9', '198.18.0.2')") == "interface 'eth9' does not exist"


def test_interface_that_is_down_is_reported(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    node.ip("link", "add", "down0", "type", "veth", "peer", "name", "down1")
    assert _error(node, f"announce('down0', {VIP6!r}, count=1)") == \
        "interface 'down0' is down; nothing can be sent on it"


def test_loopback_is_refused_as_not_ethernet(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    assert "is not Ethernet" in _error(node, f"announce('lo', {VIP4!r}, count=1)")


def test_unprivileged_caller_is_told_what_is_missing(lan: tuple[Netns, Netns]) -> None:
    node, _ = lan
    code = "from ocf_lib.adapters.announce import *\n" + _CATCH.format(
        call=f"announce('lan0', {VIP4!r}, count=1)")
    proc = node.run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "--inh-caps=-all", PYTHON, "-c", code, check=False,
                    env={**os.environ, "PYTHONPATH": public_tree(), "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.stdout.strip() == ("opening a raw packet socket was refused: sending ARP or "
                                   "Neighbor Advertisements needs root or CAP_NET_RAW"), proc.stderr


_CATCH = """
try:
    {call}
except AnnounceError as err:
    print(err)
else:
    print("no error")
"""


def _error(ns: Netns, call: str) -> str:
    """The AnnounceError message that call raises inside ns."""
    return run_py(ns, _CATCH.format(call=call)).strip()
