"""Everyday operations in a real Pacemaker + Corosync cluster (lab/cluster.py, fencing on)
never cost the endpoint: an haproxy.cfg haproxy refuses, applied as the README says, leaves
the last accepted configuration serving, on the node that serves and on a node that takes
over meanwhile; crm_mon shows haproxy degraded with haproxy's words until a fixed file is
applied. Behaviour only, never timings: requests and streams through the VIP are counted.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from lab.cluster import Cluster
from lab.guide import haproxy_config
from lab.topology import KUBE_PORT
from lab.traffic import Streams, Traffic

from test_cluster_haproxy import (EXTRA_LISTENER, FAILOVER_S, HAPROXY, VIP, apiserver_answer,
                                  clone_topology, guide, haproxy_master, other, start)

STREAMS = 4
BROKEN = "frontend broken\n    balance roundrobbin\n"  # the typo: `haproxy -c` refuses it
# `haproxy -c` accepts it; running it fails: no node has the address
CANNOT_BIND = ("listen elsewhere\n    bind 198.18.9.9:32702\n    mode tcp\n"
               "    server none 198.18.2.1:1\n")
REFUSED_ATTRIBUTE = f"{HAPROXY}-config-refused"


@contextlib.contextmanager
def clients(cluster: Cluster, interval: float = 0.05) -> Iterator[tuple[Traffic, Streams]]:
    """Short requests through the VIP (a GET every interval seconds) and STREAMS watch
    streams, flowing when the block begins."""
    with Traffic(cluster.client, f"http://{VIP}:{KUBE_PORT}/", interval=interval,
                 timeout=1.0) as traffic, \
            Streams(cluster.client, VIP, KUBE_PORT, count=STREAMS, idle_timeout=60) as streams:
        cluster.wait_for(lambda: streams.flowing_since(time.monotonic() - 1), 10,
                         what="streams flowing")
        yield traffic, streams


def degraded(cluster: Cluster, node: str) -> dict[str, str] | None:
    """haproxy's degraded monitor on node as crm_mon shows it (exit reason and all)."""
    return next((f for f in cluster.status().failures
                 if f.get("node") == node and f.get("op_key", "").startswith(f"{HAPROXY}_monitor")
                 and f.get("exitcode") == "190"), None)


def refused_attribute(cluster: Cluster, node: str) -> str | None:
    return cluster.status().attributes.get(node, {}).get(REFUSED_ATTRIBUTE)


def apply(cluster: Cluster, token: str) -> None:
    """Apply the edited haproxy.cfg exactly as the README's "Applying an edited haproxy.cfg"."""
    cluster.crm("resource", "param", HAPROXY, "set", "reload_token", token)


def runs_accepted_copy(cluster: Cluster, node: str) -> bool:
    """haproxy's master on node was started from the agent's copy of the accepted file."""
    cmdline = cluster.node(node).read(f"/proc/{haproxy_master(cluster, node)}/cmdline")
    return ".accepted.cfg" in cmdline


def fatal_failures(cluster: Cluster) -> list[dict[str, str]]:
    return [f for f in cluster.status().failures if f.get("exitcode") != "190"]


@pytest.mark.parametrize("bad", [BROKEN, CANNOT_BIND], ids=["refused", "cannot-bind"])
def test_a_refused_haproxy_cfg_keeps_serving_here_and_on_the_node_taking_over(
        cluster: Cluster, bad: str) -> None:
    """The guide's topology: the file is edited on every node with a mistake and applied;
    nothing is cut, crm_mon shows why; the address then moves to the node that never ran
    haproxy, which starts the configuration the cluster handed it; the fixed file applied
    there clears the state."""
    active = start(cluster, guide())
    master = haproxy_master(cluster, active)
    target = other(cluster, active)
    with clients(cluster) as (traffic, streams):
        began = time.monotonic()
        cluster.write_haproxy_config(haproxy_config(extra=bad))
        apply(cluster, "broken-1")
        shown = cluster.wait_for(lambda: degraded(cluster, active), FAILOVER_S,
                                 what="haproxy degraded in crm_mon")
        cluster.wait_for(lambda: refused_attribute(cluster, active), 10,
                         what="the node attribute")
        ended = time.monotonic()
        assert streams.cut(began, ended) == 0
        assert traffic.outage(began, ended - 1).failed == 0
    reason = shown.get("exitreason", "")
    if bad == BROKEN:
        assert reason.startswith("haproxy -c: /etc/haproxy/haproxy.cfg:"), shown
        assert "balance only supports" in reason, shown
    else:
        assert "bind 198.18.9.9:32702: no such address" in reason, shown
    assert haproxy_master(cluster, active) == master, "nothing restarted"
    assert cluster.locate("virtual-ip-resource") == [active]
    assert fatal_failures(cluster) == []

    cluster.crm("resource", "move", "virtual-ip-resource", target)
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == [target], FAILOVER_S,
                     what=f"haproxy on {target}")
    cluster.wait_for(lambda: apiserver_answer(cluster), 10, what=f"apiservers through {target}")
    assert runs_accepted_copy(cluster, target)
    cluster.wait_for(lambda: degraded(cluster, target), FAILOVER_S,
                     what=f"haproxy degraded on {target}")
    assert fatal_failures(cluster) == []

    cluster.write_haproxy_config(haproxy_config(extra=EXTRA_LISTENER))
    apply(cluster, "fixed-1")
    assert cluster.wait_for(lambda: apiserver_answer(cluster, port=7443), FAILOVER_S,
                            what="the fixed file's listener") == "kube-mast01"
    cluster.wait_for(lambda: refused_attribute(cluster, target) is None, FAILOVER_S,
                     what="the node attribute gone")
    assert cluster.locate("virtual-ip-resource") == [target]
    cluster.crm("resource", "clear", "virtual-ip-resource")
    assert fatal_failures(cluster) == []


@pytest.mark.parametrize("bad", [BROKEN, CANNOT_BIND], ids=["refused", "cannot-bind"])
def test_in_the_clone_topology_a_refused_file_leaves_every_node_serving_and_a_crash_too(
        cluster: Cluster, bad: str) -> None:
    """haproxy runs on both nodes: both keep their running configuration; the node with the
    address is then lost, and the survivor serves on without a restart."""
    active = start(cluster, clone_topology())
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == cluster.names, FAILOVER_S,
                     what="haproxy on every node")
    survivor = other(cluster, active)
    masters = {name: haproxy_master(cluster, name) for name in cluster.names}
    with Streams(cluster.client, VIP, KUBE_PORT, count=STREAMS, idle_timeout=60) as streams:
        cluster.wait_for(lambda: streams.flowing_since(time.monotonic() - 1), 10,
                         what="streams flowing")
        began = time.monotonic()
        cluster.write_haproxy_config(haproxy_config(extra=bad))
        apply(cluster, "broken-1")
        for name in cluster.names:
            cluster.wait_for(lambda: degraded(cluster, name), FAILOVER_S,
                             what=f"haproxy degraded on {name}")
        assert streams.cut(began, time.monotonic()) == 0
    assert {name: haproxy_master(cluster, name) for name in cluster.names} == masters
    assert fatal_failures(cluster) == []
    cluster.crash(active)
    cluster.wait_for(lambda: cluster.locate("virtual-ip-resource", view=survivor) == [survivor],
                     FAILOVER_S, what=f"VIP on {survivor}")
    cluster.wait_for(lambda: apiserver_answer(cluster), 10, what="apiservers through the VIP")
    assert haproxy_master(cluster, survivor) == masters[survivor]
    cluster.wait_booted(active)
    cluster.wait_for(lambda: len(cluster.status().online) == 2, FAILOVER_S, what="rejoined")
    cluster.wait_for(lambda: active in cluster.locate(HAPROXY), FAILOVER_S,
                     what=f"haproxy back on {active}, from the accepted configuration")
    assert runs_accepted_copy(cluster, active)
    cluster.write_haproxy_config(haproxy_config())
    apply(cluster, "fixed-1")
    for name in cluster.names:
        cluster.wait_for(lambda: refused_attribute(cluster, name) is None, FAILOVER_S,
                         what=f"the node attribute gone on {name}")
    assert fatal_failures(cluster) == []


# Every ocf:kuth:IPaddr2 parameter that does not change the address on its interface, with a
# value other than its default: each change is a reload.
RELOADABLE = [("arp_count", "6"), ("arp_interval", "100"), ("arp_count_refresh", "1"),
              ("arp_bg", "false"), ("arp_sender", "iputils_arping"), ("send_arp_opts", "-A"),
              ("flush_routes", "true"), ("run_arping", "true"), ("watch", "false"),
              ("reset_connections", "false"), ("refuse_after_stop", "3"),
              ("check_link_status", "false")]


@pytest.mark.parametrize("topology", [guide, clone_topology], ids=["guide", "clone"])
def test_a_vip_parameter_change_cuts_no_stream_and_fails_no_request(
        cluster: Cluster, topology) -> None:
    """crm resource param virtual-ip-resource set NAME VALUE, one tuning parameter after
    another: the address never leaves its node, and the clients see nothing."""
    active = start(cluster, topology())
    with clients(cluster) as (traffic, streams):
        began = time.monotonic()
        for name, value in RELOADABLE:
            cluster.crm("resource", "param", "virtual-ip-resource", "set", name, value)
            cluster.settle()
            assert cluster.locate("virtual-ip-resource") == [active], name
        ended = time.monotonic()
        time.sleep(1.0)  # the last requests get their answer
        assert streams.cut(began, ended) == 0
        assert traffic.outage(began, ended).failed == 0
    assert cluster.status().failures == []
