"""ocf:kuth:haproxy with ocf:kuth:IPaddr2 inside a real Pacemaker + Corosync cluster
(lab/cluster.py, fencing on), configured with crmsh as the guide does: the stats page and the
kube-apiserver stand-ins answer through the VIP, a killed haproxy is recovered, an edited
haproxy.cfg is reloaded through Pacemaker without moving the VIP or dropping a connection,
backend health shows as node attributes, and in the clone topology a failover moves only the
address.

Every node has the guide's haproxy.cfg (cluster.haproxy_config) in its own /etc/haproxy
and a fresh /run without /run/haproxy. One 2-node cluster serves the module, reset for each
test. Set KUTH_CLUSTER_LOGS=DIR to keep every node's Pacemaker and Corosync logs.
"""
from __future__ import annotations

import os
import signal
import time

from ocf_lib.adapters import process

from lab import constraints
from lab.cluster import Cluster
from lab.guide import haproxy_config
from lab.nodes import NODE_ENV, OCF_PROVIDERS
from lab.topology import KUBE_MASTERS, KUBE_PORT, STATS_AUTH, STATS_PORT, VIP_NETWORK
from lab.traffic import Streams

VIP = f"{VIP_NETWORK}.20"
HAPROXY = "haproxy-resource"
# Corosync declares a node lost after token + consensus, Pacemaker then acts.
FAILOVER_S = 30
VIP_PRIMITIVE = f"""\
primitive virtual-ip-resource ocf:kuth:IPaddr2 \\
    params ip={VIP} nic=lan0 cidr_netmask=24 \\
    meta migration-threshold=2 \\
    op monitor interval=20 timeout=60 on-fail=restart
rsc_defaults resource-stickiness=100
"""


def haproxy_primitive(interval: int) -> str:
    return (f"primitive {HAPROXY} ocf:kuth:haproxy \\\n"
            f"    op monitor interval={interval} timeout=60 on-fail=restart\n")


def guide(interval: int = 20) -> str:
    """The guide's topology: haproxy follows the address, started after it."""
    return (VIP_PRIMITIVE + haproxy_primitive(interval)
            + constraints.guide("virtual-ip-resource", HAPROXY))


def clone_topology(interval: int = 20) -> str:
    """haproxy on every node, the address where haproxy is healthy."""
    return (VIP_PRIMITIVE + haproxy_primitive(interval)
            + constraints.clone("virtual-ip-resource", HAPROXY))


def start(cluster: Cluster, config: str) -> str:
    """Apply config; return the node serving the VIP once haproxy answers there."""
    cluster.configure(config)
    [node] = cluster.wait_for(lambda: cluster.locate("virtual-ip-resource"), FAILOVER_S,
                              what="VIP started")
    cluster.wait_for(lambda: node in cluster.locate(HAPROXY), FAILOVER_S,
                     what=f"haproxy started on {node}")
    cluster.wait_for(lambda: apiserver_answer(cluster), 5, what="apiservers through the VIP")
    return node


def apiserver_answer(cluster: Cluster, address: str = VIP, port: int = KUBE_PORT) -> str:
    """The stand-in that answered a GET through haproxy at address:port."""
    return cluster.client.get(f"http://{address}:{port}/", timeout=1).body.strip()


def stats_page(cluster: Cluster, auth: tuple[str, str] | None = STATS_AUTH) -> int:
    return cluster.client.get(f"http://{VIP}:{STATS_PORT}/", timeout=2, auth=auth).status


def haproxy_pids(cluster: Cluster, name: str) -> list[int]:
    """haproxy processes (master and workers) running in the node: the binary's, not a run
    of the agent, whose command name is haproxy too."""
    return sorted(pid for pid in cluster.node(name).pids("haproxy")
                  if (info := process.process_info(pid)) and info.exe == "/usr/sbin/haproxy")


def haproxy_master(cluster: Cluster, name: str) -> int:
    """The master: the node's haproxy process whose child is an haproxy (the worker); a
    check (`haproxy -c`) the agent runs at that moment has none."""
    parents = [info.ppid for info in map(process.process_info, haproxy_pids(cluster, name))
               if info]
    [master] = set(parents) & set(haproxy_pids(cluster, name))
    return master


def backends_up(cluster: Cluster, name: str) -> str | None:
    """The node attribute haproxy publishes for the guide's backend, as crm_mon shows it."""
    return cluster.status().attributes.get(name, {}).get(f"{HAPROXY}-kube-apiserver-up")


def other(cluster: Cluster, name: str) -> str:
    return next(n for n in cluster.names if n != name)


def test_the_guides_configuration_serves_stats_and_apiservers_through_the_vip(
        cluster: Cluster) -> None:
    active = start(cluster, guide())
    assert cluster.node(active).has_address(VIP)
    assert len(haproxy_pids(cluster, active)) == 2, "one master, one worker"
    assert haproxy_pids(cluster, other(cluster, active)) == []
    assert stats_page(cluster) == 200
    assert stats_page(cluster, auth=None) == 401
    answers = {apiserver_answer(cluster) for _ in range(6)}
    assert answers == set(KUBE_MASTERS), "round robin over the three stand-ins"
    assert cluster.status().failures == []


def test_a_node_without_haproxy_probes_not_running_while_another_node_runs_it(
        cluster: Cluster) -> None:
    """The nodes share the machine's /proc: the other node's haproxy, same binary and same
    configuration path, is not this node's."""
    active = start(cluster, guide())
    probe = cluster.node(other(cluster, active)).run(
        [f"{OCF_PROVIDERS}/kuth/haproxy", "monitor"], check=False,
        env={**NODE_ENV, "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": HAPROXY,
             "OCF_RESKEY_CRM_meta_interval": "0"})
    assert (probe.returncode, probe.stderr) == (7, "")


def test_killed_haproxy_is_restarted_in_place_by_pacemaker(cluster: Cluster) -> None:
    active = start(cluster, guide(interval=2))
    killed = haproxy_pids(cluster, active)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    cluster.wait_for(lambda: set(killed).isdisjoint(haproxy_pids(cluster, active))
                     and apiserver_answer(cluster), 15, what="haproxy serving again")
    assert cluster.locate(HAPROXY) == [active]
    assert cluster.locate("virtual-ip-resource") == [active]
    assert len(haproxy_pids(cluster, active)) == 2
    failures = cluster.status().failures
    assert failures and all(f["op_key"].startswith(f"{HAPROXY}_") and f["node"] == active
                            for f in failures), failures


EXTRA_LISTENER = f"""\
listen reload-check
    bind *:7443
    mode tcp
    server kube-mast01 {KUBE_MASTERS['kube-mast01']}:{KUBE_PORT}
"""


def test_reload_through_pacemaker_applies_the_edit_and_keeps_vip_and_connections(
        cluster: Cluster) -> None:
    active = start(cluster, guide())
    master = haproxy_master(cluster, active)
    held = cluster.client.connect(VIP, KUBE_PORT)
    try:
        cluster.write_haproxy_config(haproxy_config(extra=EXTRA_LISTENER))
        # exactly as README's "Applying an edited haproxy.cfg" says
        cluster.crm("resource", "param", HAPROXY, "set", "reload_token", "edited-1")
        assert cluster.wait_for(lambda: apiserver_answer(cluster, port=7443), 20,
                                what="the new listener answering") == "kube-mast01"
        held.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert held.recv(200).startswith(b"HTTP/1.0 200"), "the open connection still works"
    finally:
        held.close()
    cluster.settle()
    assert cluster.locate("virtual-ip-resource") == [active]
    assert cluster.node(active).has_address(VIP)
    assert haproxy_master(cluster, active) == master, "reloaded, not restarted"
    assert cluster.status().failures == []


def test_backend_health_attributes_follow_a_stand_in_going_down_and_up(
        cluster: Cluster) -> None:
    active = start(cluster, guide(interval=2))
    cluster.wait_for(lambda: backends_up(cluster, active) == "3", 15, what="3 servers UP")
    cluster.stop_kube_master("kube-mast02")
    cluster.wait_for(lambda: backends_up(cluster, active) == "2", 15, what="2 servers UP")
    shown = cluster.view_node(None).run(["crm_mon", "-1", "-A"]).stdout
    assert f"{HAPROXY}-kube-apiserver-up\t:2\n" in shown.replace(" ", "")
    cluster.start_kube_master("kube-mast02")
    cluster.wait_for(lambda: backends_up(cluster, active) == "3", 15, what="3 servers UP again")
    assert cluster.status().failures == []


def test_clone_topology_failover_moves_only_the_address(cluster: Cluster) -> None:
    active = start(cluster, clone_topology())
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == cluster.names, FAILOVER_S,
                     what="haproxy on every node")
    before = {name: haproxy_pids(cluster, name) for name in cluster.names}
    assert all(len(pids) == 2 for pids in before.values())
    survivor = other(cluster, active)
    cluster.link_down(active)
    cluster.wait_for(lambda: cluster.locate("virtual-ip-resource", view=survivor) == [survivor],
                     FAILOVER_S, what=f"VIP on {survivor}")
    cluster.wait_for(lambda: apiserver_answer(cluster), 5, what="apiservers through the VIP")
    assert stats_page(cluster) == 200
    assert haproxy_pids(cluster, survivor) == before[survivor], "haproxy kept running"
    assert cluster.fenced() == [active]
    cluster.wait_booted(active)
    cluster.link_up(active)
    cluster.wait_for(lambda: len(cluster.status().online) == 2, FAILOVER_S, what="rejoined")
    cluster.settle()
    assert cluster.locate(HAPROXY) == cluster.names
    [final] = cluster.locate("virtual-ip-resource")
    assert [n.name for n in cluster.nodes if n.has_address(VIP)] == [final]
    assert haproxy_pids(cluster, survivor) == before[survivor]


def test_clone_topology_standby_stops_haproxy_only_after_the_address_moved(
        cluster: Cluster) -> None:
    """When both leave a node, haproxy serves the clients until the address is gone (stopped
    first, it would refuse them while the address is still here), and stops only once the
    address has started on the other node: its stop does not run beside that start."""
    active = start(cluster, clone_topology())
    survivor = other(cluster, active)
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == cluster.names, FAILOVER_S,
                     what="haproxy on every node")
    log = "/var/log/pacemaker/pacemaker.log"
    seen = {name: len(cluster.node(name).read(log).splitlines()) for name in cluster.names}
    cluster.crm("node", "standby", active)
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == [survivor], FAILOVER_S,
                     what=f"haproxy stopped on {active}")
    lines = cluster.node(active).read(log).splitlines()[seen[active]:]
    vip_stopped = next(n for n, line in enumerate(lines)
                       if "Result of stop operation for virtual-ip-resource on" in line)
    haproxy_stopping = next(n for n, line in enumerate(lines)
                            if f"executing - rsc:{HAPROXY} action:stop" in line)
    assert vip_stopped < haproxy_stopping
    vip_started = next(line for line in cluster.node(survivor).read(log).splitlines()[
        seen[survivor]:] if "Result of start operation for virtual-ip-resource on" in line)
    assert logged_at(vip_started) <= logged_at(lines[haproxy_stopping])
    assert cluster.locate("virtual-ip-resource") == [survivor]


def logged_at(line: str) -> str:
    """The time of a pacemaker.log line ("Dec 03 14:23:01.055 ..."), as comparable text:
    the nodes of the lab share one clock."""
    return line.split()[2]


# -- long-lived streams (Kubernetes watches) through the VIP ---------------------------------

STREAMS = 4


def moved_with_streams(cluster: Cluster, config: str) -> tuple[Streams, float, float]:
    """Watch streams through the VIP, then a planned move of the VIP; returns the streams
    (still running), when the move began and when every stream flowed again. A stream left on
    a dead connection would stay silent: its idle timeout is longer than the wait."""
    active = start(cluster, config)
    target = other(cluster, active)
    streams = Streams(cluster.client, VIP, KUBE_PORT, count=STREAMS, idle_timeout=120)
    streams.start()
    try:
        cluster.wait_for(lambda: streams.flowing_since(time.monotonic() - 1), 10,
                         what="streams flowing")
        began = time.monotonic()
        cluster.crm("resource", "move", "virtual-ip-resource", target)
        cluster.wait_for(lambda: cluster.locate("virtual-ip-resource") == [target], FAILOVER_S,
                         what=f"VIP on {target}")
        moved = time.monotonic()  # the old node has let the address go
        cluster.wait_for(lambda: streams.flowing_since(moved), FAILOVER_S,
                         what="every stream flowing again after the move")
        resumed = time.monotonic()
    except BaseException:
        streams.stop()
        raise
    cluster.crm("resource", "clear", "virtual-ip-resource")
    return streams, began, resumed


def test_a_planned_move_cuts_every_stream_once_and_each_reconnects(cluster: Cluster) -> None:
    """The guide's topology: haproxy stops (at once, stop_grace=0), then the address moves;
    every watch is cut once and resumes through the new node."""
    streams, began, resumed = moved_with_streams(cluster, guide())
    streams.stop()
    assert streams.cut(began, resumed) == STREAMS
    assert cluster.status().failures == []


def test_in_the_clone_topology_the_streams_are_reset_when_the_address_leaves(
        cluster: Cluster) -> None:
    """haproxy stays on the old node while the address moves: without the reset the old
    node's connections would stay open and the idle watches would wait for their timeout."""
    streams, began, resumed = moved_with_streams(cluster, clone_topology())
    streams.stop()
    reasons = {why for when, _, why in streams.cuts if began <= when <= resumed}
    assert (streams.cut(began, resumed), reasons) == (STREAMS, {"reset"})
    assert cluster.status().failures == []


def test_after_node_loss_the_new_owner_tickles_the_lost_nodes_streams(cluster: Cluster) -> None:
    """The lost node's clients hear nothing from it: its address watcher handed their
    connections over to the other node, whose start tickles them into a reset, and they
    reconnect long before their own timeout (120 s here)."""
    active = start(cluster, guide())
    survivor = other(cluster, active)
    with Streams(cluster.client, VIP, KUBE_PORT, count=STREAMS, idle_timeout=120) as streams:
        cluster.wait_for(lambda: streams.flowing_since(time.monotonic() - 1), 10,
                         what="streams flowing")
        cluster.wait_for(lambda: len(cluster.handed_over("virtual-ip-resource", survivor))
                         == STREAMS, 20, what="the streams handed over to the other node")
        lost = time.monotonic()
        cluster.link_down(active)
        cluster.wait_for(lambda: cluster.locate("virtual-ip-resource", view=survivor)
                         == [survivor], FAILOVER_S, what=f"VIP on {survivor}")
        taken = time.monotonic()
        cluster.wait_for(lambda: streams.flowing_since(taken), FAILOVER_S,
                         what="every stream flowing again")
        resumed = time.monotonic()
    reasons = {why for when, _, why in streams.cuts if lost <= when <= resumed}
    assert (streams.cut(lost, resumed), reasons) == (STREAMS, {"reset"})
    cluster.wait_for(lambda: not cluster.handed_over("virtual-ip-resource", survivor), 15,
                     what="the list forgotten once used (TICKLER_TIDY after the tickles)")
