"""How fast our IPaddr2 agent is against ocf:heartbeat:IPaddr2, action by action.

Pacemaker runs `monitor` every few seconds on every node and waits for `start`/`stop`
during fail-over, so the wall time of one agent run is what an operator pays. Both agents
run the same lifecycle (monitor while absent, start, monitor while present, stop), each on
a throw-away pair of network namespaces of its own, alternating action by action (the order
flips every round) so that drift of the machine hits both alike. This process steps into
the namespace around each spawn (setns) instead of going through `ip netns exec`, so the
timing covers the agent and not a second program. A peer on the link counts the gratuitous
ARP / unsolicited NA frames each start sends, so an agent cannot look fast by skipping them.
bench/haproxy_speed.py reuses the Runner for the haproxy agent.

Run as root: `make bench` or `python3 -m bench.agent_speed --runs 30`.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
from lab.netns import Netns, NetnsPool
from agents.ipaddr2 import REFUSE_AFTER_STOP

DEFAULT_AGENT = REPO / "agents" / "IPaddr2"
DEFAULT_REFERENCE = Path("/usr/lib/ocf/resource.d/heartbeat/IPaddr2")
DEFAULT_OUTPUT = REPO / "bench" / "results" / "agent_speed.md"
NIC = "lan0"
# Ours/reference ratios the agent is meant to reach; above them the rewrite is not paying off.
TARGETS = {"monitor": 0.5, "start": 0.7, "stop": 0.7}
# The longest a lane may take to fall quiet: a refuser that no announcement ends lives for
# refuse_after_stop seconds after stop, then logs and exits (at nice 10: later on a busy
# machine).
QUIET_TIMEOUT = REFUSE_AFTER_STOP + 5.0

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 2
ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ICMPV6 = 58
NEIGHBOR_ADVERTISEMENT = 136

_libc = ctypes.CDLL(None, use_errno=True)


class BenchError(Exception):
    """The benchmark cannot go on (wrong exit code, missing agent, ...)."""


@dataclass(frozen=True)
class Case:
    """One address family: the VIP and the link setup it is measured on."""
    family: str
    ip: str
    cidr: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def cidr_address(self) -> str:
        return f"{self.ip}/{self.cidr}"


@dataclass
class Agent:
    """One agent under test and the samples gathered for it."""
    role: str
    path: Path
    version: str = ""
    declared: set[str] = field(default_factory=set)
    # Parameters set for this agent alone, by family (see match_announcements).
    params: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    rss_kib: dict[str, list[int]] = field(default_factory=dict)
    frames: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


# --- namespaces -----------------------------------------------------------------------

def _check_libc(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    """Move the calling process into the namespace open at fd (os.setns is 3.12+)."""
    _check_libc(_libc.setns(fd, nstype), "setns")


def open_namespace(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@functools.cache
def home_namespace(kind: str) -> int:
    """An fd of this process's own namespace of kind ("net", "mnt"), to come back to."""
    return open_namespace(f"/proc/self/ns/{kind}")


@contextmanager
def joined(fd: int, kind: str) -> Iterator[None]:
    """Run the body with this process inside the namespace at fd, then come home. Joining
    a mount namespace moves the working directory to its root, so that is restored too."""
    nstype = CLONE_NEWNET if kind == "net" else CLONE_NEWNS
    home = home_namespace(kind)  # before setns: opened later, "home" would be fd's namespace
    cwd = os.getcwd()
    setns(fd, nstype)
    try:
        yield
    finally:
        setns(home, nstype)
        os.chdir(cwd)


class NetnsView:
    """What `ip netns exec NAME` gives a command: the network namespace, and a mount
    namespace whose /sys shows that network namespace's interfaces. This process steps
    into both around each spawn instead of a preexec_fn entering them in the child: a
    preexec_fn forces a full fork() of this Python process, which costs about 1.2 ms more
    than the vfork() that Popen uses otherwise, the same on every figure of both agents."""

    def __init__(self, name: str) -> None:
        self.net = open_namespace(f"/run/netns/{name}")
        self.mnt = self._mount_namespace(name)

    def _mount_namespace(self, name: str) -> int:
        with joined(self.net, "net"), joined(home_namespace("mnt"), "mnt"):
            _check_libc(_libc.unshare(CLONE_NEWNS), "unshare")
            # Slave propagation first: the /sys swap must never reach the host's mounts.
            _check_libc(_libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None),
                        "mount --make-rslave /")
            _check_libc(_libc.umount2(b"/sys", MNT_DETACH), "umount /sys")
            _check_libc(_libc.mount(name.encode(), b"/sys", b"sysfs", 0, None), "mount sysfs")
            return open_namespace("/proc/self/ns/mnt")

    @contextmanager
    def entered(self) -> Iterator[None]:
        with joined(self.net, "net"), joined(self.mnt, "mnt"):
            yield

    def close(self) -> None:
        os.close(self.net)
        os.close(self.mnt)


def packet_socket_in(ns: Netns, dev: str) -> socket.socket:
    """A non-blocking raw socket that sees every frame on dev inside ns; a socket keeps
    the namespace it was created in, so the process only visits ns for a moment."""
    target = open_namespace(f"/run/netns/{ns.name}")
    try:
        with joined(target, "net"):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((dev, ETH_P_ALL))
    finally:
        os.close(target)
    sock.setblocking(False)
    return sock


def is_announcement(frame: bytes, family: str, packed_ip: bytes) -> bool:
    """True for a gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6)
    that claims packed_ip."""
    ethertype = int.from_bytes(frame[12:14], "big")
    if family == "inet":
        return ethertype == ETH_P_ARP and frame[28:32] == packed_ip
    return (ethertype == ETH_P_IPV6 and frame[20] == ICMPV6
            and frame[54] == NEIGHBOR_ADVERTISEMENT and frame[62:78] == packed_ip)


def count_announcements(sock: socket.socket, case: Case) -> int:
    """Drain sock and count the announcements of case.ip in it."""
    packed = socket.inet_pton(socket.AF_INET if case.family == "inet" else socket.AF_INET6,
                              case.ip)
    count = 0
    while True:
        try:
            frame = sock.recv(65535)
        except BlockingIOError:
            return count
        count += is_announcement(frame, case.family, packed)


def wait_quiet(ns: Netns) -> None:
    """Wait until nothing runs in ns any more, so that background work an agent left
    behind (ARP senders) neither overlaps the next timed run nor goes uncounted."""
    deadline = time.monotonic() + QUIET_TIMEOUT
    while ns.pids():
        if time.monotonic() > deadline:
            raise BenchError(f"processes still running in {ns.name} after {QUIET_TIMEOUT:.0f} s:"
                             f" {ns.pids()}")
        time.sleep(0.02)


def make_lan(pool: NetnsPool) -> tuple[Netns, Netns]:
    """A node and a peer joined by lan0: node 198.18.0.1/24 + 2001:2::1/64, peer .2/::2."""
    node, peer = pool.new(), pool.new()
    pool.link(node, NIC, peer, NIC)
    for ns, host in ((node, 1), (peer, 2)):
        ns.ip("addr", "add", f"198.18.0.{host}/24", "dev", NIC)
        ns.ip("addr", "add", f"2001:2::{host}/64", "dev", NIC, "nodad")
    return node, peer


# --- agents ---------------------------------------------------------------------------

def agent_parameters(path: Path) -> set[str]:
    """The parameter names the agent's meta-data declares."""
    out = subprocess.run([str(path), "meta-data"], capture_output=True, text=True,
                         env={"OCF_ROOT": "/usr/lib/ocf", "PATH": os.environ["PATH"]})
    if out.returncode != 0:
        raise BenchError(f"{path} meta-data exited {out.returncode}: {out.stderr.strip()}")
    return {p.get("name", "") for p in ET.fromstring(out.stdout).iter("parameter")}


def agent_sources(path: Path) -> list[Path]:
    """The agent and what it runs from its checkout: the Python modules beside it (the
    executable may be a launcher) and the ocf_lib next to its directory, when there is one."""
    return [path, *sorted(path.parent.glob("*.py")),
            *sorted((path.parent.parent / "ocf_lib").glob("**/*.py"))]


def describe_version(path: Path) -> str:
    """Where the agent comes from: its Debian package, else the checkout's commit, marked
    when any of its sources there has uncommitted changes."""
    owner = subprocess.run(["dpkg-query", "-S", str(path)], capture_output=True, text=True)
    if owner.returncode == 0:
        package = owner.stdout.split(":")[0]
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                                 capture_output=True, text=True).stdout
        return f"{package} {version}"
    git = ["git", "-C", str(path.parent)]
    commit = subprocess.run([*git, "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    if not commit:
        return "not in a package or git"
    sources = [str(source) for source in agent_sources(path)]
    dirty = subprocess.run([*git, "status", "--porcelain", "--", *sources],
                           capture_output=True, text=True).stdout.strip()
    return f"git {commit}" + (" + uncommitted changes" if dirty else "")


def source_digest(path: Path) -> str:
    """A hash of the agent's sources: it may be edited in this checkout while it is being
    measured."""
    import hashlib
    digest = hashlib.sha256()
    for source in agent_sources(path):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def check_executable(path: Path) -> None:
    if not os.access(path, os.X_OK):
        raise BenchError(f"{path} is not an executable file; pass --agent/--reference")


STEPS = (("monitor (absent)", "monitor", 7), ("start", "start", 0),
         ("monitor (present)", "monitor", 0), ("stop", "stop", 0))
RSS_STEP = "monitor (present)"


def expect_address(node: Netns, case: Case, present: bool, after: str) -> None:
    """The exit code alone could lie: check the address really came or went."""
    if (case.cidr_address in node.addresses(NIC)) != present:
        state = "missing" if present else "still there"
        raise BenchError(f"{case.cidr_address} is {state} on {NIC} after {after}")


class Runner:
    """One agent run inside a namespace view, the way this benchmark times it: a spawn
    with this process in the namespace, a wait on the pid, the exit code checked. The
    agent's output goes to a log that is shown when an exit code is wrong."""

    def __init__(self, agent: Agent, view: NetnsView, statedir: str) -> None:
        self.agent = agent
        self.view = view
        self.statedir = statedir
        os.mkdir(statedir)
        self.log: IO[bytes] = open(os.path.join(statedir, "agent.log"), "w+b")

    def close(self) -> None:
        self.view.close()
        self.log.close()

    def spawn(self, argv: list[str], env: dict[str, str]) -> tuple[int, float]:
        """Run argv in the namespace; return its exit code and wall seconds. The wait is on
        the pid, not on output pipes, so a sender the agent leaves running in the background
        does not count as the agent's time."""
        self.log.seek(0)
        self.log.truncate()
        with self.view.entered():
            started = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                    stderr=self.log)
            _, status = os.waitpid(proc.pid, 0)
            elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, elapsed

    def peak_rss(self, argv: list[str], env: dict[str, str]) -> tuple[int, int]:
        """Run argv under /usr/bin/time; return its exit code and peak RSS in KiB. A child
        forked from this Python process would report at least this process's RSS (exec
        records the forked copy's high-water mark), so the small `time` forks it instead."""
        rss_file = os.path.join(self.statedir, "rss")
        code, _ = self.spawn(["/usr/bin/time", "-f", "%M", "-o", rss_file, *argv], env)
        with open(rss_file) as f:
            return code, int(f.read().split()[-1])

    def checked(self, action: str, env: dict[str, str], expect: int, what: str,
                rss: bool = False) -> float:
        """Run the agent's action once and return its wall seconds, or with rss its peak RSS
        in KiB; a wrong exit code stops the benchmark with the agent's output. what names
        the case in that message."""
        run = self.peak_rss if rss else self.spawn
        code, figure = run([str(self.agent.path), action], env)
        if code != expect:
            self.log.seek(0)
            output = self.log.read().decode(errors="replace").strip()
            raise BenchError(f"{self.agent.role} agent {self.agent.path}: {action} {what}"
                             f" exited {code}, expected {expect}\n{output}")
        return figure


class Lane(Runner):
    """One IPaddr2 agent on a link of its own: the node namespace it runs in, a peer that
    counts its announcements, a private HA_RSCTMP. Separate lanes let one agent's background
    ARP sender finish while the other agent is being measured."""

    def __init__(self, agent: Agent, pool: NetnsPool, statedir: str) -> None:
        self.node, peer = make_lan(pool)
        super().__init__(agent, NetnsView(self.node.name), statedir)
        self.sock = packet_socket_in(peer, NIC)
        self.start_frames: int | None = None
        self.last_announcements = (0, 0)

    def close(self) -> None:
        super().close()
        self.sock.close()

    def environment(self, case: Case, action: str) -> dict[str, str]:
        """Pacemaker's environment for the action; HA_RSCTMP points to a private directory
        so that the reference's send_arp pid files cannot meet those of a real cluster."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": "vip", "OCF_RESKEY_ip": case.ip, "OCF_RESKEY_nic": NIC,
               "OCF_RESKEY_cidr_netmask": case.cidr, "OCF_RESKEY_CRM_meta_timeout": "20000",
               "HA_RSCTMP": self.statedir}
        if action == "monitor":
            env["OCF_RESKEY_CRM_meta_interval"] = "10000"
        params = {**case.extra, **self.agent.params.get(case.family, {})}
        env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
        return env

    def action(self, case: Case, action: str, expect: int, rss: bool = False) -> float:
        """Run one action for case (see Runner.checked)."""
        return self.checked(action, self.environment(case, action), expect,
                            f"on {case.cidr_address}", rss)

    def step(self, case: Case, label: str, action: str, expect: int, record: bool) -> None:
        """Time one action once the lane is quiet. Announcements are counted in two parts:
        those that arrived by the time start returned, and the rest, which a background
        sender delivered before this lane's next step."""
        wait_quiet(self.node)
        late = count_announcements(self.sock, case)
        if self.start_frames is not None:
            self.last_announcements = (self.start_frames, late)
            if record:
                self.agent.frames.setdefault(case.family, []).append(self.last_announcements)
        self.start_frames = None
        seconds = self.action(case, action, expect)
        if action == "start":
            self.start_frames = count_announcements(self.sock, case)
        if action != "monitor":
            expect_address(self.node, case, action == "start", f"{self.agent.role} {action}")
        if record:
            self.agent.seconds.setdefault(f"{case.family} {label}", []).append(seconds)
        if record and label == RSS_STEP:
            self.agent.rss_kib.setdefault(case.family, []).append(
                int(self.action(case, action, expect, rss=True)))


def interpreter_argv(path: Path) -> list[str]:
    """The agent's #! line as argv (Linux passes all after the path as one argument)."""
    with open(path, "rb") as f:
        line = f.readline().decode(errors="replace")
    if not line.startswith("#!"):
        return []
    interpreter, _, arg = line[2:].strip().partition(" ")
    return [interpreter, arg.strip()] if arg.strip() else [interpreter]


def median_seconds(lane: Runner, argv: list[str], runs: int) -> float:
    return statistics.median(lane.spawn(argv, {})[1] for _ in range(runs))


def floor_lines(lanes: list[Runner], runs: int) -> list[str]:
    """What the figures hold that is not the agents' own work: spawning a program in the
    namespace, the RSS /usr/bin/time reports for the smallest program, and each agent's
    interpreter starting with nothing to do (the least its every action can cost)."""
    lane = lanes[0]
    rss = statistics.median(lane.peak_rss(["/bin/true"], {})[1] for _ in range(runs))
    lines = [f"- Floor: {ms(median_seconds(lane, ['/bin/true'], runs))} ms to spawn /bin/true"
             f" in the namespace; {rss:.0f} KiB peak RSS for it under /usr/bin/time"]
    for lane in lanes:
        argv = interpreter_argv(lane.agent.path)
        if argv:
            seconds = median_seconds(lane, [*argv, "-c", ""], runs)
            lines.append(f"- Interpreter start-up, {lane.agent.role}"
                         f" (`{' '.join(argv)} -c ''`): {ms(seconds)} ms")
    return lines


def run_round(lanes: list[Lane], case: Case, round_no: int) -> None:
    """One lifecycle per agent, alternating per action; the order flips every round so
    that neither agent always goes first (nor always runs while the other's background
    sender finishes). Round 0 is the warm-up (page cache, bytecode) and is not recorded."""
    order = lanes if round_no % 2 else lanes[::-1]
    for label, action, expect in STEPS:
        for lane in order:
            lane.step(case, label, action, expect, record=round_no > 0)


def match_announcements(lanes: list[Lane], case: Case) -> bool:
    """After a warm-up round: when only one agent's start waits for its announcements
    (heartbeat waits for IPv6 ones by default, 1 s), start times compare different work.
    Then the reference gets the arp_bg that does what ours does by default, unless
    --param set arp_bg. Returns whether it changed anything."""
    ours, ref = lanes
    ours_background, ref_background = (lane.last_announcements[1] > 0 for lane in lanes)
    if (ours_background == ref_background or "arp_bg" in case.extra
            or "arp_bg" not in ref.agent.declared or sum(ours.last_announcements) == 0):
        return False
    ref.agent.params[case.family] = {"arp_bg": "true" if ours_background else "false"}
    return True


def measure(lanes: list[Lane], cases: list[Case], runs: int) -> None:
    for case in cases:
        print(f"{case.family}: {runs} rounds per agent", file=sys.stderr)
        run_round(lanes, case, 0)
        if match_announcements(lanes, case):
            run_round(lanes, case, 0)
        for round_no in range(1, runs + 1):
            run_round(lanes, case, round_no)


def build_cases(families: str, params: dict[str, str], lanes: list[Lane]
                ) -> tuple[list[Case], str]:
    """The cases to run and a note on how IPv6 duplicate address detection was avoided
    (it would add a second of waiting that says nothing about the agents)."""
    cases = []
    if "4" in families:
        cases.append(Case("inet", "198.18.0.10", "24", params))
    if "6" not in families:
        return cases, ""
    if all("nodad" in lane.agent.declared for lane in lanes):
        cases.append(Case("inet6", "2001:2::10", "64", {"nodad": "true", **params}))
        return cases, "IPv6: both agents given nodad=true."
    for lane in lanes:
        lane.node.run("sysctl", "-q", "-w", f"net.ipv6.conf.{NIC}.accept_dad=0")
    cases.append(Case("inet6", "2001:2::10", "64", params))
    return cases, (f"IPv6: not every agent declares nodad, so DAD is off on {NIC} instead"
                   " (accept_dad=0).")


# --- the report -----------------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def ratio_spread(ours: list[float], ref: list[float]) -> str:
    """The middle half of the per-round ratios (each round times both agents back to back),
    which shows whether a ratio near its target is on the right side by chance."""
    if len(ours) < 2:
        return "-"
    q1, _, q3 = statistics.quantiles([o / r for o, r in zip(ours, ref)], n=4)
    return f"{q1:.2f}-{q3:.2f}"


def timing_rows(ours: Agent, ref: Agent) -> Iterator[str]:
    for key, ref_samples in ref.seconds.items():
        ours_median = statistics.median(ours.seconds[key])
        ref_median = statistics.median(ref_samples)
        ratio = ours_median / ref_median
        target = TARGETS[key.split()[1]]
        verdict = "yes" if ratio <= target else "**no**"
        yield (f"| {key} | {ms(ours_median)} | {ms(ref_median)} | {ratio:.2f} |"
               f" {ratio_spread(ours.seconds[key], ref_samples)} | <= {target} | {verdict} |")


def rss_row(ours: Agent, ref: Agent, family: str) -> str:
    ours_kib = statistics.median(ours.rss_kib[family])
    ref_kib = statistics.median(ref.rss_kib[family])
    return (f"| {family} peak RSS of {RSS_STEP} (KiB) | {ours_kib:.0f} | {ref_kib:.0f} |"
            f" {ours_kib / ref_kib:.2f} | | - | - |")


def announcement_rows(agents: list[Agent], cases: list[Case]) -> Iterator[str]:
    for case in cases:
        for agent in agents:
            params = {**case.extra, **agent.params.get(case.family, {})}
            given = "".join(f", {k}={v}" for k, v in params.items())
            during, after = (statistics.median(c) for c in zip(*agent.frames[case.family]))
            waits = "none sent" if during + after == 0 else "no (background)" if after else "yes"
            yield (f"| {case.family} | {agent.role} | defaults{given} |"
                   f" {during + after:.0f} | {after:.0f} | {waits} |")


def matched_notes(agents: list[Agent]) -> list[str]:
    """Say where the reference ran with other than its defaults, and why."""
    ref = agents[1]
    return [f"{family}: the reference ran with {k}={v} so that its start, like ours by"
            " default, " + ("does not wait" if v == "true" else "waits") + " for its"
            " announcements: otherwise start would compare different work."
            for family, params in ref.params.items() for k, v in params.items()]


def announcement_mismatch(agents: list[Agent], cases: list[Case]) -> list[str]:
    """A warning for each family where one agent's start waits for its announcements and
    the other's does not: its start ratio then compares different work."""
    notes = []
    for case in cases:
        waits = {agent.role: statistics.median(a for _, a in agent.frames[case.family]) == 0
                 for agent in agents}
        if len(set(waits.values())) > 1:
            notes.append(f"Warning: for {case.family} only {[r for r, w in waits.items() if w][0]}"
                         " waits for its announcements in start; its start ratio is not like"
                         " for like (compare with --param arp_bg=true or false).")
    return notes


def machine_lines(load_before: float) -> list[str]:
    """Where and when the figures were taken; the load average shows whether other work
    competed for the CPUs (the spread of the ratios shows how much it mattered)."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.machine())
    return [f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- Machine: {len(os.sched_getaffinity(0))} CPUs ({cpu}),"
            f" kernel {platform.release()}, Python {platform.python_version()}",
            f"- Load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"]


def report(agents: list[Agent], cases: list[Case], notes: list[str], floors: list[str],
           runs: int, load_before: float) -> str:
    ours, ref = agents
    lines = ["# IPaddr2: ours against ocf:heartbeat:IPaddr2", "",
             *machine_lines(load_before),
             f"- Runs: {runs} per action and agent, alternating ours/reference, medians shown",
             *floors,
             f"- Ours: `{ours.path}` ({ours.version})",
             f"- Reference: `{ref.path}` ({ref.version})", "",
             "| action | ours (ms) | reference (ms) | ours/ref | per-round ratio, middle half |"
             " target | met |",
             "|---|---:|---:|---:|---:|---:|---|",
             *timing_rows(ours, ref)]
    lines += [rss_row(ours, ref, case.family) for case in cases]
    lines += ["", "Announcements per start, counted by the peer on the link:", "",
              "| family | agent | parameters | frames | sent after start returned |"
              " start waits for them |",
              "|---|---|---|---:|---:|---|",
              *announcement_rows(agents, cases)]
    for note in (*matched_notes(agents), *announcement_mismatch(agents, cases), *notes):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --- main -----------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", type=Path, default=DEFAULT_AGENT,
                        help="our agent (default: %(default)s)")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="the agent to compare with (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=30,
                        help="timed runs per action and agent (default: %(default)s)")
    parser.add_argument("--family", choices=("4", "6", "46"), default="46",
                        help="address families to measure (default: both)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra OCF_RESKEY_NAME for both agents, e.g. arp_bg=true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if any("=" not in p for p in args.param):
        parser.error("--param takes NAME=VALUE")
    return args


def run(args: argparse.Namespace) -> str:
    agents = [Agent("ours", args.agent.resolve()), Agent("reference", args.reference.resolve())]
    for agent in agents:
        check_executable(agent.path)
        agent.version = describe_version(agent.path)
        agent.declared = agent_parameters(agent.path)
    load_before = os.getloadavg()[0]
    digests = [source_digest(agent.path) for agent in agents]
    pool = NetnsPool()
    lanes: list[Lane] = []
    try:
        with tempfile.TemporaryDirectory(prefix="agent-speed-") as tmp:
            for agent in agents:
                lanes.append(Lane(agent, pool, os.path.join(tmp, agent.role)))
            params = dict(p.split("=", 1) for p in args.param)
            cases, note = build_cases(args.family, params, lanes)
            floors = floor_lines(lanes, args.runs)
            measure(lanes, cases, args.runs)
    finally:
        for lane in lanes:
            lane.close()
        pool.cleanup()
    notes = [note] if note else []
    if digests != [source_digest(agent.path) for agent in agents]:
        notes.append("Warning: an agent or its ocf_lib changed during the run; the figures"
                     " mix versions. Run again.")
    return report(agents, cases, notes, floors, args.runs, load_before)


def exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit so the finally blocks delete the namespaces."""
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    return run_main("agent_speed", parse_args(argv), run, "namespaces removed")


def run_main(name: str, args: argparse.Namespace, bench: Callable[[argparse.Namespace], str],
             removed: str) -> int:
    """The frame every benchmark here shares: it needs root, ends cleanly on SIGTERM and
    Ctrl-C (saying what was removed), prints its report and writes it to args.output."""
    if os.geteuid() != 0:
        print(f"{name}: network namespaces need root; run as root (make bench)",
              file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    started = time.monotonic()
    try:
        text = bench(args)
    except BenchError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted; {removed}", file=sys.stderr)
        return 130
    print(text, end="")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
