"""How fast ocf:kuth:haproxy is, with ocf:heartbeat:IPaddr2's monitor as the yardstick.

resource-agents has no haproxy agent, so the reference is the monitor a cluster of the guide
runs beside ours: heartbeat IPaddr2's, on an address that is present. Our haproxy runs the
guide's haproxy.cfg with test addresses (lab/haproxy.py) in a node with a private /run,
where the guide's stats socket /run/haproxy/admin.sock lives, with two of the three
kube-apiserver servers UP and one DOWN. Each round: start, our depth-0 monitor and the
reference's back to back (the order flips every round), our depth-10 monitor, a reload with
the same configuration, stop. The agents run the way bench/agent_speed.py runs them (its
Runner: this process steps into the namespaces around each spawn and waits on the pid).

Run as root: `make bench` or `python3 -m bench.haproxy_speed --runs 30`.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.agent_speed import (DEFAULT_REFERENCE, REPO, Agent, BenchError, Case, Lane,
                               NetnsView, Runner, check_executable, describe_version,
                               floor_lines, machine_lines, median_seconds, ms, open_namespace,
                               ratio_spread, run_main, source_digest, wait_quiet)
from lab.haproxy import FRONT, HAPROXY, SERVERS, SOCKET, HaNode, wait_for
from lab.netns import Host, NetnsPool
from ocf_lib.adapters import haproxy_api, process

DEFAULT_AGENT = REPO / "agents" / "haproxy"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "haproxy_speed.md"
RESOURCE = "haproxy-resource"  # the guide's primitive
BACKEND = "kube-apiserver"
SERVERS_UP = 2  # of SERVERS; the others have nothing listening and are DOWN
PORTS = {6443, 32700}  # the guide's frontends: kube-apiserver and the stats page
TARGET = 0.5  # our depth-0 monitor against the reference's monitor
# What the agent would tell the cluster (attributes, a crash report) goes to /bin/true.
CLUSTER_COMMANDS = ("attrd_updater", "crm_resource", "crm_mon", "crm_node")
VIP = Case("inet", "198.18.0.10", "24")
SETTLE_TIMEOUT = 10.0
MONITOR = "monitor, depth 0"
DEEP_MONITOR = "monitor, depth 10"
OURS_ALONE = (("start", "start (to listeners bound)"), ("reload", "reload (same configuration)"),
              ("stop", "stop (no open connection)"))


class NodeView(NetnsView):
    """The namespaces of a lab.netns Host: its network namespace and its holder's mount
    namespace, which has the node's private /run and, being made under `ip netns exec`,
    the /sys of the node's network namespace."""

    def __init__(self, node: Host) -> None:
        self.holder = node.holder.pid
        super().__init__(node.name)

    def _mount_namespace(self, name: str) -> int:
        return open_namespace(f"/proc/{self.holder}/ns/mnt")


class HaproxyRunner(Runner):
    """Our agent on the lab's node, in the environment pacemaker-execd gives it on a
    cluster node: with OCF_RESKEY_CRM_meta_on_node set, start leaves a crash watcher behind
    and monitor checks it and publishes backend attributes only when they change, the
    steady state a cluster pays for. The cluster's commands are stand-ins (/bin/true)."""

    def __init__(self, agent: Agent, ha: HaNode, statedir: str) -> None:
        super().__init__(agent, NodeView(ha.node), statedir)
        self.ha = ha
        self.bin = os.path.join(statedir, "cluster-bin")
        os.mkdir(self.bin)
        for name in CLUSTER_COMMANDS:
            os.symlink("/bin/true", os.path.join(self.bin, name))

    def environment(self, action: str, depth: int) -> dict[str, str]:
        env = {"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": RESOURCE, "OCF_RESKEY_conffile": self.ha.config,
               "OCF_RESKEY_CRM_meta_timeout": "20000",
               "OCF_RESKEY_CRM_meta_on_node": "bench-node", "HA_RSCTMP": self.statedir}
        if action == "monitor":
            env["OCF_RESKEY_CRM_meta_interval"] = "20000"  # the guide's: not a probe
        if depth:
            env["OCF_CHECK_LEVEL"] = str(depth)
        return env

    def action(self, action: str, depth: int = 0, rss: bool = False) -> float:
        """Run one action, which must succeed (see Runner.checked)."""
        return self.checked(action, self.environment(action, depth), 0,
                            f"with {self.ha.config}", rss)

    def backend_counts(self) -> tuple[int, int] | None:
        """(UP, total) servers of the backend, asked on the node's stats socket; None while
        haproxy does not answer."""
        try:
            with self.view.entered():
                rows = haproxy_api.show_stat(SOCKET, timeout=1.0)
        except haproxy_api.RuntimeApiError:
            return None
        return haproxy_api.backend_servers_up(rows).get(BACKEND)


# --- the lab and what each action must leave behind --------------------------------------

def make_lab(pool: NetnsPool, workdir: str) -> HaNode:
    """A node with a private /run, the guide's config and its servers, SERVERS_UP of them
    with an HTTP server behind (UP), the rest with nothing (DOWN)."""
    os.mkdir(workdir)
    ha = HaNode(pool.host(), Path(workdir))
    for address in SERVERS[:SERVERS_UP]:
        ha.lab.start_server(address)
    return ha


def haproxy_processes(ha: HaNode) -> tuple[list[int], list[int]]:
    """The live haproxy processes running the lab's config: (masters, workers)."""
    parents = {info.pid: info.ppid for info in process.find_haproxy(HAPROXY, ha.config)}
    masters = [pid for pid, ppid in parents.items() if ppid not in parents]
    return masters, [pid for pid in parents if pid not in masters]


def listening_ports(ha: HaNode) -> set[int]:
    """The frontend address's listening TCP ports, seen by `ss` in the node: not by the
    runtime API, which is what the agent itself asks."""
    out = ha.node.run("ss", "-Htln", "src", FRONT).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()}


def settle(ours: HaproxyRunner, after: str) -> tuple[int, int]:
    """Wait after start or reload until one master has one worker (an old worker left, with
    no connection to finish), every frontend listens and the health checks have marked the
    servers; so each timed run starts from the steady state. Returns the backend's
    (UP, total)."""
    def steady() -> tuple[int, int] | None:
        masters, workers = haproxy_processes(ours.ha)
        counts = ours.backend_counts()
        if (len(masters), len(workers)) == (1, 1) and counts and counts[0] == SERVERS_UP:
            return counts
        return None
    try:
        counts = wait_for(steady, timeout=SETTLE_TIMEOUT, what=f"haproxy steady after {after}")
    except AssertionError as err:
        raise BenchError(f"{err}: processes {haproxy_processes(ours.ha)}, backend"
                         f" {ours.backend_counts()}") from None
    if listening_ports(ours.ha) != PORTS:
        raise BenchError(f"after {after} {FRONT} listens on {sorted(listening_ports(ours.ha))},"
                         f" not {sorted(PORTS)}")
    return counts  # type: ignore[return-value]


def expect_stopped(ours: HaproxyRunner) -> None:
    left, ports = sum(haproxy_processes(ours.ha), []), listening_ports(ours.ha)
    if left or ports:
        raise BenchError(f"after stop haproxy {left} still runs, ports {sorted(ports)} listen")


def config_check_line(ours: HaproxyRunner, runs: int) -> str:
    """What start and reload spend before they touch haproxy: `haproxy -c` of the
    configuration, as the agent runs it."""
    argv = [HAPROXY, "-c", "-f", ours.ha.config]
    code, _ = ours.spawn(argv, {})
    if code != 0:
        raise BenchError(f"{' '.join(argv)} exited {code}")
    return (f"- Configuration check (`haproxy -c -f`), which reload runs first (start only when its launch fails):"
            f" {ms(median_seconds(ours, argv, runs))} ms")


# --- the rounds ---------------------------------------------------------------------------

def run_round(ours: HaproxyRunner, ref: Lane, round_no: int) -> tuple[int, int]:
    """One lifecycle of our haproxy, with both depth-0 monitors back to back in an order
    that flips every round. Round 0 is the warm-up (page cache, bytecode) and is not
    recorded. Returns the backend's (UP, total) servers the monitors saw."""
    def record(agent: Agent, label: str, seconds: float) -> None:
        if round_no:
            agent.seconds.setdefault(label, []).append(seconds)

    record(ours.agent, "start", ours.action("start"))
    counts = settle(ours, "start")
    ours.action("monitor")  # untimed: the first monitor after start publishes the attributes
    monitors = [(ours.agent, functools.partial(ours.action, "monitor")),
                (ref.agent, functools.partial(ref.action, VIP, "monitor", 0))]
    for agent, monitor in monitors if round_no % 2 else monitors[::-1]:
        record(agent, MONITOR, monitor())
    for agent, monitor in monitors:
        kib = int(monitor(rss=True))
        if round_no:
            agent.rss_kib.setdefault(MONITOR, []).append(kib)
    record(ours.agent, DEEP_MONITOR, ours.action("monitor", depth=10))
    master = haproxy_processes(ours.ha)[0]
    record(ours.agent, "reload", ours.action("reload"))
    if haproxy_processes(ours.ha)[0] != master:
        raise BenchError(f"reload replaced the master {master}: a restart, not a reload")
    settle(ours, "reload")
    record(ours.agent, "stop", ours.action("stop"))
    expect_stopped(ours)
    return counts


def measure(ours: HaproxyRunner, ref: Lane, runs: int) -> tuple[int, int]:
    """The reference's address stays up throughout; our haproxy goes round `runs` times
    after a warm-up round."""
    print(f"haproxy: {runs} rounds", file=sys.stderr)
    ref.action(VIP, "start", 0)
    wait_quiet(ref.node)  # its background gratuitous ARPs
    counts = (0, 0)
    for round_no in range(runs + 1):
        counts = run_round(ours, ref, round_no)
    ref.action(VIP, "stop", 0)
    return counts


# --- the report ---------------------------------------------------------------------------

def compared_rows(ours: Agent, ref: Agent) -> list[str]:
    """Our monitors and their peak RSS against the reference's monitor of the same rounds."""
    ref_seconds = ref.seconds[MONITOR]
    rows = []
    for label in (MONITOR, DEEP_MONITOR):
        ratio = statistics.median(ours.seconds[label]) / statistics.median(ref_seconds)
        target, met = ((f"<= {TARGET}", "yes" if ratio <= TARGET else "**no**")
                       if label == MONITOR else ("-", "-"))
        rows.append(f"| {label} | {ms(statistics.median(ours.seconds[label]))} |"
                    f" {ms(statistics.median(ref_seconds))} | {ratio:.2f} |"
                    f" {ratio_spread(ours.seconds[label], ref_seconds)} | {target} | {met} |")
    ours_kib, ref_kib = (statistics.median(a.rss_kib[MONITOR]) for a in (ours, ref))
    rows.append(f"| peak RSS of a monitor (KiB) | {ours_kib:.0f} | {ref_kib:.0f} |"
                f" {ours_kib / ref_kib:.2f} | | - | - |")
    return rows


def alone_rows(ours: Agent) -> list[str]:
    rows = []
    for key, label in OURS_ALONE:
        samples = ours.seconds[key]
        spread = ("-" if len(samples) < 2 else
                  "-".join(ms(q) for q in statistics.quantiles(samples, n=4)[::2]))
        rows.append(f"| {label} | {ms(statistics.median(samples))} | {spread} |")
    return rows


def report(ours: Agent, ref: Agent, counts: tuple[int, int], floors: list[str],
           notes: list[str], runs: int, load_before: float) -> str:
    lines = ["# haproxy: ocf:kuth:haproxy, with ocf:heartbeat:IPaddr2's monitor as reference",
             "", *machine_lines(load_before),
             f"- Runs: {runs} rounds of our haproxy's lifecycle after a warm-up; in each, both"
             f" depth-0 monitors back to back, the order flipping; medians shown",
             *floors,
             f"- Ours: `{ours.path}` ({ours.version})",
             f"- Reference: `{ref.path}` ({ref.version}), monitor of {VIP.cidr_address}"
             f" (present)",
             f"- HAProxy: `{HAPROXY}` ({describe_version(Path(HAPROXY))}), the guide's"
             f" haproxy.cfg with test addresses (lab/haproxy.py): frontends {FRONT}:"
             f"{' and :'.join(str(p) for p in sorted(PORTS))}, backend {BACKEND} with"
             f" {counts[0]} of {counts[1]} servers UP (checks every 200 ms), stats socket"
             f" {SOCKET} in the node's private /run",
             "", "Monitor against the reference's monitor, run back to back in each round:", "",
             "| action | ours (ms) | reference monitor (ms) | ours/ref |"
             " per-round ratio, middle half | target | met |",
             "|---|---:|---:|---:|---:|---:|---|",
             *compared_rows(ours, ref),
             "", "Ours alone (no target):", "",
             "| action | median (ms) | middle half (ms) |",
             "|---|---:|---:|",
             *alone_rows(ours)]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", type=Path, default=DEFAULT_AGENT,
                        help="our haproxy agent (default: %(default)s)")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="the IPaddr2 agent whose monitor is the reference"
                             " (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=30,
                        help="timed rounds (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def run(args: argparse.Namespace) -> str:
    ours, ref = Agent("ours", args.agent.resolve()), Agent("reference", args.reference.resolve())
    for agent in (ours, ref):
        check_executable(agent.path)
        agent.version = describe_version(agent.path)
    load_before = os.getloadavg()[0]
    digests = [source_digest(agent.path) for agent in (ours, ref)]
    with tempfile.TemporaryDirectory(prefix="haproxy-speed-") as tmp:
        pool = NetnsPool()
        runners: list[Runner] = []
        ha: HaNode | None = None
        try:
            ha = make_lab(pool, os.path.join(tmp, "lab"))
            ours_runner = HaproxyRunner(ours, ha, os.path.join(tmp, "ours"))
            runners.append(ours_runner)
            ref_lane = Lane(ref, pool, os.path.join(tmp, "reference"))
            runners.append(ref_lane)
            floors = [*floor_lines(runners, args.runs), config_check_line(ours_runner, args.runs)]
            counts = measure(ours_runner, ref_lane, args.runs)
        finally:
            for runner in runners:
                runner.close()
            if ha is not None:
                ha.lab.close()
            pool.cleanup()
    notes = []
    if digests != [source_digest(agent.path) for agent in (ours, ref)]:
        notes.append("Warning: an agent or its ocf_lib changed during the run; the figures"
                     " mix versions. Run again.")
    return report(ours, ref, counts, floors, notes, args.runs, load_before)


def main(argv: list[str]) -> int:
    return run_main("haproxy_speed", parse_args(argv), run,
                    "haproxy, servers and namespaces removed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
