"""ocf:kuth:IPaddr2 inside a real Pacemaker + Corosync cluster (lab.cluster) with fencing
on (the lab's fence device, lab.fencing), as the README recommends: the VIP starts and
serves, moves when asked, when its node is cut off, crashes or its Pacemaker dies (that
node fenced first), is never on both sides of a split, and leaves a minority partition. A
parameter change is a reload that cuts no connection, unless it moves the address (a new
ip: a stop and a start; a new prefix: a reload that stops and starts it). Also: a harness
killed by SIGKILL, or failing half-way through its start, leaves nothing behind.

One cluster serves every test of a size (module scope; a test gets it reset: no resources,
cables in, ring whole); the 2-node tests run first, then the cluster is replaced by 3 nodes.
Set KUTH_CLUSTER_LOGS=DIR to keep every node's Pacemaker and Corosync logs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lab import REPO, processes
from lab.cluster import Cluster, Status
from lab.teardown import harness_prefix, lab_dir
from lab.topology import NODE_HTTP_PORT, VIP_NETWORK
from lab.traffic import Streams

pytestmark = pytest.mark.cluster  # its clusters are its own (clusters), not shared_cluster

VIP = f"{VIP_NETWORK}.20"
# The guide's primitive, with our provider, the test lan's nic and prefix.
VIP_CONFIG = f"""\
primitive vip ocf:kuth:IPaddr2 \\
    params ip={VIP} nic=lan0 cidr_netmask=24 \\
    meta migration-threshold=2 \\
    op monitor interval=20 timeout=60 on-fail=restart
rsc_defaults resource-stickiness=100
"""
# Corosync declares a node lost after token + consensus (1.2 x token), Pacemaker then acts.
FAILOVER_S = 30

class Clusters:
    """Keeps one cluster at a time, so two never compete for the 2 CPUs of CI."""

    def __init__(self) -> None:
        self.current: Cluster | None = None

    def get(self, nodes: int) -> Cluster:
        if self.current is not None and self.current.node_count != nodes:
            self.close()
        if self.current is None:
            cluster = Cluster(nodes=nodes, logs_dir=os.environ.get("KUTH_CLUSTER_LOGS"))
            self.current = cluster.__enter__()
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.teardown()
            self.current = None


@pytest.fixture(scope="module")
def clusters() -> Iterator[Clusters]:
    if os.geteuid() != 0 or not all(shutil.which(p) for p in ("corosync", "pacemakerd", "crm")):
        pytest.skip("needs root, corosync, pacemaker and crmsh")
    keeper = Clusters()
    try:
        yield keeper
    finally:
        keeper.close()


@pytest.fixture
def cluster(clusters: Clusters) -> Cluster:
    """A 2-node cluster, reset for this test."""
    return _fresh(clusters, 2)


@pytest.fixture
def cluster3(clusters: Clusters) -> Cluster:
    """A 3-node cluster with no-quorum-policy=stop, reset for this test."""
    return _fresh(clusters, 3)


def _fresh(clusters: Clusters, nodes: int) -> Cluster:
    cluster = clusters.get(nodes)
    cluster.reset()
    return cluster


def start_vip(cluster: Cluster) -> str:
    """Configure the VIP as the guide does and return the node it started on."""
    cluster.configure(VIP_CONFIG)
    [node] = cluster.wait_for(lambda: cluster.locate("vip"), FAILOVER_S, what="vip started")
    return node


def holders_of_vip(cluster: Cluster) -> list[str]:
    """The nodes that really carry the address on lan0, whatever Pacemaker believes."""
    return [n.name for n in cluster.nodes if n.has_address(VIP)]


def served_by(cluster: Cluster) -> str:
    """Which node answers HTTP on the VIP, seen from the client."""
    return cluster.client.get(f"http://{VIP}:{NODE_HTTP_PORT}/", timeout=1).body.strip()


def assert_served_by(cluster: Cluster, node: str) -> None:
    """The client reaches node through the VIP, at the latest once the gratuitous ARPs
    (sent in the background after start returned) updated its neighbour cache."""
    cluster.wait_for(lambda: served_by(cluster) == node, 5, what=f"client served by {node}")


def settled_on_one(cluster: Cluster, view: str | None = None) -> list[str]:
    """The VIP's node, once Pacemaker and the kernel agree it is active on exactly one."""
    located = cluster.locate("vip", view)
    return located if len(located) == 1 and holders_of_vip(cluster) == located else []


def other(cluster: Cluster, name: str) -> str:
    return next(n for n in cluster.names if n != name)


# -- reading crm_mon -------------------------------------------------------------------------

# crm_mon --output-as=xml of Pacemaker 2.1.5, trimmed: a primitive, a group whose second member
# is still starting, a clone on both nodes.
CRM_MON_XML = """<pacemaker-result api-version="2.25" request="crm_mon -1 --output-as=xml">
  <summary>
    <current_dc present="true" name="hapx-node02" id="2" with_quorum="true"/>
  </summary>
  <nodes>
    <node name="hapx-node01" id="1" online="true" is_dc="false"/>
    <node name="hapx-node02" id="2" online="true" is_dc="true"/>
  </nodes>
  <resources>
    <resource id="vip" resource_agent="ocf:kuth:IPaddr2" role="Started" active="true"
              failed="false" nodes_running_on="1"><node name="hapx-node01" id="1"/></resource>
    <group id="g" number_resources="2">
      <resource id="d1" role="Started" active="true" failed="false" nodes_running_on="1">
        <node name="hapx-node02" id="2"/></resource>
      <resource id="d2" role="Starting" active="true" failed="false" nodes_running_on="1">
        <node name="hapx-node02" id="2"/></resource>
    </group>
    <clone id="cl" multi_state="false" unique="false">
      <resource id="c" role="Started" active="true" nodes_running_on="1">
        <node name="hapx-node01" id="1"/></resource>
      <resource id="c" role="Started" active="true" nodes_running_on="1">
        <node name="hapx-node02" id="2"/></resource>
    </clone>
  </resources>
  <status code="0" message="OK"/>
</pacemaker-result>"""


def test_status_locates_primitives_group_members_and_clone_instances() -> None:
    status = Status(CRM_MON_XML)
    assert (status.dc, status.quorate) == ("hapx-node02", True)
    assert status.online == ["hapx-node01", "hapx-node02"]
    both = ["hapx-node01", "hapx-node02"]
    assert status.resources == {"vip": ["hapx-node01"], "d1": ["hapx-node02"], "d2": [],
                                "g": ["hapx-node02"], "c": both, "cl": both}


def test_status_of_a_node_that_lost_quorum_and_has_no_dc() -> None:
    status = Status(CRM_MON_XML.replace('present="true"', 'present="false"')
                    .replace('with_quorum="true"', 'with_quorum="false"'))
    assert (status.dc, status.quorate) == (None, False)


# -- 2 nodes ---------------------------------------------------------------------------------

def test_vip_starts_and_answers_ping_and_http_from_the_client(cluster: Cluster) -> None:
    active = start_vip(cluster)
    assert holders_of_vip(cluster) == [active]
    assert cluster.client.ping(VIP)
    assert_served_by(cluster, active)
    assert cluster.status().failures == []


def test_planned_move_moves_the_vip_and_removes_it_from_the_old_node(cluster: Cluster) -> None:
    active = start_vip(cluster)
    target = other(cluster, active)
    cluster.crm("resource", "move", "vip", target)
    cluster.wait_for(lambda: settled_on_one(cluster) == [target], FAILOVER_S,
                     what=f"vip moved to {target}")
    assert_served_by(cluster, target)
    cluster.crm("resource", "clear", "vip")
    cluster.settle()
    assert settled_on_one(cluster) == [target]  # stickiness keeps it where it was moved


def test_cutting_the_active_node_off_fences_it_and_moves_the_vip(cluster: Cluster) -> None:
    active = start_vip(cluster)
    survivor = other(cluster, active)
    cluster.link_down(active)
    cluster.wait_for(lambda: cluster.locate("vip", view=survivor) == [survivor], FAILOVER_S,
                     what=f"vip started on {survivor}")
    assert cluster.fenced() == [active]  # the cut node cannot reach the fence device
    assert holders_of_vip(cluster) == [survivor]  # its reboot took the address away
    assert_served_by(cluster, survivor)
    cluster.wait_booted(active)
    cluster.link_up(active)
    cluster.wait_for(lambda: len(cluster.status().online) == 2, FAILOVER_S, what="rejoined")
    assert cluster.wait_for(lambda: settled_on_one(cluster), FAILOVER_S) == [survivor]


def test_a_crashed_active_node_is_fenced_and_the_vip_moves(cluster: Cluster) -> None:
    active = start_vip(cluster)
    survivor = other(cluster, active)
    cluster.crash(active)
    cluster.wait_for(lambda: cluster.locate("vip", view=survivor) == [survivor], FAILOVER_S,
                     what=f"vip started on {survivor}")
    assert cluster.fenced() == [active]
    assert_served_by(cluster, survivor)
    cluster.wait_for(lambda: len(cluster.status().online) == 2, FAILOVER_S,
                     what=f"{active} rebooted by its fencing and back")
    assert cluster.wait_for(lambda: settled_on_one(cluster), FAILOVER_S) == [survivor]


def test_killing_pacemaker_on_the_active_node_fences_it_and_moves_the_vip(
        cluster: Cluster) -> None:
    active = start_vip(cluster)
    survivor = other(cluster, active)
    assert cluster.kill_pacemaker(active)
    cluster.wait_for(lambda: cluster.locate("vip", view=survivor) == [survivor], FAILOVER_S,
                     what=f"vip started on {survivor}")
    # Its address was left behind with the dead Pacemaker; fencing took it away first.
    assert cluster.fenced() == [active]
    assert holders_of_vip(cluster) == [survivor]
    cluster.wait_for(lambda: len(cluster.status().online) == 2, FAILOVER_S,
                     what=f"{active} rebooted by its fencing and back")
    assert cluster.wait_for(lambda: settled_on_one(cluster), FAILOVER_S) == [survivor]


def test_a_split_of_two_nodes_fences_one_and_never_serves_the_vip_from_both(
        cluster: Cluster) -> None:
    active = start_vip(cluster)
    lonely = other(cluster, active)
    cluster.partition([active], [lonely])  # the lan stays whole: both reach the fence device

    def one_fenced_and_settled() -> list[str]:
        assert len(holders_of_vip(cluster)) <= 1, "the VIP on both sides of the split"
        fenced = cluster.fenced()
        if not fenced:
            return []
        survivor = other(cluster, fenced[0])
        return settled_on_one(cluster, view=survivor)

    [holder] = cluster.wait_for(one_fenced_and_settled, FAILOVER_S, interval=0.1,
                                what="one node fenced, the vip on the other")
    assert len(cluster.fenced()) == 1  # the first request won, the loser's was refused
    cluster.heal()
    cluster.wait_for(lambda: len(cluster.status().online) == 2, FAILOVER_S, what="rejoined")
    assert cluster.wait_for(lambda: settled_on_one(cluster), FAILOVER_S) == [holder]
    assert_served_by(cluster, holder)


# -- parameter changes (crm resource param) ---------------------------------------------------

STREAMS = 4
PACEMAKER_LOG = "/var/log/pacemaker/pacemaker.log"


def changed_with_streams(cluster: Cluster, param: str, value: str,
                         address: str = VIP) -> tuple[Streams, float, str, list[str]]:
    """The VIP started, watch streams held through it, then `crm resource param vip set
    param value` and Pacemaker done with it. Returns the streams (stopped), when the change
    began, the VIP's node, and what that node's pacemaker.log got meanwhile (Pacemaker's
    lines and the agent's)."""
    active = start_vip(cluster)
    node = cluster.node(active)
    seen = len(node.read(PACEMAKER_LOG).splitlines())
    with Streams(cluster.client, VIP, NODE_HTTP_PORT, count=STREAMS, idle_timeout=120) as streams:
        cluster.wait_for(lambda: streams.flowing_since(time.monotonic() - 1), 10,
                         what="streams flowing")
        began = time.monotonic()
        cluster.crm("resource", "param", "vip", "set", param, value)
        cluster.settle()
        cluster.wait_for(lambda: node.has_address(address), 10, what=f"{address} on {active}")
        settled = time.monotonic()
        if address == VIP:  # every stream had a line since: uncut or reconnected
            cluster.wait_for(lambda: streams.flowing_since(settled), 10,
                             what="streams flowing after the change")
        else:
            time.sleep(1)  # their reconnections to the address gone fail: nothing to wait for
    return streams, began, active, node.read(PACEMAKER_LOG).splitlines()[seen:]


def agent_lines(log: list[str]) -> list[str]:
    """What the agent itself logged (IPaddr2(vip)[pid]: LEVEL: message), messages only."""
    return [line.split("]: ", 1)[1] for line in log if "IPaddr2(vip)[" in line]


def operations(log: list[str]) -> list[str]:
    """The operations of vip the controller reports, in order (start, stop, reload...),
    without the recurring monitor (cancelled and scheduled again on every change)."""
    found = [line.split("Result of ", 1)[1].split(" operation for vip")[0] for line in log
             if "Result of " in line and " operation for vip on " in line]
    return [operation for operation in found if operation != "monitor"]


def test_a_setting_changed_on_the_running_vip_is_a_reload_that_cuts_no_stream(
        cluster: Cluster) -> None:
    """arp_count changes nothing on the interface: Pacemaker reloads the agent (no stop,
    no start), the address stays where it is and no connection on it is cut (the
    heartbeat agent, without reload, is stopped and started)."""
    streams, began, active, log = changed_with_streams(cluster, "arp_count", "6")
    assert streams.cut(began, time.monotonic()) == 0, streams.cuts
    assert operations(log) == ["reload"], log
    assert agent_lines(log) == [f"INFO: reloaded {VIP}/24 on lan0: the address stays"]
    assert holders_of_vip(cluster) == [active]
    assert cluster.status().failures == []


def test_a_new_ip_moves_the_address_with_a_stop_and_a_start(cluster: Cluster) -> None:
    """ip is unique: its change is Pacemaker's restart, the stop with the old ip (its
    connections reset), the start with the new one."""
    moved_to = f"{VIP_NETWORK}.21"
    streams, began, active, log = changed_with_streams(cluster, "ip", moved_to, moved_to)
    assert operations(log) == ["stop", "start"], log
    assert streams.cut(began, time.monotonic()) == STREAMS
    assert {why for when, _, why in streams.cuts if when >= began} >= {"reset"}
    assert not any(n.has_address(VIP) for n in cluster.nodes)
    assert [n.name for n in cluster.nodes if n.has_address(moved_to)] == [active]
    assert cluster.status().failures == []


def test_a_new_prefix_is_a_reload_that_moves_the_address(cluster: Cluster) -> None:
    """cidr_netmask is not unique (two addresses on one nic must stay possible): Pacemaker
    reloads, and the reload stops the address as it was and starts it with the new prefix,
    on the same node, its connections reset as by a stop."""
    streams, began, active, log = changed_with_streams(cluster, "cidr_netmask", "25")
    assert operations(log) == ["reload"], log
    said = agent_lines(log)
    assert said[0].startswith("INFO: reload: cidr_netmask changed: moving"), said
    assert f"INFO: stopped {VIP}/24 on lan0" in said and f"INFO: started {VIP}/25 on lan0" in said
    assert streams.cut(began, time.monotonic()) == STREAMS
    assert f"{VIP}/25" in cluster.node(active).addresses()
    assert holders_of_vip(cluster) == [active]
    assert cluster.status().failures == []


# -- 3 nodes ---------------------------------------------------------------------------------

def test_the_majority_fences_the_minority_and_takes_the_vip(cluster3: Cluster) -> None:
    active = start_vip(cluster3)
    majority = [n for n in cluster3.names if n != active]
    cluster3.partition([active], majority)
    [moved] = cluster3.wait_for(
        lambda: [n for n in settled_on_one(cluster3, view=majority[0]) if n in majority],
        FAILOVER_S, what="vip started in the majority")
    assert cluster3.fenced() == [active]  # the minority, without quorum, fenced nobody
    cluster3.wait_booted(active)
    # Rebooted, still alone: no quorum (Pacemaker 3.0 may take a moment to answer at all).
    cluster3.wait_for(lambda: not cluster3.status(view=active).quorate, FAILOVER_S,
                      what=f"{active} up again, without quorum")
    cluster3.heal()
    assert cluster3.wait_for(lambda: settled_on_one(cluster3), FAILOVER_S) == [moved]


# -- the harness cleans up ----------------------------------------------------------------------

def _leftovers(prefix: str, pids: list[int]) -> list[str]:
    """Namespaces, their mounts, the nodes' disks and live (non-zombie) processes a harness
    left behind."""
    found = [f"netns {n}" for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                  text=True).stdout.split() if n.startswith(prefix)]
    if os.path.exists(lab_dir(prefix)):
        found.append(f"directory {lab_dir(prefix)}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if prefix in line]
    found += [f"process {pid}" for pid in pids if processes.alive(pid)]
    return found


KILLED_HARNESS = """
import time
from lab.cluster import Cluster
cluster = Cluster(nodes=2)
cluster.start()
pids = [p for n in cluster.nodes for p in n.netns.pids()]
print(cluster.prefix, *pids, flush=True)
time.sleep(600)
"""


def test_a_harness_killed_with_sigkill_leaves_nothing_behind(clusters: Clusters) -> None:
    clusters.close()  # one cluster at a time
    harness = subprocess.Popen([sys.executable, "-c", KILLED_HARNESS], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    try:
        prefix, *pids = harness.stdout.readline().split()  # type: ignore[union-attr]
    finally:
        harness.kill()
        harness.wait()
    assert prefix == harness_prefix(harness.pid, 0)
    assert len(pids) > 10  # holders, corosync, pacemaker's daemons, servers
    deadline = time.monotonic() + 20
    while _leftovers(prefix, [int(p) for p in pids]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(prefix, [int(p) for p in pids]) == []


class CorosyncOnlyCluster(Cluster):
    """Fails where Pacemaker would start: Corosync runs, the nodes are half made."""

    def start_pacemaker(self, name: str) -> None:
        self.running = [pid for node in self.nodes for pid in node.netns.pids()]
        raise RuntimeError("injected failure")


def test_a_start_that_fails_half_way_leaves_nothing_behind(clusters: Clusters) -> None:
    clusters.close()
    cluster = CorosyncOnlyCluster(nodes=2)
    with pytest.raises(RuntimeError, match="injected failure"):
        with cluster:
            pass
    assert cluster.running
    assert _leftovers(cluster.prefix, cluster.running) == []
