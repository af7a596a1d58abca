"""How long the control-plane endpoint is gone when something happens, seen by a client.

A client sends a GET through the VIP to the kube-apiserver stand-ins behind HAProxy every
10 ms (lab/traffic.py's Traffic), and holds 4 long-lived watch streams through it as
Kubernetes clients do (lab/traffic.py's Streams), while the benchmark moves the resources,
puts the active node in standby, pulls its cables, crashes it, reloads haproxy, kills it
with SIGKILL, reloads it after a refresh, applies an haproxy.cfg haproxy refuses, and
changes a parameter of the VIP that does not move it. The same 2-node cluster (Corosync token
1000 ms, fencing on with the lab's fence device: a cut or crashed node is fenced, a reboot,
before the survivor takes over)
runs every stack in turn, so the figures compare like with like:

  kuth       ocf:kuth:IPaddr2 + ocf:kuth:haproxy
  heartbeat  ocf:heartbeat:IPaddr2 + ocf:kuth:haproxy
  keepalived Debian's keepalived (VRRP, default advert_int, haproxy checked by a 1 s
             vrrp_script) + haproxy, on the same nodes with no Pacemaker resources

each Pacemaker stack in the guide's topology (haproxy follows the VIP) and the clone topology
(haproxy on every node, the VIP where haproxy runs), and ocf:kuth:haproxy's crash watcher on
and off with a 20 s and a 60 s monitor interval. Output: a markdown table and a PNG of every
request's result around each event, under bench/results/.

Run as root: `make bench-failover` or `python3 -m bench.failover --repeat 3`.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
from lab import constraints
from lab.apiserver import WATCH_INTERVAL
from lab.cluster import Cluster
from lab.command import ClusterError
from lab.guide import haproxy_config
from lab.nodes import Node
from lab.topology import KUBE_PORT, VIP_NETWORK
from lab.traffic import Streams, Traffic

VIP = f"{VIP_NETWORK}.20"
URL = f"http://{VIP}:{KUBE_PORT}/"
INTERVAL = 0.01
REQUEST_TIMEOUT = 0.5
TOKEN_MS = 1000
VIP_RSC = "virtual-ip-resource"
HAPROXY_RSC = "haproxy-resource"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "failover.md"
# A stack has recovered once every request of this long a stretch succeeded.
STEADY_S = 1.0
# The longest any event may take to recover (a killed haproxy waits for a 60 s monitor).
RECOVERY_S = 90.0
# Targets (bench/README.md): planned moves, a killed haproxy with the watcher, the agents'
# part of a node loss, streams after a node loss; failed requests on reload; for kuth's
# stacks (issue 23) a refused haproxy.cfg applied costs no more requests than the same
# stack's reload and cuts no stream, a VIP parameter change neither.
CLONE_MOVE_S = 0.15  # a planned move or standby in the clone topology
PLANNED_STALL_S = 1.0  # a stream's stall in a planned move or standby, reconnection included
KILL_S = 0.5
AGENTS_PART_S = 0.150
STALL_OVER_OUTAGE_S = 0.5  # node loss: a stream's stall against the short requests' outage
# "reload after refresh": a reload right after `crm resource refresh` of the running haproxy
# (as after the cleanup of a failure), which Pacemaker (2.1.5 and 3.0.0 alike) turns into a
# restart (see PacemakerStack.reload_after_refresh).
# "broken haproxy.cfg applied": an haproxy.cfg with a typo, applied as the stack's operator
# applies an edit (issue 23); "VIP parameter changed": a tuning parameter of the address
# (ARP announcements) changed, as an operator does it.
EVENTS = ("move", "standby", "link down", "crash", "reload", "kill -9", "reload after refresh",
          "broken haproxy.cfg applied", "VIP parameter changed")
PACEMAKER_ONLY = ("reload after refresh",)
# Issue 23's typo (as tests/test_cluster_operations.py): `haproxy -c` refuses the file.
BROKEN_CFG = "frontend broken\n    balance roundrobbin\n"
# A refused file: how long to wait for the monitor to say so, and, should the endpoint be
# gone, how long it may stay gone before the benchmark fixes the file as the operator would.
DEGRADED_WAIT_S = 30.0
LOST_S = 30.0
NODE_LOSSES = ("link_down", "crash")  # the events whose agents' part is measured
# Long-lived watch streams held through the VIP beside the short requests (lab.traffic).
STREAMS = 4
STREAM_IDLE_S = 10.0  # a stream silent this long reconnects (client-go: 30 s, then a ping)


@dataclass(frozen=True)
class Stack:
    """One way of keeping the VIP and haproxy up, and the events it is put through."""
    label: str
    vip_agent: str = ""  # "" for keepalived
    topology: str = "guide"
    watch: bool = True
    interval: int = 20
    events: tuple[str, ...] = EVENTS
    slow: bool = False  # a killed haproxy waits for the monitor: fewer rounds

    @property
    def keepalived(self) -> bool:
        return not self.vip_agent


@dataclass
class Sample:
    """One round of one event: the client's results on a clock starting at the event."""
    longest: float
    failed: int
    total: int
    results: list[tuple[float, bool]]
    agents_part: float | None = None
    streams_cut: int = 0
    stream_stall: float = 0.0
    lost: bool = False  # the endpoint came back only once the benchmark fixed the file
    note: str = ""  # what the stack did, for the round's line


@dataclass
class Row:
    stack: Stack
    event: str
    samples: list[Sample] = field(default_factory=list)


def stacks() -> list[Stack]:
    """Every stack, the main ones first; the watcher figures after them."""
    main = [Stack(f"{name} {topo}", agent, topo)
            for name, agent in (("kuth", "ocf:kuth:IPaddr2"),
                                ("heartbeat", "ocf:heartbeat:IPaddr2"))
            for topo in ("guide", "clone")]
    watcher = [Stack(f"kuth {topo}, watch={str(watch).lower()}, monitor {interval} s",
                     "ocf:kuth:IPaddr2", topo, watch, interval, ("kill -9",),
                     slow=not watch)
               for interval in (20, 60) for watch in (True, False) for topo in ("guide", "clone")
               if (interval, watch) != (20, True)]  # the main kuth stacks are that one
    keepalived = tuple(e for e in EVENTS if e not in PACEMAKER_ONLY)  # no Pacemaker: no refresh
    return [*main, Stack("keepalived", events=keepalived), *watcher]


def method_name(event: str) -> str:
    """The drivers' method for an event: "kill -9" -> kill, "broken haproxy.cfg applied" ->
    broken_haproxy_cfg_applied."""
    return re.sub(r"\W+", "_", event.replace(" -9", "")).lower()


# -- Pacemaker stacks ---------------------------------------------------------------------

def pacemaker_config(stack: Stack) -> str:
    """The guide's crm configuration, with the stack's VIP agent and haproxy's interval."""
    text = (f"primitive {VIP_RSC} {stack.vip_agent} \\\n"
            f"    params ip={VIP} nic=lan0 cidr_netmask=24 \\\n"
            f"    meta migration-threshold=2 \\\n"
            f"    op monitor interval=20 timeout=60 on-fail=restart\n"
            f"primitive {HAPROXY_RSC} ocf:kuth:haproxy \\\n"
            f"    params watch={str(stack.watch).lower()} \\\n"
            f"    op monitor interval={stack.interval} timeout=60 on-fail=restart\n"
            "rsc_defaults resource-stickiness=100\n")
    topology = constraints.guide if stack.topology == "guide" else constraints.clone
    return text + topology(VIP_RSC, HAPROXY_RSC)


class PacemakerStack:
    """The events, done the way an operator or a failure does them to a Pacemaker cluster."""

    def __init__(self, cluster: Cluster, stack: Stack) -> None:
        self.cluster = cluster
        self.stack = stack
        self.token = 0
        self.arp_count = 5  # both IPaddr2's default
        self.note = ""

    def setup(self) -> None:
        self.cluster.reset()
        self.cluster.configure(pacemaker_config(self.stack))
        self.settle()

    def settle(self) -> None:
        """Resources started, no failure left, the client served."""
        c = self.cluster
        c.wait_for(lambda: c.locate(VIP_RSC) and self.active() in c.locate(HAPROXY_RSC),
                   60, what="VIP and haproxy started")
        c.settle()
        c.view_node(None).run(["crm_resource", "--cleanup"])
        c.settle()

    def active(self) -> str:
        """The node with the VIP; ClusterError (for wait_for: not yet) unless exactly one."""
        nodes = self.cluster.locate(VIP_RSC)
        if len(nodes) != 1:
            raise ClusterError(f"{VIP_RSC} active on {nodes or 'no node'}")
        return nodes[0]

    def teardown(self) -> None:
        """Nothing: the next stack's reset() removes the resources."""

    def move(self) -> Callable[[], bool]:
        c = self.cluster
        target = next(n for n in c.names if n != self.active())
        c.crm("resource", "move", VIP_RSC, target)
        return lambda: c.locate(VIP_RSC) == [target] and target in c.locate(HAPROXY_RSC)

    def after_move(self) -> None:
        self.cluster.crm("resource", "clear", VIP_RSC)
        self.settle()

    def standby(self) -> Callable[[], bool]:
        """`crm node standby` of the active node: everything leaves it."""
        c = self.cluster
        self.standing = self.active()
        target = next(n for n in c.names if n != self.standing)
        c.crm("node", "standby", self.standing)
        return lambda: c.locate(VIP_RSC) == [target] and target in c.locate(HAPROXY_RSC)

    def after_standby(self) -> None:
        self.cluster.crm("node", "online", self.standing)
        self.settle()

    def lose_active(self) -> None:
        """Pick the node to lose; with ocf:kuth:IPaddr2, wait until its watcher has handed
        the streams over (every 2 s, seen twice): a control plane's watches are hours old,
        not seconds as after the previous event. Watches opened in the last 2-4 s before a
        node loss are not handed over, and wait for their client's timeout."""
        c = self.cluster
        self.lost = self.active()
        self.survivor = next(n for n in c.names if n != self.lost)
        if self.stack.vip_agent == "ocf:kuth:IPaddr2":
            c.wait_for(lambda: len(c.handed_over(VIP_RSC, self.survivor)) >= STREAMS, 30,
                       what="the streams handed over")

    def link_down(self) -> Callable[[], bool]:
        self.lose_active()
        self.cluster.link_down(self.lost)
        return self.taken_over

    def taken_over(self) -> bool:
        """The survivor of a node loss runs the VIP and haproxy, as it sees it."""
        c = self.cluster
        return (c.locate(VIP_RSC, view=self.survivor) == [self.survivor]
                and self.survivor in c.locate(HAPROXY_RSC, view=self.survivor))

    def after_link_down(self) -> None:
        """The lost node was fenced (rebooted) and waits without quorum; cable back in, it
        joins."""
        c = self.cluster
        c.wait_booted(self.lost)
        c.link_up(self.lost)
        self.after_crash()

    def crash(self) -> Callable[[], bool]:
        """The active node dies at once (lab: every process killed, as a power loss)."""
        self.lose_active()
        self.cluster.crash(self.lost)
        return self.taken_over

    def after_crash(self) -> None:
        """Fenced, the node boots again and joins."""
        c = self.cluster
        c.wait_booted(self.lost)
        c.wait_for(lambda: len(c.status().online) == 2, 60, what="node back online")
        self.settle()

    def agents_part(self, since_wall: float) -> float | None:
        """When the survivor's Pacemaker began starting the VIP (pacemaker-execd's log), on
        the wall clock; None when the log does not show it."""
        return execd_started(self.cluster.node(self.survivor), VIP_RSC, since_wall)

    def kill(self) -> Callable[[], bool]:
        c = self.cluster
        node = c.node(self.active())
        before = set(kill_haproxy(node))
        return lambda: (bool(c.status().failures)
                        and len(set(node.pids("haproxy")) - before) >= 2
                        and self.active() in c.locate(HAPROXY_RSC))

    def after_kill(self) -> None:
        self.settle()

    def reload(self) -> Callable[[], bool]:
        """As the README says; done once Pacemaker has run the reload."""
        self.token += 1
        self.cluster.crm("resource", "param", HAPROXY_RSC, "set", "reload_token",
                         f"bench-{self.token}")
        return lambda: self.cluster.settle() or True

    def after_reload(self) -> None:
        self.cluster.settle()

    def reload_after_refresh(self) -> Callable[[], bool]:
        """`crm resource refresh` of haproxy, then a reload. The refresh (like the cleanup of
        a failure) probes it again; the probe finds it running where Pacemaker, its history
        gone, expected it stopped, and that result is kept as the resource's last failure,
        without the digest that says the agent can reload. The next parameter change on
        that node is then a restart (stop, start), until a start writes the history anew."""
        self.cluster.crm("resource", "refresh", HAPROXY_RSC)
        self.cluster.settle()
        return self.reload()

    def after_reload_after_refresh(self) -> None:
        self.cluster.settle()

    def apply(self) -> None:
        """Apply an edited haproxy.cfg as the README says (a new reload_token)."""
        self.token += 1
        self.cluster.crm("resource", "param", HAPROXY_RSC, "set", "reload_token",
                         f"bench-{self.token}")

    def broken_haproxy_cfg_applied(self) -> Callable[[], bool]:
        """A typo in haproxy.cfg on every node, applied as the README says. Done once
        Pacemaker is idle and every node running haproxy reported it degraded (ocf:kuth:
        haproxy's monitor: 190, the last accepted file serving), or DEGRADED_WAIT_S later
        (noted)."""
        c = self.cluster
        since = time.time()
        actions = self.actions()
        c.write_haproxy_config(haproxy_config(extra=BROKEN_CFG))
        self.apply()
        deadline = time.monotonic() + DEGRADED_WAIT_S
        settled = False

        def done() -> bool:
            nonlocal settled
            if not settled:
                c.settle()
                settled = True
            status = c.status()
            running = status.resources.get(HAPROXY_RSC, [])
            degraded = {f.get("node") for f in status.failures
                        if f.get("op_key", "").startswith(f"{HAPROXY_RSC}_monitor")
                        and f.get("exitcode") == "190"}
            if running and set(running) <= degraded:
                self.note = f"degraded on {', '.join(sorted(running))}"
            elif time.monotonic() < deadline:
                return False
            else:
                self.note = (f"no degraded monitor in {DEGRADED_WAIT_S:.0f} s; haproxy on "
                             f"{', '.join(running) or 'no node'}")
            self.note += actions.since(since)
            return True
        return done

    def fix_haproxy_cfg(self) -> None:
        """The good file back on every node, applied; then, haproxy serving it, the failure
        records of the broken one (the degraded monitors) cleaned up."""
        c = self.cluster
        c.write_haproxy_config(haproxy_config())
        self.apply()
        c.settle()
        c.wait_for(lambda: not any(f"{HAPROXY_RSC}-config-refused" in attrs
                                   for attrs in c.status().attributes.values()),
                   DEGRADED_WAIT_S, what="haproxy.cfg accepted again on every node")
        c.crm("resource", "cleanup", HAPROXY_RSC)
        c.settle()

    recover_broken_haproxy_cfg_applied = fix_haproxy_cfg

    def after_broken_haproxy_cfg_applied(self) -> None:
        """Fixed. Applying the fix already cleared the degraded monitors (Pacemaker clears a
        resource's failures when its parameters change), so the cleanup probes nothing and
        the next round's apply is a reload again, not the restart that follows the cleanup
        of a failure (README; "reload after refresh"): each round's line says which ran."""
        self.fix_haproxy_cfg()
        self.settle()

    def vip_parameter_changed(self) -> Callable[[], bool]:
        """`crm resource param virtual-ip-resource set arp_count N`, N new every round: an
        announcement setting, nothing about where the address sits."""
        c = self.cluster
        since = time.time()
        actions = self.actions()
        self.arp_count += 1
        c.crm("resource", "param", VIP_RSC, "set", "arp_count", str(self.arp_count))

        def done() -> bool:
            c.settle()
            if self.active() not in c.locate(HAPROXY_RSC):
                return False
            self.note = f"arp_count={self.arp_count}" + actions.since(since)
            return True
        return done

    def after_vip_parameter_changed(self) -> None:
        self.settle()

    def actions(self) -> ExecdActions:
        """What the active node's pacemaker-execd will have run on the resources."""
        return ExecdActions(self.cluster.node(self.active()))


def kill_haproxy(node: Node) -> list[int]:
    """SIGKILL every haproxy of the node (master and worker): a crash."""
    pids = node.pids("haproxy")
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


class ExecdActions:
    """The actions a node's pacemaker-execd ran on the VIP and haproxy, read from its log:
    whether a change was a reload or a stop and start."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def since(self, since_wall: float) -> str:
        """'; VIP on NODE: reload; haproxy on NODE: stop, start' (monitors left out), ''
        when none."""
        try:
            lines = self.node.read("/var/log/pacemaker/pacemaker.log").splitlines()
        except OSError:
            return ""
        year = datetime.date.today().year
        found: dict[str, list[str]] = {}
        pattern = re.compile(r"executing - rsc:(\S+?)(?::\d+)? action:(\S+) ")
        for line in lines:
            match = pattern.search(line)
            if not match or match.group(2) == "monitor":
                continue
            stamp = datetime.datetime.strptime(f"{year} {line[:19]}", "%Y %b %d %H:%M:%S.%f")
            if stamp.timestamp() >= since_wall:
                found.setdefault(match.group(1), []).append(match.group(2))
        names = {VIP_RSC: "VIP", HAPROXY_RSC: "haproxy"}
        return "".join(f"; {names[r]} on {self.node.name}: {', '.join(found[r])}"
                       for r in names if r in found)


def execd_started(node: Node, resource: str, since_wall: float, action: str = "start"
                  ) -> float | None:
    """The wall-clock time of the first action (start, stop...) of resource that node's
    pacemaker-execd logged after since_wall (its log has milliseconds, no year)."""
    year = datetime.date.today().year
    needle = f"executing - rsc:{resource} action:{action} "
    for line in node.read("/var/log/pacemaker/pacemaker.log").splitlines():
        if needle not in line:
            continue
        stamp = datetime.datetime.strptime(f"{year} {line[:19]}", "%Y %b %d %H:%M:%S.%f")
        wall = stamp.timestamp()
        if wall >= since_wall:
            return wall
    return None


# -- keepalived ---------------------------------------------------------------------------

KEEPALIVED_DIR = "/run/kuth-bench"
HAPROXY_PIDFILE = f"{KEEPALIVED_DIR}/haproxy.pid"
KEEPALIVED_RELOADED = "Reload complete"  # what keepalived 2.2.7 logs when a SIGHUP is done


def keepalived_conf(node: Node, priority: int, garp_repeat: int | None = None) -> str:
    """The usual keepalived pair for HAProxy: VRRP with the default advert_int (1 s), both
    BACKUP with nopreempt (no move back, like Pacemaker's stickiness), haproxy checked every
    second. The check looks for an haproxy in this node's network namespace (pgrep --ns):
    the nodes share /proc, so `killall -0 haproxy` would see the other node's; and
    track_process needs the proc connector, which a namespace does not get. garp_repeat:
    garp_master_repeat, the gratuitous ARPs sent on becoming master (IPaddr2's arp_count;
    None: keepalived's default, 5)."""
    garp = f"    garp_master_repeat {garp_repeat}\n" if garp_repeat is not None else ""
    return f"""global_defs {{
    router_id {node.name}
    enable_script_security
    script_user root
}}
vrrp_script chk_haproxy {{
    script "/usr/bin/pgrep --ns {node.pid} --nslist net -x haproxy"
    interval 1
    fall 1
    rise 1
}}
vrrp_instance kube_apiserver {{
    state BACKUP
    nopreempt
    interface lan0
    virtual_router_id 51
    priority {priority}
{garp}    virtual_ipaddress {{
        {VIP}/24 dev lan0
    }}
    track_script {{
        chk_haproxy
    }}
}}
"""


class KeepalivedStack:
    """keepalived + haproxy on every node, started by hand the way their Debian units would
    (the benchmark plays systemd), Pacemaker holding no resources."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.keepalived: dict[str, subprocess.Popen[bytes]] = {}
        self.haproxy: dict[str, subprocess.Popen[bytes]] = {}
        self.garp_repeat: int | None = None
        self.note = ""

    def setup(self) -> None:
        self.cluster.reset()
        for number, node in enumerate(self.cluster.nodes):
            node.run(["mkdir", "-p", KEEPALIVED_DIR])
            self.write_keepalived_conf(node)
            self.start_haproxy(node)
            self.start_keepalived(node)
        self.settle()

    def write_keepalived_conf(self, node: Node) -> None:
        node.write(f"{KEEPALIVED_DIR}/keepalived.conf",
                   keepalived_conf(node, 101 - self.cluster.nodes.index(node), self.garp_repeat))

    def start_haproxy(self, node: Node) -> None:
        """As Debian's haproxy.service: master-worker, in the foreground."""
        node.run(["mkdir", "-p", "/run/haproxy"])
        self.haproxy[node.name] = node.popen(
            ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg", "-p", HAPROXY_PIDFILE],
            log=f"{KEEPALIVED_DIR}/haproxy.log")

    def start_keepalived(self, node: Node) -> None:
        """In the foreground, with its pid files in the node's private /run."""
        d = KEEPALIVED_DIR
        self.keepalived[node.name] = node.popen(
            ["keepalived", "--dont-fork", "--log-console", "--log-detail",
             "-f", f"{d}/keepalived.conf", "-p", f"{d}/keepalived.pid",
             "-r", f"{d}/vrrp.pid", "-c", f"{d}/checkers.pid"],
            log=f"{d}/keepalived.log")

    def holders(self) -> list[str]:
        return [n.name for n in self.cluster.nodes if n.has_address(VIP)]

    def active(self) -> str:
        [node] = self.holders()
        return node

    def settle(self) -> None:
        """The VIP on one node, and every node back in Pacemaker's cluster: VRRP needs none
        of it, but the next node loss needs a survivor with quorum to be fenced (a pair's
        node that rebooted has quorum once it has seen the other, corosync's wait_for_all).
        The last full run stopped in keepalived's third link down for want of this."""
        c = self.cluster
        c.wait_for(lambda: len(self.holders()) == 1, 30, what="VIP on one node")
        c.wait_for(lambda: (s := c.status()).quorate and len(s.online) == len(c.names), 60,
                   what="every node in the cluster, with quorum")

    def teardown(self) -> None:
        for proc in [*self.keepalived.values(), *self.haproxy.values()]:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.keepalived.clear()
        self.haproxy.clear()

    def move(self) -> Callable[[], bool]:
        """`systemctl stop keepalived` on the master: it sends a priority-0 advert."""
        self.old = self.active()
        target = next(n for n in self.cluster.names if n != self.old)
        proc = self.keepalived.pop(self.old)
        proc.terminate()
        proc.wait(10)
        return lambda: self.holders() == [target]

    def after_move(self) -> None:
        self.start_keepalived(self.cluster.node(self.old))
        time.sleep(2)  # back as BACKUP; nopreempt keeps the VIP where it is
        self.settle()

    # A node taken out of service: keepalived stopped on it, as for a move.
    standby = move
    after_standby = after_move

    def lose_active(self) -> Callable[[], bool]:
        """Pick the node to lose; returns: the survivor holds the VIP."""
        self.lost = self.active()
        self.survivor = next(n for n in self.cluster.names if n != self.lost)
        self.fenced_before = self.cluster.fenced().count(self.lost)
        return lambda: self.cluster.node(self.survivor).has_address(VIP)

    def wait_fenced(self) -> None:
        """Wait until Pacemaker (fencing on, no resources) had the lost node powered off and
        it booted again. VRRP moves the VIP without waiting for that, so the event can be
        over long before; a node never fenced is a ClusterError, not a wait for its old
        processes to end."""
        c = self.cluster
        c.wait_for(lambda: c.fenced().count(self.lost) > self.fenced_before, 60,
                   what=f"{self.lost} fenced")
        c.wait_booted(self.lost)

    def link_down(self) -> Callable[[], bool]:
        done = self.lose_active()
        self.cluster.link_down(self.lost)
        return done

    def after_link_down(self) -> None:
        """Pacemaker (no resources, fencing on) fenced the cut node: it boots, and its
        services start as systemd would start them; then the cables go back in."""
        self.wait_fenced()
        self.boot_services(self.lost)
        self.cluster.link_up(self.lost)
        self.settle()

    def crash(self) -> Callable[[], bool]:
        done = self.lose_active()
        self.cluster.crash(self.lost)
        return done

    def after_crash(self) -> None:
        self.wait_fenced()
        self.boot_services(self.lost)
        self.settle()

    def boot_services(self, name: str) -> None:
        """keepalived and haproxy on a node that booted again (their old processes died
        with it), as its systemd would start them."""
        for procs in (self.keepalived, self.haproxy):
            procs.pop(name).wait()
        node = self.cluster.node(name)
        node.run(["mkdir", "-p", KEEPALIVED_DIR])
        self.write_keepalived_conf(node)
        self.start_haproxy(node)
        self.start_keepalived(node)
        time.sleep(2)  # back as BACKUP; nopreempt keeps the VIP where it is

    def agents_part(self, since_wall: float) -> float | None:
        return None

    def kill(self) -> Callable[[], bool]:
        """haproxy crashes; systemd would restart it after RestartSec, the benchmark does once
        the VIP has moved."""
        self.crashed = self.active()
        kill_haproxy(self.cluster.node(self.crashed))
        self.haproxy.pop(self.crashed).wait(10)
        return lambda: self.holders() not in ([], [self.crashed])

    def after_kill(self) -> None:
        self.start_haproxy(self.cluster.node(self.crashed))
        time.sleep(2)
        self.settle()

    def reload(self) -> Callable[[], bool]:
        """`systemctl reload haproxy`: check, then SIGUSR2 to the master."""
        node = self.cluster.node(self.active())
        node.run(["haproxy", "-c", "-q", "-f", "/etc/haproxy/haproxy.cfg"])
        self.haproxy[node.name].send_signal(signal.SIGUSR2)
        return lambda: True

    def after_reload(self) -> None:
        time.sleep(1)

    def reload_haproxy(self, node: Node) -> bool:
        """`systemctl reload haproxy` as Debian's unit does it: ExecReload checks the file
        (`haproxy -Ws -f CONFIG -c -q`) and, only when that passed, sends SIGUSR2 to the
        master. A master that is gone is started again, as Restart=on-failure would."""
        proc = self.haproxy.get(node.name)
        if proc is None or proc.poll() is not None:
            self.start_haproxy(node)
            return True
        check = node.run(["haproxy", "-Ws", "-f", "/etc/haproxy/haproxy.cfg", "-c", "-q"],
                         check=False)
        if check.returncode != 0:
            return False
        proc.send_signal(signal.SIGUSR2)
        return True

    def broken_haproxy_cfg_applied(self) -> Callable[[], bool]:
        """The typo on every node, then `systemctl reload haproxy` on every node: its check
        refuses the file, the reload fails, and haproxy runs on as it was."""
        self.cluster.write_haproxy_config(haproxy_config(extra=BROKEN_CFG))
        refused = [node.name for node in self.cluster.nodes if not self.reload_haproxy(node)]
        self.note = f"systemctl reload refused on {', '.join(refused) or 'no node'}"
        return lambda: len(self.holders()) == 1

    def fix_haproxy_cfg(self) -> None:
        """The good file back on every node and `systemctl reload haproxy` on each."""
        self.cluster.write_haproxy_config(haproxy_config())
        for node in self.cluster.nodes:
            if not self.reload_haproxy(node):
                raise ClusterError(f"haproxy -c refused the lab's haproxy.cfg on {node.name}")
        time.sleep(1)  # the old workers hand over

    recover_broken_haproxy_cfg_applied = fix_haproxy_cfg

    def after_broken_haproxy_cfg_applied(self) -> None:
        self.fix_haproxy_cfg()
        self.settle()

    def vip_parameter_changed(self) -> Callable[[], bool]:
        """The equivalent of IPaddr2's arp_count: keepalived.conf's garp_master_repeat (the
        gratuitous ARPs on becoming master), new on every node, then `systemctl reload
        keepalived` (Debian's unit: SIGHUP to the main process) on every node. Done once both
        have logged their reload and one node holds the VIP."""
        self.garp_repeat = (self.garp_repeat or 5) + 1
        marks = {}
        for node in self.cluster.nodes:
            marks[node.name] = self.reloads(node)
            self.write_keepalived_conf(node)
            self.keepalived[node.name].send_signal(signal.SIGHUP)
        self.note = f"garp_master_repeat {self.garp_repeat}"
        return lambda: (all(self.reloads(n) > marks[n.name] for n in self.cluster.nodes)
                        and len(self.holders()) == 1)

    def reloads(self, node: Node) -> int:
        """How many reloads keepalived has logged on node."""
        return node.read(f"{KEEPALIVED_DIR}/keepalived.log").count(KEEPALIVED_RELOADED)

    def after_vip_parameter_changed(self) -> None:
        time.sleep(1)
        self.settle()


# -- measuring ----------------------------------------------------------------------------

class Bench:
    """Runs stacks through their events on one cluster, collecting rows as it goes (so a
    run stopped early still reports what it measured)."""

    def __init__(self, cluster: Cluster, traffic: Traffic, streams: Streams, repeat: int,
                 slow_repeat: int, began: float) -> None:
        self.cluster = cluster
        self.traffic = traffic
        self.streams = streams
        self.repeat = repeat
        self.slow_repeat = slow_repeat
        self.began = began
        self.rows: list[Row] = []
        # The wall clock of a monotonic instant (pacemaker-execd logs wall-clock times).
        self.wall_offset = time.time() - time.monotonic()

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.began
        print(f"[{elapsed // 60:3.0f}:{elapsed % 60:02.0f}] {text}", flush=True)

    def steady(self, since: float, timeout: float = 30) -> None:
        """Wait until every request of a whole STEADY_S, all sent after since, succeeded."""
        def ok() -> bool:
            now = time.monotonic()
            start = now - STEADY_S - REQUEST_TIMEOUT
            recent = [good for sent, good in list(self.traffic.results)
                      if start <= sent <= now - REQUEST_TIMEOUT]
            return start >= since and len(recent) >= STEADY_S / INTERVAL * 0.5 and all(recent)
        self.cluster.wait_for(ok, timeout, interval=0.1, what="every request served")
        self.cluster.wait_for(lambda: self.streams.flowing_since(since), timeout, interval=0.1,
                              what="every stream receiving")

    def run_stack(self, stack: Stack) -> None:
        driver = KeepalivedStack(self.cluster) if stack.keepalived else \
            PacemakerStack(self.cluster, stack)
        self.say(f"{stack.label}: setting up")
        try:
            driver.setup()
            for event in stack.events:
                self.run_event(driver, stack, event)
        finally:
            driver.teardown()

    def run_event(self, driver: PacemakerStack | KeepalivedStack, stack: Stack, event: str
                  ) -> None:
        row = Row(stack, event)
        self.rows.append(row)
        method = method_name(event)
        for round_ in range(self.slow_repeat if stack.slow else self.repeat):
            self.steady(time.monotonic() - STEADY_S - REQUEST_TIMEOUT)
            sample = self.measure(driver, method)
            row.samples.append(sample)
            part = (f", agents' part {sample.agents_part * 1000:.0f} ms"
                    if sample.agents_part is not None else "")
            self.say(f"{stack.label}: {event} #{round_ + 1}: longest outage "
                     f"{sample.longest:.3f} s, {sample.failed} of {sample.total} failed{part}; "
                     f"{sample.streams_cut} of {STREAMS} streams cut, longest stall "
                     f"{sample.stream_stall:.3f} s"
                     + (" (lost: served again only once the file was fixed)" if sample.lost
                        else "")
                     + (f" [{sample.note}]" if sample.note else ""))
            getattr(driver, f"after_{method}")()

    def measure(self, driver: PacemakerStack | KeepalivedStack, method: str) -> Sample:
        """Do the event, wait until the stack is done with it and the client is served
        again, and cut out the client's view from just before the event."""
        since = time.monotonic() - 0.5
        event_at = time.monotonic()
        driver.note = ""
        done = getattr(driver, method)()
        self.cluster.wait_for(done, RECOVERY_S, interval=0.1, what=f"{method} done")
        # An event the stack may not come back from by itself (a refused haproxy.cfg) has a
        # recover_ hook: the operator's fix, done after LOST_S without service.
        recover = getattr(driver, f"recover_{method}", None)
        lost = False
        try:
            self.steady(time.monotonic(), LOST_S if recover else RECOVERY_S)
        except ClusterError:
            if recover is None:
                raise
            self.say(f"{method}: not served {LOST_S:.0f} s after the stack was done; "
                     "fixing it as the operator would")
            lost = True
            recover()
            self.steady(time.monotonic(), RECOVERY_S)
        flowing = time.monotonic()  # every stream has received since the stack was done
        until = flowing - REQUEST_TIMEOUT  # the requests sent until then have their answer
        outage = self.traffic.outage(since, until)
        results = sorted((sent - event_at, ok) for sent, ok in list(self.traffic.results)
                         if since <= sent <= until)
        sample = Sample(outage.longest_gap, outage.failed, outage.total, results,
                        streams_cut=self.streams.cut(since, flowing),
                        stream_stall=self.streams.stall(since, flowing), lost=lost,
                        note=driver.note)
        if method in NODE_LOSSES:
            started = driver.agents_part(event_at + self.wall_offset)
            if started is not None:
                first = next((sent for sent, ok in sorted(self.traffic.results)
                              if ok and sent + self.wall_offset >= started), None)
                if first is not None:
                    sample.agents_part = first + self.wall_offset - started
        return sample


# -- the report -----------------------------------------------------------------------------

def stat(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{max(values):{fmt}} / {statistics.median(values):{fmt}}"


def target_note(row: Row, rows: list[Row]) -> str:
    """The row's target and whether it is met (by its longest round)."""
    longest = max(s.longest for s in row.samples)
    if row.event == "reload":
        failed = max(s.failed + s.streams_cut for s in row.samples)
        return f"0 failed, 0 streams cut: {'met' if failed == 0 else 'missed'}"
    if row.event == "broken haproxy.cfg applied":
        return broken_note(row, rows)
    if row.event == "VIP parameter changed" and row.stack.label.startswith("kuth "):
        failed = max(s.failed + s.streams_cut for s in row.samples)
        return f"0 failed, 0 streams cut: {'met' if failed == 0 else 'missed'}"
    if row.event == "kill -9" and row.stack.watch and not row.stack.keepalived:
        return f"<= {KILL_S} s: {'met' if longest <= KILL_S else 'missed'}"
    if row.event in ("move", "standby") and row.stack.label.startswith("kuth "):
        return "; ".join(planned_notes(row, rows))
    if row.event in ("link down", "crash") and not row.stack.keepalived:
        notes = []
        parts = [s.agents_part for s in row.samples if s.agents_part is not None]
        if parts:
            notes.append(f"agents' part <= {AGENTS_PART_S * 1000:.0f} ms: "
                         f"{'met' if max(parts) <= AGENTS_PART_S else 'missed'}")
        if row.stack.label.startswith("kuth "):
            met = all(s.stream_stall <= s.longest + STALL_OVER_OUTAGE_S for s in row.samples)
            notes.append(f"stream stall <= outage + {STALL_OVER_OUTAGE_S} s: "
                         f"{'met' if met else 'missed'}")
        return "; ".join(notes)
    return ""


def broken_note(row: Row, rows: list[Row]) -> str:
    """A refused haproxy.cfg applied: for a kuth stack, no more failed requests than a
    reload of the same stack in the same run (its worst round; without one, the reload's
    own target, 0), no stream cut, and never the endpoint lost; for the others, only the
    rounds where the endpoint was lost until the benchmark fixed the file."""
    lost = sum(s.lost for s in row.samples)
    lost_note = f"lost until fixed in {lost} of {len(row.samples)} rounds" if lost else ""
    if not row.stack.label.startswith("kuth "):
        return lost_note
    ref = [r for r in rows if r.event == "reload" and r.stack.label == row.stack.label]
    blip = max(s.failed for s in ref[0].samples) if ref else 0
    failed = max(s.failed for s in row.samples)
    cut = max(s.streams_cut for s in row.samples)
    met = failed <= blip and cut == 0 and not lost
    return (f"failed <= reload's {blip}{'' if ref else ' (its target)'}, 0 streams cut"
            f"{f' ({lost_note})' if lost else ''}: {'met' if met else 'missed'}")


def planned_notes(row: Row, rows: list[Row]) -> list[str]:
    """A planned move or standby of a kuth stack: the guide topology no worse than heartbeat
    IPaddr2's in the same run (their medians: one round in a few is slower on a busy
    machine, for either agent), the clone topology within CLONE_MOVE_S, and every stream
    back within PLANNED_STALL_S."""
    notes = []
    if row.stack.topology == "clone":
        longest = max(s.longest for s in row.samples)
        notes.append(f"<= {CLONE_MOVE_S} s: {'met' if longest <= CLONE_MOVE_S else 'missed'}")
    ref = [r for r in rows if r.event == row.event
           and r.stack.label == row.stack.label.replace("kuth", "heartbeat")]
    if row.stack.topology == "guide" and ref:
        ours, theirs = (statistics.median(s.longest for s in r.samples) for r in (row, ref[0]))
        notes.append(f"median <= heartbeat's {theirs:.3f} s: "
                     f"{'met' if ours <= theirs else 'missed'}")
    stall = max(s.stream_stall for s in row.samples)
    notes.append(f"stream stall <= {PLANNED_STALL_S} s: "
                 f"{'met' if stall <= PLANNED_STALL_S else 'missed'}")
    return notes


def table(rows: list[Row]) -> list[str]:
    lines = ["| event | stack | rounds | longest outage s (max / median) | failed requests "
             "(max / median) | streams cut (max / median) | stream stall s (max / median) | "
             "agents' part on node loss ms (max / median) | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for event in EVENTS:
        for row in (r for r in rows if r.event == event):
            parts = [s.agents_part * 1000 for s in row.samples if s.agents_part is not None]
            total = statistics.median(s.total for s in row.samples)
            lines.append(
                f"| {event} | {row.stack.label} | {len(row.samples)} | "
                f"{stat([s.longest for s in row.samples], '.3f')} | "
                f"{stat([float(s.failed) for s in row.samples], '.0f')} of ~{total:.0f} | "
                f"{stat([float(s.streams_cut) for s in row.samples], '.0f')} of {STREAMS} | "
                f"{stat([s.stream_stall for s in row.samples], '.3f')} | "
                f"{stat(parts, '.0f')} | {target_note(row, rows)} |")
    return lines


def report(rows: list[Row], args: argparse.Namespace, seconds: float, plot: Path) -> str:
    load = os.getloadavg()
    head = [
        "# Failover: outage seen by a client through the VIP",
        "",
        f"Run {datetime.datetime.now():%Y-%m-%d %H:%M} on {platform.node()} "
        f"({os.cpu_count()} CPUs), checkout {commit()}, agents from {args.agents}, "
        f"{seconds / 60:.1f} minutes; "
        f"load average at the end {load[0]:.2f}.",
        f"2 nodes, Corosync token {TOKEN_MS} ms; a GET to {URL} every {INTERVAL * 1000:.0f} ms "
        f"(timeout {REQUEST_TIMEOUT} s); {args.repeat} rounds per event "
        f"({args.slow_repeat} where a killed haproxy waits for the monitor). Versions: "
        f"{versions()}.",
        "",
        "Longest outage: the longest time between two successful requests (from half a second "
        "before the event until every request of a whole second succeeded again). Agents' "
        "part: from the survivor's pacemaker-execd starting the VIP's start to the first "
        "request served through the VIP. Streams: "
        f"{STREAMS} long-lived watch streams through the VIP (GET /watch, a line every "
        f"{WATCH_INTERVAL} s, reconnecting at once when cut or after {STREAM_IDLE_S:.0f} s of "
        "silence); cut: how many had their connection end; stall: the longest time one went "
        "without data, reconnection included.",
        "",
    ]
    return "\n".join([*head, *table(rows), "", f"![requests around each event]({plot.name})",
                      ""])


def commit() -> str:
    """The checkout measured; -dirty when a file outside bench/results (which this run has
    just written) differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True).stdout.strip()
    head = git("describe", "--always") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":(exclude)bench/results")
    return f"{head}-dirty" if changed else head


def versions() -> str:
    packages = ("pacemaker", "corosync", "haproxy", "keepalived", "resource-agents")
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *packages],
                         capture_output=True, text=True)
    return ", ".join(out.stdout.split("\n")[:len(packages)]).strip(", ")


def plot(rows: list[Row], path: Path) -> None:
    """One panel per event, one lane per stack: each request as a tick, green if served,
    red if failed, around the round with the longest outage. Where the ticks stop, requests
    were still waiting for their timeout."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(e, [r for r in rows if r.event == e and not r.stack.slow
                   and "monitor 60" not in r.stack.label]) for e in EVENTS]
    watcher = [r for r in rows if r.event == "kill -9" and ("watch=" in r.stack.label
                                                          or r.stack.label.startswith("kuth "))]
    panels.append(("kill -9: crash watcher on/off, monitor 20 s / 60 s", watcher))
    panels = [(title, rs) for title, rs in panels if rs]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.2 + sum(
        0.35 * len(rs) for _, rs in panels)), squeeze=False,
        gridspec_kw={"height_ratios": [max(len(rs), 1) for _, rs in panels]})
    for ax, (title, rs) in zip(axes[:, 0], panels):
        for lane, row in enumerate(rs):
            worst = max(row.samples, key=lambda s: s.longest)
            for ok, colour in ((True, "tab:green"), (False, "tab:red")):
                xs = [t for t, good in worst.results if good is ok]
                ax.scatter(xs, [lane] * len(xs), marker="|", s=60, color=colour, linewidths=0.6)
        ax.set_yticks(range(len(rs)), [r.stack.label for r in rs], fontsize=8)
        ax.set_ylim(-0.7, len(rs) - 0.3)
        ax.invert_yaxis()
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("seconds since the event (green: served, red: failed)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="rounds per event (default 3)")
    p.add_argument("--slow-repeat", type=int, default=2,
                   help="rounds of a kill that waits for the monitor (watch=false; default 2)")
    p.add_argument("--only", action="append", default=[],
                   help="run only stacks whose label contains this (repeatable)")
    p.add_argument("--event", action="append", default=[], choices=EVENTS,
                   help="run only this event (repeatable; default: every event)")
    p.add_argument("--agents", metavar="DIR", default=str(REPO / "agents"),
                   help="the ocf:kuth agents to run (default: this checkout's; give a copy of a "
                        "commit, e.g. from git archive, while others edit the checkout)")
    p.add_argument("--logs", metavar="DIR",
                   help="keep every node's Pacemaker and Corosync logs there")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"markdown report; the PNG goes beside it (default {DEFAULT_OUTPUT})")
    return p.parse_args(argv)


def raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("failover: run as root (it builds namespaces and a cluster)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    chosen = [replace(s, events=tuple(e for e in s.events if e in args.event))
              if args.event else s
              for s in stacks() if not args.only or any(o in s.label for o in args.only)]
    chosen = [s for s in chosen if s.events]
    if any(s.keepalived for s in chosen) and not shutil.which("keepalived"):
        print("failover: keepalived is not installed (make bench-failover installs it); "
              "or leave its stack out with --only", file=sys.stderr)
        return 1
    began = time.monotonic()
    rows: list[Row] = []
    print(f"failover: {len(chosen)} stacks, {args.repeat} rounds per event; starting a "
          f"2-node cluster (token {TOKEN_MS} ms)", flush=True)
    with Cluster(nodes=2, token_ms=TOKEN_MS, agents_dir=args.agents,
                 logs_dir=args.logs) as cluster:
        print(f"failover: cluster up in {cluster.started_in:.1f} s", flush=True)
        with Traffic(cluster.client, URL, interval=INTERVAL, timeout=REQUEST_TIMEOUT) as traffic, \
                Streams(cluster.client, VIP, KUBE_PORT, count=STREAMS,
                        idle_timeout=STREAM_IDLE_S) as streams:
            bench = Bench(cluster, traffic, streams, args.repeat, args.slow_repeat, began)
            rows = bench.rows
            try:
                for stack in chosen:
                    bench.run_stack(stack)
            except (ClusterError, subprocess.SubprocessError) as err:
                bench.say(f"stopped early: {err}")
    seconds = time.monotonic() - began
    rows = [row for row in rows if row.samples]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    png = args.output.with_suffix(".png")
    if rows:
        plot(rows, png)
    text = report(rows, args, seconds, png)
    args.output.write_text(text)
    print(text)
    print(f"failover: wrote {args.output} and {png}; everything torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
