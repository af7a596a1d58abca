"""The project's demo (`make demo`): the packaged agents keep a VIP and HAProxy available in a
real Pacemaker + Corosync cluster on this machine, while a client sends traffic through the
VIP (short requests, and long-lived watch streams as Kubernetes clients hold them) and the
demo moves the resources, applies a haproxy.cfg with a typo (and then the fixed one), kills
HAProxy, crashes the active node and cuts a node off. Fencing
is on, as the README recommends: the lab's fence device powers a lost node off and on again.

Run as root after `make deb` (make demo does both). The cluster is the lab's (lab/cluster.py): each
node is a set of namespaces with a fresh /run at each boot and its own /etc/haproxy,
/var/lib/pacemaker... on a disk of its own, on switches of their own, and a power switch on
the lan (lab/fencing.py) is its fence device; every address is in 198.18.0.0/15, inside
those namespaces. The .deb is
unpacked into a temporary directory (`dpkg-deb -x`) and laid over each node's /usr, so the
nodes run the package's files where apt would install them, while the machine's /usr and
/usr/lib/ocf stay untouched. Teardown leaves no namespace, process, mount or file behind.

    python3 -m demo.demo [--nodes 2|3] [--keep] [--deb PATH] [--interval MS]

KUTH_CLUSTER_LOGS=DIR keeps every node's Pacemaker and Corosync logs.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from lab import REPO, constraints
from lab.apiserver import WATCH_INTERVAL
from lab.cluster import Cluster
from lab.command import ClusterError
from lab.guide import haproxy_config
from lab.topology import KUBE_PORT, STATS_AUTH, STATS_PORT, VIP_NETWORK
from lab.traffic import Streams, Traffic

VIP = f"{VIP_NETWORK}.20"
TYPO = "roundrobbin"
TYPO_SECTION = f"frontend typo\n    balance {TYPO}\n"
VIP_RSC = "virtual-ip-resource"
HAPROXY_RSC = "haproxy-resource"
# The guide's configuration, with the provider kuth and the lab's interface and address.
GUIDE = f"""\
primitive {VIP_RSC} ocf:kuth:IPaddr2 \\
    params ip="{VIP}" nic=lan0 cidr_netmask=24 \\
    meta migration-threshold=2 \\
    op monitor interval=20 timeout=60 on-fail=restart
primitive {HAPROXY_RSC} ocf:kuth:haproxy \\
    op monitor interval=20 timeout=60 on-fail=restart
rsc_defaults resource-stickiness=100
""" + constraints.guide(VIP_RSC, HAPROXY_RSC)
WAIT_S = 60          # the longest any event may take to recover
STEADY_S = 1.0       # traffic served this long after recovery closes an event's window
STREAMS = 4          # long-lived watch streams held through the VIP


class Demo:
    def __init__(self, cluster: Cluster, traffic_interval: float, began: float) -> None:
        self.cluster = cluster
        self.began = began
        self.traffic = Traffic(cluster.client, f"http://{VIP}:{KUBE_PORT}/",
                               interval=traffic_interval, timeout=0.5)
        self.streams = Streams(cluster.client, VIP, KUBE_PORT, count=STREAMS)
        self.events: list[tuple[str, float, float, str]] = []  # name, since, until, ended on

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f}s] {text}", flush=True)

    def shell(self, argv: list[str], view: str | None = None) -> None:
        """Show a command run on node view (default: the first reachable node, see
        Cluster.view_node) and its output, as an operator there would see it."""
        node = self.cluster.view_node(view)
        print(f"\n  {node.name}# {' '.join(argv)}")
        out = node.run(argv).stdout
        print("".join(f"  {line}\n" for line in out.rstrip().splitlines()), flush=True)

    def active(self) -> str:
        """The node running both resources, once they agree on one."""
        def together() -> str:
            vip, haproxy = self.cluster.locate(VIP_RSC), self.cluster.locate(HAPROXY_RSC)
            return vip[0] if len(vip) == 1 and vip == haproxy else ""
        return self.cluster.wait_for(together, WAIT_S, what="VIP and haproxy on one node")

    # -- the story

    def configure(self) -> str:
        self.say("Applying the guide's configuration with crmsh (crm configure load update -):")
        print("".join(f"    {line}\n" for line in GUIDE.splitlines()), flush=True)
        self.cluster.configure(GUIDE)
        node = self.active()
        self.cluster.wait_for(self.serving, 10, what="apiservers through the VIP")
        self.say(f"Both resources started on {node}.")
        self.shell(["crm_mon", "-1", "-A"])
        return node

    def serving(self) -> str:
        return self.cluster.client.get(f"http://{VIP}:{KUBE_PORT}/", timeout=1).body.strip()

    def stats_page(self) -> None:
        url = f"http://{VIP}:{STATS_PORT}/"
        page = self.cluster.client.get(url, auth=STATS_AUTH)
        self.say(f"HAProxy stats page through the VIP: GET {url} (admin/admin) -> HTTP "
                 f"{page.status}, {len(page.body)} bytes of HTML; its CSV form (;csv):")
        csv = self.cluster.client.get(f"{url};csv", auth=STATS_AUTH).body
        rows = [line.split(",") for line in csv.splitlines() if line.strip()]
        header = rows[0][0].lstrip("# ").split(",") + rows[0][1:]
        for row in rows[1:]:
            fields = dict(zip(header, row))
            print(f"    {fields['pxname']:<16} {fields['svname']:<12} {fields['status']:<6} "
                  f"{fields.get('check_status', '')}")
        denied = self.cluster.client.get(url).status
        self.say(f"Without the password: HTTP {denied}.")
        answers = sorted({self.serving() for _ in range(6)})
        self.say(f"GET http://{VIP}:{KUBE_PORT}/ through HAProxy, 6 times, answered by "
                 f"{', '.join(answers)} (round robin over the kube-apiserver stand-ins).")

    def event(self, name: str, act: Callable[[], str], recovered: Callable[[], bool]) -> None:
        """Run act (it returns what it did), wait until recovered() and the client is served
        again, then record the window for the report."""
        since = time.monotonic()
        self.say(f"EVENT {name}: {act()}")
        self.cluster.wait_for(recovered, WAIT_S, interval=0.1, what=f"recovery from {name}")
        done = time.monotonic()
        self.cluster.wait_for(lambda: self.traffic.served_since(done), WAIT_S, interval=0.05,
                              what="the client served again")
        self.cluster.wait_for(lambda: self.streams.flowing_since(done), WAIT_S, interval=0.05,
                              what="every stream receiving again")
        time.sleep(STEADY_S)
        until = time.monotonic()
        time.sleep(self.traffic.timeout)  # the last requests get their answer
        outage = self.traffic.outage(since, until)
        ended = self.where()
        self.events.append((name, since, until, ended))
        self.say(f"  recovered: longest time without an answer {outage.longest_gap:.2f} s, "
                 f"{outage.failed} of {outage.total} requests failed; "
                 f"{self.streams.cut(since, until)} of {STREAMS} streams cut, the longest "
                 f"without data {self.streams.stall(since, until):.2f} s; {ended}")

    def where(self) -> str:
        status = self.cluster.status()
        return (f"{VIP_RSC} on {','.join(status.resources.get(VIP_RSC, [])) or 'nowhere'}, "
                f"{HAPROXY_RSC} on {','.join(status.resources.get(HAPROXY_RSC, [])) or 'nowhere'}")

    def planned_move(self) -> None:
        source = self.active()
        target = next(n for n in self.cluster.names if n != source)

        def move() -> str:
            self.cluster.crm("resource", "move", VIP_RSC, target)
            return f"crm resource move {VIP_RSC} {target} (haproxy follows: colocation)"
        self.event("planned move", move, lambda: self.on(target))
        self.cluster.crm("resource", "clear", VIP_RSC)
        self.say(f"crm resource clear {VIP_RSC}: the move's constraint is gone, "
                 f"stickiness keeps the resources on {target}.")

    def config_typo(self) -> None:
        """A typo in haproxy.cfg, applied as the README says: haproxy refuses it, keeps
        serving the last configuration it accepted, and crm_mon shows it degraded with
        haproxy's words; the fixed file, applied the same way, clears that."""
        node = self.active()

        def apply(text: str, token: str) -> str:
            self.cluster.write_haproxy_config(text)
            self.cluster.crm("resource", "param", HAPROXY_RSC, "set", "reload_token", token)
            return f"crm resource param {HAPROXY_RSC} set reload_token {token}"

        def degraded() -> bool:
            return any(f.get("exitcode") == "190" for f in self.cluster.status().failures)

        def cleared() -> bool:
            refused = f"{HAPROXY_RSC}-config-refused"
            return not any(refused in a for a in self.cluster.status().attributes.values())

        self.say(f"haproxy.cfg edited on every node with a typo: `balance {TYPO}` in a new "
                 f"frontend.")
        self.event("haproxy.cfg typo", lambda: apply(haproxy_config(extra=TYPO_SECTION),
                                                     "typo-1"), degraded)
        self.say(f"  haproxy on {node} kept its running configuration; crm_mon shows it "
                 f"degraded, with haproxy's first error:")
        self.shell(["crm_mon", "-1", "-A"])
        self.event("haproxy.cfg fixed", lambda: apply(haproxy_config(), "fixed-1"), cleared)

    def kill_haproxy(self) -> None:
        node = self.active()
        killed = self.cluster.node(node).pids("haproxy")

        def kill() -> str:
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            return f"kill -9 {' '.join(map(str, killed))} (haproxy master and worker on {node})"

        def restarted() -> bool:
            now = self.cluster.node(node).pids("haproxy")
            return bool(now) and not set(killed) & set(now) and self.on(node)
        self.event("haproxy killed", kill, restarted)

    def lose_active(self) -> tuple[str, list[str]]:
        """The node to lose (the active one) and the survivors, once the address watcher on
        it has handed the streams over to them (every 2 s, connections seen twice), so their
        new owner can wake them."""
        lost = self.active()
        survivors = [n for n in self.cluster.names if n != lost]
        for name in survivors:
            self.cluster.wait_for(lambda: len(self.cluster.handed_over(VIP_RSC, name))
                                  == STREAMS, WAIT_S, what=f"the streams handed over to {name}")
        self.say(f"The address watcher on {lost} has handed the {STREAMS} streams over to the "
                 f"other nodes (node attribute kuth-{VIP_RSC}-connections).")
        return lost, survivors

    def node_crash(self) -> None:
        lost, survivors = self.lose_active()

        def crash() -> str:
            self.cluster.crash(lost)
            return f"{lost} crashed (every process of it killed at once, as a power loss)"

        def back() -> bool:
            return (self.on_one_of(survivors) and
                    self.cluster.status().online == self.cluster.names)
        self.event("node crash", crash, lambda: self.on_one_of(survivors, view=survivors[0]))
        self.cluster.wait_for(back, WAIT_S, what=f"{lost} back")
        self.say(f"  {', '.join(survivors)} fenced {lost} (stonith:fence_kuth_lab, reboot) "
                 f"before taking its resources; {lost} booted again and rejoined. The fencing "
                 f"history, asked on {survivors[0]}, which saw it ({lost}'s fencer started "
                 f"afresh at its boot):")
        self.shell(["stonith_admin", "--history", lost], view=survivors[0])

    def node_down(self) -> None:
        lost, survivors = self.lose_active()

        def cut() -> str:
            self.cluster.link_down(lost)
            return f"cables of {lost} pulled (ring and lan links down)"
        self.event("node link down", cut, lambda: self.on_one_of(survivors, view=survivors[0]))

        def plug() -> str:
            self.cluster.wait_booted(lost)
            self.cluster.link_up(lost)
            return f"cables of {lost} plugged back"

        def rejoined() -> bool:
            status = self.cluster.status()
            return (status.online == self.cluster.names and
                    len(status.resources.get(VIP_RSC, [])) == 1 and
                    status.resources.get(VIP_RSC) == status.resources.get(HAPROXY_RSC) and
                    sum(n.has_address(VIP) for n in self.cluster.nodes) == 1)
        self.event("node back", plug, rejoined)
        self.say(f"  (cut off, {lost} could not reach the fence device, the others could: they "
                 f"fenced it before taking over; it rebooted without its cables, stayed without "
                 f"quorum and ran nothing, and joined when they were back)")

    def on(self, node: str, view: str | None = None) -> bool:
        return self.on_one_of([node], view)

    def on_one_of(self, nodes: list[str], view: str | None = None) -> bool:
        status = self.cluster.status(view)
        vip, haproxy = status.resources.get(VIP_RSC, []), status.resources.get(HAPROXY_RSC, [])
        return len(vip) == 1 and vip == haproxy and vip[0] in nodes

    def report(self) -> None:
        print(f"\nReport: the client sent GET http://{VIP}:{KUBE_PORT}/ every "
              f"{round(self.traffic.interval * 1000)} ms through the VIP, and held {STREAMS} "
              f"watch streams (GET /watch: a line every {WATCH_INTERVAL} s)\n")
        print(f"  {'event':<18} {'outage (s)':>10} {'failed':>7} {'requests':>9} "
              f"{'streams cut':>12} {'stream stall (s)':>17}   resources afterwards")
        for name, since, until, ended in self.events:
            outage = self.traffic.outage(since, until)
            print(f"  {name:<18} {outage.longest_gap:>10.2f} {outage.failed:>7} "
                  f"{outage.total:>9} {self.streams.cut(since, until):>12} "
                  f"{self.streams.stall(since, until):>17.2f}   {ended}")
        ok = sum(1 for _, good in self.traffic.results if good)
        print(f"\n  In all: {ok} of {len(self.traffic.results)} requests answered. Outage: the "
              f"longest time without a successful request, from the event until {STEADY_S:.0f} s "
              f"of traffic after recovery. Stream stall: the longest time a stream went without "
              f"data in that window (reconnection included; a stream whose connection died "
              f"silently waits for its client's {self.streams.idle_timeout:.0f} s idle timeout)."
              f"\n  Where the resources ended: {self.where()}\n", flush=True)


def unpack(deb: str) -> str:
    """The package's files in a new temporary directory."""
    root = tempfile.mkdtemp(prefix="kuth-demo-")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    return root


def built_deb() -> str:
    """The package `make deb` left in dist/, the pattern if none: tools/build-deb keeps only
    its last, whose version changes with every commit between releases (NEWS.md)."""
    pattern = os.path.join(REPO, "dist", "kuth-resource-agents_*_all.deb")
    return next(iter(glob.glob(pattern)), pattern)


def package_version(deb: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True, capture_output=True,
                          text=True).stdout.strip()


def keep(cluster: Cluster) -> None:
    """Leave the cluster up until Enter or Ctrl-C; say how to look around meanwhile."""
    print("The cluster stays up. In another terminal, as root, enter a node:")
    for node in cluster.nodes:
        print(f"    nsenter -t {node.pid} -m -u -n env HOME=/run/home bash      # {node.name}")
    print(f"""(HOME on the node's /run keeps crmsh's history off the machine's disk), then, for
instance: crm_mon -A, crm configure show, crm resource move {VIP_RSC} <node>,
ip addr show lan0, curl -u admin:admin http://{VIP}:{STATS_PORT}/
The namespaces are `ip netns list | grep {cluster.prefix}`; the client is
{cluster.prefix}client (ip netns exec {cluster.prefix}client curl http://{VIP}:{KUBE_PORT}/).
Press Enter here (or Ctrl-C) to tear everything down; if this process dies, its reaper does it.""",
          flush=True)
    try:
        if sys.stdin.isatty():
            sys.stdin.readline()
        else:  # no terminal to press Enter on: wait for Ctrl-C or `kill PID`
            print(f"(stdin is no terminal: waiting for SIGINT or SIGTERM, pid {os.getpid()})",
                  flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, choices=(2, 3), default=2,
                        help="cluster size (3: no-quorum-policy=stop)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the cluster up at the end, to explore it")
    parser.add_argument("--deb", default=built_deb(),
                        help="the package to run (default: the one `make deb` built)")
    parser.add_argument("--interval", type=int, default=20, metavar="MS",
                        help="milliseconds between the client's requests (default 20)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: the cluster lives in network namespaces")
    if not os.path.exists(args.deb):
        parser.error(f"{args.deb} does not exist: run `make deb` first (make demo does)")
    began = time.monotonic()
    root = unpack(args.deb)
    try:
        print(f"Unpacked {os.path.relpath(args.deb, REPO)} (version {package_version(args.deb)}) "
              f"into {root}; the nodes see its usr/ laid over /usr, the machine's /usr is "
              f"not touched.", flush=True)
        print(f"Starting a {args.nodes}-node cluster (Corosync knet, token 1000 ms, Pacemaker, "
              f"fencing on) in network namespaces...", flush=True)
        with Cluster(nodes=args.nodes, agents_dir=None, package_root=root,
                     logs_dir=os.environ.get("KUTH_CLUSTER_LOGS")) as cluster:
            run(cluster, args, began)
            if args.keep:
                keep(cluster)
            print("Tearing down: every namespace, process and mount of the demo goes.",
                  flush=True)
    except ClusterError as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything was torn down", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Done in {time.monotonic() - began:.0f} s.")
    return 0


def run(cluster: Cluster, args: argparse.Namespace, began: float) -> None:
    demo = Demo(cluster, args.interval / 1000, began)
    status = cluster.status()
    demo.say(f"Cluster up in {cluster.started_in:.1f} s: {' '.join(status.online)} online, "
             f"DC {status.dc}; kube-apiserver stand-ins on {VIP_NETWORK}.11-13:{KUBE_PORT}, "
             f"client {cluster.client.netns.name} on {VIP_NETWORK}.100.")
    demo.shell(["ls", "-l", "/usr/lib/ocf/resource.d/kuth/"])
    demo.say("The fence device (stonith-enabled=true), preset in the CIB:")
    demo.shell(["crm", "configure", "show", "fence-lab"])
    demo.configure()
    demo.stats_page()
    demo.say(f"Client traffic starts: GET http://{VIP}:{KUBE_PORT}/ every {args.interval} ms, "
             f"and {STREAMS} watch streams (GET /watch) held open.")
    with demo.traffic, demo.streams:
        time.sleep(2)
        demo.planned_move()
        demo.config_typo()
        demo.kill_haproxy()
        demo.node_crash()
        demo.node_down()
        time.sleep(1)
    demo.shell(["crm_mon", "-1", "-A"])
    demo.report()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
