"""ocf:kuth:haproxy's crash watcher inside a real Pacemaker + Corosync cluster (lab/cluster.py):
many reloads and planned moves never make it report a failure, and no watcher outlives the
resource, after a stop or after a start that failed.

Reloads and moves go through crm_resource (the same CIB changes as `crm resource param` and
`crm resource move`, without crmsh's start-up per round). KUTH_WATCHER_ROUNDS sets how many
of each (default 10, about a minute on 2 CPUs; run the issue's 100 by hand with
KUTH_WATCHER_ROUNDS=100). Set KUTH_CLUSTER_LOGS=DIR to keep every node's logs.
"""
from __future__ import annotations

import glob
import os

from lab import constraints, processes
from lab.cluster import Cluster
from lab.guide import haproxy_config
from lab.nodes import Node
from lab.topology import KUBE_PORT, VIP_NETWORK

from ocf_lib.helpers.watch import MARK

VIP = f"{VIP_NETWORK}.20"
VIP_RSC = "virtual-ip-resource"
HAPROXY = "haproxy-resource"
ROUNDS = int(os.environ.get("KUTH_WATCHER_ROUNDS", "10"))
FAILOVER_S = 30
HAPROXY_PRIMITIVE = f"""\
primitive {HAPROXY} ocf:kuth:haproxy \\
    op monitor interval=20 timeout=60 on-fail=restart
"""
# The guide's topology: haproxy follows the address, started after it.
GUIDE = f"""\
primitive {VIP_RSC} ocf:kuth:IPaddr2 \\
    params ip={VIP} nic=lan0 cidr_netmask=24 \\
    meta migration-threshold=2 \\
    op monitor interval=20 timeout=60 on-fail=restart
{HAPROXY_PRIMITIVE}rsc_defaults resource-stickiness=100
""" + constraints.guide(VIP_RSC, HAPROXY)
# A listener on the port each node's own HTTP server holds: `haproxy -c` accepts it, the
# bind at start fails.
TAKEN_PORT = """\
listen taken
    bind *:80
    mode tcp
    server kube-mast01 198.18.1.11:6443
"""


def watchers(node: Node) -> list[int]:
    """Processes of the node with the watcher's mark in their command line."""
    return [pid for pid in node.netns.pids() if MARK in processes.cmdline(pid)]


def watched(node: Node) -> set[str]:
    """The resources registered with the node's watcher (ocf_lib.helpers.watch)."""
    found = set()
    for registration in glob.glob(node.path("/run/resource-agents/kuth-watch-*.kuth-*")):
        if not registration.endswith(".tmp"):
            with open(registration) as text:
                found.update(line.split("=", 1)[1] for line in text.read().split("\n")
                             if line.startswith("resource="))
    return found


def watching(node: Node, resource: str) -> bool:
    """The node's one watcher runs and watches resource."""
    return len(watchers(node)) == 1 and resource in watched(node)


def start_guide(cluster: Cluster) -> str:
    """The guide's configuration, serving; returns the active node."""
    cluster.configure(GUIDE)
    [node] = cluster.wait_for(lambda: cluster.locate(VIP_RSC), FAILOVER_S, what="VIP started")
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == [node], FAILOVER_S,
                     what=f"haproxy started on {node}")
    cluster.settle()
    return node


def fail_counts(cluster: Cluster) -> dict[str, str]:
    """haproxy's and the VIP's fail-count on every node, as crm_failcount reports them."""
    counts = {}
    for resource in (VIP_RSC, HAPROXY):
        for name in cluster.names:
            out = cluster.view_node(None).run(["crm_failcount", "--query", "-r", resource,
                                               "-N", name]).stdout
            counts[f"{resource}@{name}"] = out.split("value=")[-1].strip()
    return counts


def assert_no_failure(cluster: Cluster) -> None:
    assert cluster.status().failures == []
    assert set(fail_counts(cluster).values()) == {"0"}, fail_counts(cluster)


def other(cluster: Cluster, name: str) -> str:
    return next(n for n in cluster.names if n != name)


def test_reloads_never_report_a_failure(cluster: Cluster) -> None:
    active = start_guide(cluster)
    node = cluster.view_node(None)
    for round_ in range(ROUNDS):
        node.run(["crm_resource", "--resource", HAPROXY, "--set-parameter", "reload_token",
                  "--parameter-value", f"round-{round_}"])
        cluster.settle()
    assert cluster.locate(HAPROXY) == [active]
    assert watching(cluster.node(active), HAPROXY)
    assert cluster.client.get(f"http://{VIP}:{KUBE_PORT}/", timeout=2).status == 200
    assert_no_failure(cluster)


def test_planned_moves_never_report_a_failure(cluster: Cluster) -> None:
    active = start_guide(cluster)
    node = cluster.view_node(None)
    for _ in range(ROUNDS):
        active = other(cluster, active)
        node.run(["crm_resource", "--move", "--resource", VIP_RSC, "--node", active])
        cluster.settle()
        assert cluster.locate(HAPROXY) == [active]
    node.run(["crm_resource", "--clear", "--resource", VIP_RSC])
    cluster.settle()
    assert [(len(watchers(n)), HAPROXY in watched(n)) for n in cluster.nodes] == [
        (int(n.name == active), n.name == active) for n in cluster.nodes]
    assert_no_failure(cluster)


def test_no_watcher_is_left_after_stop(cluster: Cluster) -> None:
    active = start_guide(cluster)
    assert watching(cluster.node(active), HAPROXY)
    cluster.crm("resource", "stop", VIP_RSC)  # haproxy stops first (order)
    cluster.settle()
    assert cluster.locate(HAPROXY) == [] and cluster.locate(VIP_RSC) == []
    assert {n.name: watchers(n) for n in cluster.nodes} == {n: [] for n in cluster.names}
    assert {n.name: watched(n) for n in cluster.nodes} == {n: set() for n in cluster.names}
    assert {n.name: n.pids("haproxy") for n in cluster.nodes} == {n: [] for n in cluster.names}


def test_no_watcher_is_left_after_a_failed_start(cluster: Cluster) -> None:
    cluster.write_haproxy_config(haproxy_config(extra=TAKEN_PORT))
    cluster.configure(HAPROXY_PRIMITIVE)
    cluster.wait_for(lambda: {f["node"] for f in cluster.status().failures
                              if f["op_key"].startswith(f"{HAPROXY}_start")} == set(
        cluster.names), FAILOVER_S, what="start failed on every node")
    cluster.settle()
    assert cluster.locate(HAPROXY) == []
    assert {n.name: watchers(n) for n in cluster.nodes} == {n: [] for n in cluster.names}
    assert {n.name: n.pids("haproxy") for n in cluster.nodes} == {n: [] for n in cluster.names}
