"""The endpoint at scale: N idle long-lived connections through the VIP at a planned move
and a node loss, K VIPs on one node at rest, and what the connection hand-over costs attrd
and the Corosync ring, for ocf:kuth:IPaddr2 and ocf:heartbeat:IPaddr2 in one run.

Connections: N (100 to 50,000) idle connections through the VIP to port 6443, from several
client addresses (lab.holders: one address and at most 8,000 connections a process), while
lab.traffic's client sends a short request every 10 ms. Up to HAPROXY_MAX connections
ocf:kuth:haproxy carries them (maxconn 9,900 fits the 20,000 open files a process may have
here) to servers that hold them in the kube-apiserver stand-ins' namespaces; past that the
nodes themselves serve the port (lab.holders, several processes, run by ocf:heartbeat:anything
under haproxy's resource id, so the same constraints place it as they place haproxy). Per
stack and N: the connections that ended within 1 s of a planned move (`crm resource move`),
and after a node loss (crash, fenced) those reset within the short requests' outage + 0.5 s
and those still silently open 30 s after it.

VIPs: K addresses (1 to 50) and ocf:kuth:haproxy on one node; over a minute at rest, the
RSS, PSS (smaps_rollup) and CPU time (utime + stime) of every process of that node whose
command line contains "kuth-", and the VIPs' monitor exec-time as crm_mon reports it.

Ring: 50,000 connections on the VIP (nodes serving), 1% of them replaced every second; over
a minute, the CPU time of every node's pacemaker-attrd and the bytes the nodes sent on the
ring (the ring switch's ports), with each VIP agent: ocf:heartbeat:IPaddr2 hands nothing
over, so the difference is the hand-over's.

Run as root: `make bench-scale` (ARGS="--connections 100,2000 --vips 1,10" for a short run)
or `python3 -m bench.scale --help`. Output: bench/results/scale.md and scale.png.
"""
from __future__ import annotations

import argparse
import datetime
import os
import json
import platform
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench import failover
from bench.failover import HAPROXY_RSC, VIP, VIP_RSC
from lab import constraints, holders, processes
from lab.cluster import Cluster
from lab.command import ClusterError
from lab.guide import haproxy_config
from lab.nodes import Node
from lab.topology import KUBE_MASTERS, KUBE_PORT, VIP_NETWORK
from lab.traffic import Traffic
from ocf_lib.logic.handover import HANDOVER_MAX

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "results" / "scale.md"
AGENTS = {"kuth": "ocf:kuth:IPaddr2", "heartbeat": "ocf:heartbeat:IPaddr2"}
TOPOLOGIES = ("guide", "clone")
CONNECTIONS = (100, 2_000, 9_000, 20_000, 50_000)
VIP_COUNTS = (1, 10, 50)
HAPROXY_MAX = 9_000  # connections through haproxy; past that the nodes serve the port
HAPROXY_MAXCONN = 9_900  # 2 files a connection: 19,800 of the 20,000 a process may open
BACKEND_PORT = 6444  # the servers behind haproxy, beside the stand-ins' 6443
SOURCES = [f"{VIP_NETWORK}.{101 + n}" for n in range(8)]  # client addresses, one a process
MOVE_S = 1.0  # a planned move's connections must end within this
MOVE_WAIT_S = 10.0  # how long a planned move's later ends are waited for
OVER_OUTAGE_S = 0.5  # a node loss's: within the short requests' outage + this
SILENT_S = 30.0  # still open this long after a node loss: waits for its client's timeout
READY_S = 180.0
SETTLE_S = 15.0  # after K VIPs started, before their cost is measured
RING_CONNECTIONS = 50_000
RING_CHURN = 0.01
EXTRA_VIP = f"{VIP_NETWORK}.{{}}"  # the K VIPs: .30 to .79
URL = f"http://{VIP}:{KUBE_PORT}/"


@dataclass
class ConnectionRow:
    """One stack's figures at N connections."""
    agent: str
    topology: str
    count: int
    server: str  # "haproxy" or "nodes"
    handed_over: int | None = None  # what the survivor had been handed before the loss
    move_ended: int = 0
    move_last_end: float | None = None  # the last connection's end (within MOVE_WAIT_S)
    loss_outage: float = 0.0
    loss_reset: int = 0
    loss_silent: int = 0
    loss_last_end: float | None = None  # the last connection's end, s after the loss
    error: str = ""


@dataclass
class VipRow:
    agent: str
    count: int
    processes: int
    kinds: str  # which, as "kuth-watcher x10, kuth-refuser"
    rss_mb: float
    pss_mb: float
    cpu_s_per_min: float
    monitor_ms: list[float]


@dataclass
class RingRow:
    agent: str
    count: int
    handed_over: int | None
    attrd_cpu_s_per_min: float
    ring_bytes_per_s: float


# -- what the nodes serve -------------------------------------------------------------------

def scale_haproxy_config() -> str:
    """The lab's haproxy.cfg made to hold HAPROXY_MAXCONN idle connections: a global
    maxconn, idle timeouts of an hour (a watch outlives the guide's 50 s), no per-server
    limit, and the servers that hold connections (BACKEND_PORT) as backends."""
    text = haproxy_config().replace("global\n", f"global\n    maxconn {HAPROXY_MAXCONN}\n", 1)
    replaced = {"timeout client 50000": "timeout client 1h",
                "timeout server 50000": "timeout server 1h",
                "maxconn 250 maxqueue 256": f"maxconn {HAPROXY_MAXCONN}"}
    replaced.update({f"{address}:{KUBE_PORT}": f"{address}:{BACKEND_PORT}"
                     for address in KUBE_MASTERS.values()})
    for old, new in replaced.items():
        if old not in text:
            raise ValueError(f"the lab's haproxy.cfg has no {old!r}: adapt scale_haproxy_config")
        text = text.replace(old, new)
    return text


def pacemaker_config(agent: str, topology: str, count: int) -> str:
    """The VIP and what serves it: ocf:kuth:haproxy up to HAPROXY_MAX connections, the
    nodes' own servers (ocf:heartbeat:anything, under haproxy's id) past it."""
    if count <= HAPROXY_MAX:
        return failover.pacemaker_config(failover.Stack(agent, agent, topology))
    options = " ".join(holders.serve_command(KUBE_PORT, holders.processes_for(count) + 1)[1:])
    text = (f"primitive {VIP_RSC} {agent} \\\n"
            f"    params ip={VIP} nic=lan0 cidr_netmask=24 \\\n"
            f"    op monitor interval=20 timeout=60\n"
            f"primitive {HAPROXY_RSC} ocf:heartbeat:anything \\\n"
            f'    params binfile={sys.executable} cmdline_options="{options}" \\\n'
            f"    op monitor interval=20 timeout=60\n"
            "rsc_defaults resource-stickiness=100\n")
    topology_of = constraints.guide if topology == "guide" else constraints.clone
    return text + topology_of(VIP_RSC, HAPROXY_RSC)


class ScaleStack(failover.PacemakerStack):
    """bench.failover's planned move and node loss, with this benchmark's configuration, and
    before a node loss a wait for the hand-over of every connection it can hand over."""

    def __init__(self, cluster: Cluster, agent: str, topology: str, count: int) -> None:
        super().__init__(cluster, failover.Stack(agent, agent, topology))
        self.count = count
        self.handed: int | None = None
        self.lost_at = 0.0

    def setup(self) -> None:
        self.cluster.reset()
        self.cluster.write_haproxy_config(scale_haproxy_config())
        self.cluster.configure(pacemaker_config(self.stack.vip_agent, self.stack.topology,
                                                self.count))
        self.settle()

    def lose_active(self) -> None:
        """Pick the node to lose; with ocf:kuth:IPaddr2, wait (up to 60 s) until the
        survivor holds every connection the owner hands over (at most HANDOVER_MAX), and
        note how many it holds."""
        c = self.cluster
        self.lost = self.active()
        self.survivor = next(n for n in c.names if n != self.lost)
        if self.stack.vip_agent != AGENTS["kuth"]:
            return
        want = min(self.count, HANDOVER_MAX)
        deadline = time.monotonic() + 60
        while True:
            self.handed = len(c.handed_over(VIP_RSC, self.survivor))
            if self.handed >= want or time.monotonic() > deadline:
                return
            time.sleep(1)

    def crash(self) -> Callable[[], bool]:
        """As bench.failover's, noting when the node died (after the hand-over's wait)."""
        self.lose_active()
        self.lost_at = time.monotonic()
        self.cluster.crash(self.lost)
        return self.taken_over


# -- measuring ------------------------------------------------------------------------------

class Bench:
    """One cluster, one client sending short requests, and the rows measured so far."""

    def __init__(self, cluster: Cluster, traffic: Traffic, began: float) -> None:
        self.cluster = cluster
        self.traffic = traffic
        self.began = began
        self.connections: list[ConnectionRow] = []
        self.vips: list[VipRow] = []
        self.ring: list[RingRow] = []
        for source in SOURCES:
            cluster.client.netns.ip("addr", "add", f"{source}/24", "dev", "lan0")
        self.backends = [ns.popen(*holders.serve_command(BACKEND_PORT),
                                  stdin=subprocess.DEVNULL)
                         for ns in cluster.kube_masters.values() for _ in range(2)]

    def close(self) -> None:
        for proc in self.backends:
            proc.kill()
            proc.wait()

    def say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.began)
        print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {text}", flush=True)

    def hold(self, count: int, churn: float = 0.0) -> holders.Held:
        """count connections through the VIP, open."""
        held = holders.Held(self.cluster.client.netns.exec_argv, VIP, KUBE_PORT, count,
                            SOURCES, churn)
        try:
            held.wait_ready(READY_S)
        except OSError:
            held.close()
            raise
        return held

    def served(self, since: float, timeout: float = 60) -> float:
        """Wait until a short request sent after since was served; when that was."""
        self.cluster.wait_for(lambda: self.traffic.served_since(since), timeout, interval=0.05,
                              what="a request served through the VIP")
        return min(sent for sent, ok in list(self.traffic.results) if ok and sent >= since)

    def first_stop(self, node: Node, since: float) -> float:
        """When node's pacemaker-execd began the first stop of the VIP or what serves it
        after since (on time.monotonic()); since when its log does not say."""
        offset = time.time() - time.monotonic()
        stops = [failover.execd_started(node, rsc, since + offset, action="stop")
                 for rsc in (VIP_RSC, HAPROXY_RSC)]
        return min((wall - offset for wall in stops if wall is not None), default=since)

    def connections_row(self, agent: str, topology: str, count: int) -> ConnectionRow:
        """A planned move, then a node loss, each with count fresh connections."""
        row = ConnectionRow(agent, topology, count,
                            "haproxy" if count <= HAPROXY_MAX else "nodes")
        self.connections.append(row)
        driver = ScaleStack(self.cluster, AGENTS[agent], topology, count)
        driver.setup()
        self.served(time.monotonic())
        with self.hold(count) as held:
            old = self.cluster.node(driver.active())
            asked = time.monotonic()
            done = driver.move()
            self.cluster.wait_for(done, 60, interval=0.5, what="move done")
            while held.still_open() and time.monotonic() < asked + MOVE_WAIT_S:
                time.sleep(0.1)
            time.sleep(0.2)  # the last reports on their way
            event = self.first_stop(old, asked)
            row.move_ended = held.ends(event, event + MOVE_S)
            row.move_last_end = last_end(held, event)
        driver.after_move()
        self.served(time.monotonic())
        with self.hold(count) as held:
            time.sleep(3)  # the connections are a few seconds old at least (the hand-over)
            done = driver.crash()
            event = driver.lost_at
            row.handed_over = driver.handed
            self.cluster.wait_for(done, 90, interval=1.0, what="the survivor took over")
            self.served(time.monotonic())
            time.sleep(1 + failover.REQUEST_TIMEOUT)  # the requests until now have answers
            row.loss_outage = self.traffic.outage(event, time.monotonic() - 1).longest_gap
            time.sleep(max(0.0, event + SILENT_S - time.monotonic()))
            row.loss_reset = held.ends(event, event + row.loss_outage + OVER_OUTAGE_S)
            row.loss_silent = held.still_open()
            row.loss_last_end = last_end(held, event)
            spread = spread_of_ends(held, event)
        driver.after_crash()
        self.say(f"{agent} {topology}, {count:,} connections ({row.server}): planned move "
                 f"{row.move_ended:,} ended within {MOVE_S:.0f} s (last end after "
                 f"{seconds(row.move_last_end)}); node loss: outage "
                 f"{row.loss_outage:.2f} s, {row.loss_reset:,} reset within outage + "
                 f"{OVER_OUTAGE_S} s (last end after {seconds(row.loss_last_end)}), "
                 f"{row.loss_silent:,} silent after {SILENT_S:.0f} s"
                 + (f"; {row.handed_over:,} handed over" if row.handed_over is not None
                    else "") + spread)
        return row


def spread_of_ends(held: holders.Held, since: float) -> str:
    """When the connections ended after since, by tenths of them (the first, every tenth,
    the last), for the log: where a node loss's resets come late, and in which round."""
    ends = sorted(at - since for _, at in list(held.ended.values()))
    if not ends:
        return ""
    marks = [ends[min(len(ends) - 1, len(ends) * tenth // 10)] for tenth in range(11)]
    return "; ends by tenths: " + " ".join(f"{at:.2f}" for at in marks)


def last_end(held: holders.Held, since: float) -> float | None:
    """Seconds from since to the last connection's end reported; None when none ended."""
    return max((at - since for _, at in list(held.ended.values())), default=None)


def run_connections(bench: Bench, agents: list[str], topologies: list[str],
                    counts: list[int]) -> None:
    for count in counts:
        for agent in agents:
            for topology in topologies:
                try:
                    bench.connections_row(agent, topology, count)
                except (ClusterError, OSError) as err:
                    bench.say(f"{agent} {topology} {count}: stopped: {err}")
                    bench.connections[-1].error = str(err)[:200]


# -- what a node's processes cost -------------------------------------------------------------

def resident(node: Node) -> dict[int, str]:
    """Our resident processes on the node: those whose command line contains "kuth-", but
    HAProxy's own (its pid file and sockets are named after ocf:kuth:haproxy's resource);
    each with the first word of its command line that names it."""
    found = {}
    for pid in node.netns.pids():
        if processes.name(pid) == "haproxy":
            continue
        words = [os.path.basename(word) for word in processes.cmdline(pid)]
        label = next((word for word in words if "kuth-" in word), None)
        if label is not None:
            found[pid] = label
    return found


def kinds(labels: Iterable[str]) -> str:
    """'kuth-watcher x10, kuth-refuser': how many of each label."""
    counted = Counter(labels)
    return ", ".join(f"{label} x{n}" if n > 1 else label for label, n in sorted(counted.items()))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its children it has waited for (an attrd_updater
    or ip a watcher ran); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB, from smaps_rollup ((0, 0) once it is gone)."""
    values = {"Rss:": 0, "Pss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(" ")
                if key in values:
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values["Rss:"], values["Pss:"]


def cpu_over(pids: Callable[[], list[int]], seconds: float) -> tuple[list[int], float]:
    """The processes pids() names at the start and the end of seconds, and the CPU seconds
    they used in between (see cpu_seconds)."""
    first = {pid: cpu_seconds(pid) for pid in pids()}
    time.sleep(seconds)
    last = {pid: cpu_seconds(pid) for pid in pids() if pid in first}
    return list(last), sum(used - first[pid] for pid, used in last.items())


def monitor_exec_ms(cluster: Cluster, resources: list[str]) -> list[float]:
    """The last recurring monitor's exec-time of each resource, as crm_mon reports it."""
    xml = cluster.view_node(None).run(["crm_mon", "-1", "--output-as=xml",
                                       "--include=operations"]).stdout
    times = []
    for history in ET.fromstring(xml).iter("resource_history"):
        if history.get("id") not in resources:
            continue
        for op in history.iter("operation_history"):
            if op.get("task") == "monitor" and op.get("interval", "0ms") != "0ms":
                times.append(float(op.get("exec-time", "0ms").removesuffix("ms")))
    return times


def vips_config(agent: str, count: int) -> tuple[str, list[str]]:
    """count VIPs with agent and ocf:kuth:haproxy, all on haproxy's node; and the VIPs' ids."""
    ids = [f"vip-{n}" for n in range(1, count + 1)]
    text = (f"primitive {HAPROXY_RSC} ocf:kuth:haproxy \\\n"
            f"    op monitor interval=20 timeout=60\n"
            "rsc_defaults resource-stickiness=100\n")
    for n, rid in enumerate(ids, 1):
        text += (f"primitive {rid} {agent} \\\n"
                 f"    params ip={EXTRA_VIP.format(29 + n)} nic=lan0 cidr_netmask=24 \\\n"
                 f"    op monitor interval=20 timeout=60\n"
                 f"colocation {rid}-with-haproxy inf: {rid} {HAPROXY_RSC}\n")
    return text, ids


def run_vips(bench: Bench, agents: list[str], counts: list[int], seconds: float) -> None:
    c = bench.cluster
    for count in counts:
        for agent in agents:
            try:
                c.reset()
                c.write_haproxy_config(scale_haproxy_config())
                text, ids = vips_config(AGENTS[agent], count)
                c.configure(text)
                c.wait_for(lambda: all(c.locate(rid) for rid in ids), 120,
                           what=f"{count} VIPs started")
                c.settle(120)
                time.sleep(SETTLE_S)
                node = c.node(c.locate(HAPROXY_RSC)[0])
                found = resident(node)
                pids, cpu = cpu_over(lambda: list(resident(node)), seconds)
                rss, pss = (sum(values) for values in zip((0, 0), *map(memory_kb, pids)))
                row = VipRow(agent, count, len(pids), kinds(found[pid] for pid in pids),
                             rss / 1024, pss / 1024, cpu * 60 / seconds,
                             monitor_exec_ms(c, ids))
            except (ClusterError, OSError) as err:
                bench.say(f"{agent}, {count} VIPs: stopped: {err}")
                continue
            bench.vips.append(row)
            bench.say(f"{agent}, {count} VIPs: {row.processes} resident processes, RSS "
                      f"{row.rss_mb:.1f} MB, PSS {row.pss_mb:.1f} MB, CPU "
                      f"{row.cpu_s_per_min:.2f} s/min, monitor "
                      f"{stat(row.monitor_ms, '.0f')} ms")


# -- the hand-over's cost on the ring ---------------------------------------------------------

def ring_bytes(cluster: Cluster) -> int:
    """Bytes the nodes have sent into the ring switch (its ports' received bytes)."""
    assert cluster.ring_switch is not None
    links = json.loads(cluster.ring_switch.ip("-s", "-j", "link", "show"))
    return sum(link["stats64"]["rx"]["bytes"] for link in links
               if link["ifname"].startswith("port"))


def run_ring(bench: Bench, agents: list[str], count: int, seconds: float) -> None:
    c = bench.cluster
    for agent in agents:
        try:
            driver = ScaleStack(c, AGENTS[agent], "clone", count)
            driver.setup()
            with bench.hold(count, RING_CHURN):
                driver.lose_active()  # the survivor-to-be holds the hand-over: steady state
                attrd = lambda: [p for n in c.nodes for p in n.pids("pacemaker-attr")]
                before = ring_bytes(c)
                _, cpu = cpu_over(attrd, seconds)
                sent = ring_bytes(c) - before
        except (ClusterError, OSError) as err:
            bench.say(f"{agent}, ring at {count:,} connections: stopped: {err}")
            continue
        row = RingRow(agent, count, driver.handed, cpu * 60 / seconds, sent / seconds)
        bench.ring.append(row)
        bench.say(f"{agent}, {count:,} connections, {RING_CHURN:.0%}/s replaced: attrd "
                  f"{row.attrd_cpu_s_per_min:.2f} s/min, ring {row.ring_bytes_per_s:,.0f} B/s")


# -- the report -----------------------------------------------------------------------------

def stat(values: list[float], fmt: str) -> str:
    return failover.stat(values, fmt)


def seconds(value: float | None, unit: str = " s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def connections_table(rows: list[ConnectionRow]) -> list[str]:
    lines = ["| connections | stack | served by | handed over before the loss | planned move: "
             f"ended within {MOVE_S:.0f} s | planned move: last end s (waited "
             f"{MOVE_WAIT_S:.0f} s) | node loss: requests' outage s | node loss: reset within "
             f"outage + {OVER_OUTAGE_S} s | node loss: last end s | node loss: still silent "
             f"after {SILENT_S:.0f} s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row.error:
            lines.append(f"| {row.count:,} | {row.agent} {row.topology} | {row.server} | "
                         f"stopped: {row.error} | | | | | | |")
            continue
        handed = "-" if row.handed_over is None else f"{row.handed_over:,}"
        lines.append(f"| {row.count:,} | {row.agent} {row.topology} | {row.server} | {handed} | "
                     f"{row.move_ended:,} | {seconds(row.move_last_end, '')} | "
                     f"{row.loss_outage:.2f} | {row.loss_reset:,} | "
                     f"{seconds(row.loss_last_end, '')} | {row.loss_silent:,} |")
    return lines


def vips_table(rows: list[VipRow], seconds: float) -> list[str]:
    lines = ["| VIPs (+ ocf:kuth:haproxy) | VIP agent | resident processes | which | RSS MB | "
             f"PSS MB | CPU s a minute (over {seconds:.0f} s) | VIPs' monitor exec-time ms "
             "(max / median) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.count} | {r.agent} | {r.processes} | {r.kinds or '-'} | {r.rss_mb:.1f} | {r.pss_mb:.1f} | "
              f"{r.cpu_s_per_min:.2f} | {stat(r.monitor_ms, '.0f')} |" for r in rows]
    return lines


def ring_table(rows: list[RingRow], seconds: float) -> list[str]:
    lines = [f"| VIP agent | connections ({RING_CHURN:.0%} replaced a second) | handed over "
             f"| attrd CPU s a minute (all nodes, over {seconds:.0f} s) | bytes a second "
             "on the ring |", "|---|---|---|---|---|"]
    lines += [f"| {r.agent} | {r.count:,} | "
              f"{'-' if r.handed_over is None else f'{r.handed_over:,}'} | "
              f"{r.attrd_cpu_s_per_min:.2f} | {r.ring_bytes_per_s:,.0f} |" for r in rows]
    return lines


def report(bench: Bench, args: argparse.Namespace, seconds: float, png: Path) -> str:
    load = os.getloadavg()
    text = [
        "# Scale: many connections, many VIPs, the hand-over's cost",
        "",
        f"Run {datetime.datetime.now():%Y-%m-%d %H:%M} on {platform.node()} "
        f"({os.cpu_count()} CPUs, {cpu_model()}), checkout {failover.commit()}, "
        f"{seconds / 60:.1f} minutes; load average at the end {load[0]:.2f}. "
        f"Command: `python3 -m bench.scale {' '.join(sys.argv[1:])}`. Versions: "
        f"{failover.versions()}.",
        "",
        f"2 nodes, Corosync token {failover.TOKEN_MS} ms, fencing on. Short requests: a GET to "
        f"{URL} every {failover.INTERVAL * 1000:.0f} ms (timeout {failover.REQUEST_TIMEOUT} s).",
    ]
    if bench.connections:
        text += [
            "", "## Idle long-lived connections at a planned move and a node loss", "",
            f"Connections from {len(SOURCES)} client addresses at most, idle, each watched "
            "for a reset or an end (epoll). Up to "
            f"{HAPROXY_MAX:,} served by ocf:kuth:haproxy (maxconn {HAPROXY_MAXCONN:,}); past "
            "that by servers on the nodes themselves, run by ocf:heartbeat:anything in "
            "haproxy's place. Planned move: `crm resource move` of the VIP, timed from the "
            "first stop (the VIP's or its server's) on the old node as its pacemaker-execd "
            "logs it. Node loss: the "
            "active node crashes and is fenced; the requests' outage is the longest time "
            "between served requests from the crash on; last end: when the last connection "
            "was reset or ended, after the crash. ocf:heartbeat:IPaddr2 hands nothing "
            "over.", "", *connections_table(bench.connections)]
    if bench.vips:
        text += ["", "## K VIPs on one node at rest", "",
                 "Every VIP and ocf:kuth:haproxy on one node, monitors every 20 s. Processes: "
                 "that node's whose command line contains `kuth-`, but haproxy's own, alive "
                 f"at the start and the end of the window, which begins {SETTLE_S:.0f} s after "
                 "the starts. RSS and PSS summed from /proc/PID/smaps_rollup; CPU: utime + "
                 "stime, with the children they waited for (attrd_updater, ip); exec-time: "
                 "each VIP's last recurring monitor as `crm_mon --include=operations` reports "
                 "it.", "",
                 *vips_table(bench.vips, args.idle_seconds)]
    if bench.ring:
        text += ["", "## The hand-over's cost on attrd and the ring", "",
                 f"Clone topology, nodes serving the port; {RING_CHURN:.0%} of the "
                 "connections closed and opened anew every second by their clients. attrd: "
                 "utime + stime of every node's pacemaker-attrd; ring: bytes the nodes sent "
                 "into the ring switch. ocf:heartbeat:IPaddr2 hands nothing over: the "
                 "difference is the hand-over's.", "",
                 *ring_table(bench.ring, args.ring_seconds)]
    if png.exists():
        text += ["", f"![connections and VIPs]({png.name})"]
    return "\n".join(text) + "\n"


def plot(bench: Bench, path: Path) -> None:
    """Connections reset at a node loss and left silent, by N, for each stack; and the
    resident memory and idle CPU of K VIPs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = int(bool(bench.connections)) + 2 * int(bool(bench.vips))
    if not panels:
        return
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    axes = list(axes[0])
    if bench.connections:
        ax = axes.pop(0)
        stacks = sorted({(r.agent, r.topology) for r in bench.connections})
        for agent, topology in stacks:
            rows = [r for r in bench.connections
                    if (r.agent, r.topology) == (agent, topology) and not r.error]
            counts = [r.count for r in rows]
            line, = ax.plot(counts, [r.loss_reset / r.count for r in rows], marker="o",
                            label=f"{agent} {topology}: reset in time")
            ax.plot(counts, [r.loss_silent / r.count for r in rows], marker="x",
                    linestyle="--", color=line.get_color(),
                    label=f"{agent} {topology}: silent after {SILENT_S:.0f} s")
        ax.set_xscale("log")
        ax.set_xlabel("idle connections through the VIP")
        ax.set_ylabel("share of the connections")
        ax.set_title("node loss", fontsize=10, loc="left")
        ax.legend(fontsize=7)
    if bench.vips:
        memory, cpu = axes
        for agent in sorted({r.agent for r in bench.vips}):
            rows = [r for r in bench.vips if r.agent == agent]
            line, = memory.plot([r.count for r in rows], [r.rss_mb for r in rows], marker="o",
                                label=f"{agent} RSS")
            memory.plot([r.count for r in rows], [r.pss_mb for r in rows], marker="x",
                        linestyle="--", color=line.get_color(), label=f"{agent} PSS")
            cpu.plot([r.count for r in rows], [r.cpu_s_per_min for r in rows], marker="o",
                     label=agent)
        memory.set_xlabel("VIPs on the node")
        memory.set_ylabel("MB, kuth- processes")
        memory.set_title("resident memory", fontsize=10, loc="left")
        memory.legend(fontsize=7)
        cpu.set_xlabel("VIPs on the node")
        cpu.set_ylabel("CPU s a minute, kuth- processes")
        cpu.set_title("idle CPU", fontsize=10, loc="left")
        cpu.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------

def numbers(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=numbers, default=list(CONNECTIONS),
                   help="idle connections to hold, comma-separated (default "
                        f"{','.join(map(str, CONNECTIONS))}; empty: none)")
    p.add_argument("--vips", type=numbers, default=list(VIP_COUNTS),
                   help=f"VIPs on one node (default {','.join(map(str, VIP_COUNTS))}; empty: "
                        "none)")
    p.add_argument("--ring", type=numbers, default=[RING_CONNECTIONS],
                   help=f"connections for the ring's cost (default {RING_CONNECTIONS}; empty: "
                        "none)")
    p.add_argument("--agent", action="append", choices=list(AGENTS),
                   help="VIP agent (repeatable; default both)")
    p.add_argument("--topology", action="append", choices=TOPOLOGIES,
                   help="topology of the connections' runs (repeatable; default both)")
    p.add_argument("--idle-seconds", type=float, default=60.0,
                   help="how long K VIPs' CPU is measured (default 60)")
    p.add_argument("--ring-seconds", type=float, default=60.0,
                   help="how long attrd and the ring are measured (default 60)")
    p.add_argument("--agents", metavar="DIR", default=str(REPO / "agents"),
                   help="the ocf:kuth agents to run (default: this checkout's)")
    p.add_argument("--logs", metavar="DIR", help="keep every node's logs there")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"markdown report; the PNG goes beside it (default {DEFAULT_OUTPUT})")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("scale: run as root (it builds namespaces and a cluster)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, failover.raise_on_sigterm)
    agents = args.agent or list(AGENTS)
    topologies = args.topology or list(TOPOLOGIES)
    began = time.monotonic()
    with Cluster(nodes=2, token_ms=failover.TOKEN_MS, agents_dir=args.agents,
                 logs_dir=args.logs) as cluster:
        with Traffic(cluster.client, URL, interval=failover.INTERVAL,
                     timeout=failover.REQUEST_TIMEOUT) as traffic:
            bench = Bench(cluster, traffic, began)
            bench.say(f"cluster up in {cluster.started_in:.1f} s")
            try:
                run_connections(bench, agents, topologies, args.connections)
                run_vips(bench, agents, args.vips, args.idle_seconds)
                for count in args.ring:
                    run_ring(bench, agents, count, args.ring_seconds)
            except (ClusterError, subprocess.SubprocessError) as err:
                bench.say(f"stopped early: {err}")
            finally:
                bench.close()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    png = args.output.with_suffix(".png")
    plot(bench, png)
    text = report(bench, args, time.monotonic() - began, png)
    args.output.write_text(text)
    print(text)
    print(f"scale: wrote {args.output} and {png}; everything torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
