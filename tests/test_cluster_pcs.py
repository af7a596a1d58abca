"""The cluster configured with pcs instead of crmsh, exactly as the README's pcs forms say:
`pcs resource create ... ocf:kuth:IPaddr2` and `ocf:kuth:haproxy`, `pcs constraint
colocation/order/location`, `pcs resource defaults`, `pcs resource move` and
`pcs resource update` for a reload, in both topologies; and `pcs resource describe` shows
every parameter of both agents with its default. pcs changes the live CIB itself; no pcsd
runs (or is needed) on the lab's nodes.

One 2-node cluster (lab/cluster.py) serves the module, reset for each test, as in
test_cluster_haproxy.py, whose helpers this module shares.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from lab import REPO
from lab.cluster import Cluster
from lab.guide import haproxy_config
from test_cluster_haproxy import (EXTRA_LISTENER, FAILOVER_S, HAPROXY, VIP, apiserver_answer,
                                  backends_up, haproxy_master, haproxy_pids, other)

VIP_RESOURCE = "virtual-ip-resource"
MONITOR = ("op", "monitor", "interval=20", "timeout=60", "on-fail=restart")


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Cluster:
    """The module's cluster, reset for this test; pcs must be there too."""
    if not os.path.exists("/usr/sbin/pcs"):
        pytest.skip("needs pcs")
    shared_cluster.reset()
    return shared_cluster


def create_vip(cluster: Cluster) -> None:
    cluster.pcs("resource", "create", VIP_RESOURCE, "ocf:kuth:IPaddr2", f"ip={VIP}", "nic=lan0",
                "cidr_netmask=24", "meta", "migration-threshold=2", *MONITOR)
    cluster.pcs("resource", "defaults", "update", "resource-stickiness=100")


def create_guide(cluster: Cluster) -> None:
    """The guide's topology: haproxy follows the address, started after it."""
    create_vip(cluster)
    cluster.pcs("resource", "create", HAPROXY, "ocf:kuth:haproxy", *MONITOR)
    cluster.pcs("constraint", "colocation", "add", HAPROXY, "with", VIP_RESOURCE, "INFINITY",
                "id=haproxy-with-vip")
    cluster.pcs("constraint", "order", "start", VIP_RESOURCE, "then", "start", HAPROXY,
                "kind=Mandatory", "id=vip-before-haproxy")


def create_clone_topology(cluster: Cluster) -> None:
    """haproxy on every node, the address where haproxy runs; haproxy stops after the
    address when both leave a node, and after its start elsewhere (lab.constraints.clone,
    in pcs's words)."""
    create_vip(cluster)
    cluster.pcs("resource", "create", HAPROXY, "ocf:kuth:haproxy", *MONITOR,
                "clone", "haproxy-clone")
    cluster.pcs("constraint", "colocation", "add", VIP_RESOURCE, "with", "haproxy-clone",
                "INFINITY", "id=vip-with-haproxy")
    cluster.pcs("constraint", "order", "stop", VIP_RESOURCE, "then", "stop", "haproxy-clone",
                "kind=Mandatory", "symmetrical=false", "id=haproxy-stops-after-vip")
    cluster.pcs("constraint", "order", "start", VIP_RESOURCE, "then", "stop", "haproxy-clone",
                "kind=Optional", "symmetrical=false", "id=haproxy-stops-after-vip-moved")


def serving_node(cluster: Cluster) -> str:
    """The node holding the VIP once haproxy there answers through it."""
    [node] = cluster.wait_for(lambda: cluster.locate(VIP_RESOURCE), FAILOVER_S,
                              what="VIP started")
    cluster.wait_for(lambda: node in cluster.locate(HAPROXY), FAILOVER_S,
                     what=f"haproxy started on {node}")
    cluster.wait_for(lambda: apiserver_answer(cluster), 10, what="apiservers through the VIP")
    return node


def move_vip(cluster: Cluster, target: str) -> None:
    """`pcs resource move` (pcs >= 0.11: the constraint it needs is removed once the
    resource runs there); then the address is there and serving."""
    cluster.pcs("resource", "move", VIP_RESOURCE, target)
    cluster.wait_for(lambda: cluster.locate(VIP_RESOURCE) == [target], FAILOVER_S,
                     what=f"VIP on {target}")
    cluster.settle()
    cluster.wait_for(lambda: apiserver_answer(cluster), 10, what="apiservers through the VIP")


def test_pcs_guide_topology_runs_vip_and_haproxy_together_and_moves_them_together(
        cluster: Cluster) -> None:
    create_guide(cluster)
    active = serving_node(cluster)
    cluster.settle()
    assert cluster.locate(HAPROXY) == [active]
    assert len(haproxy_pids(cluster, active)) == 2, "one master, one worker"
    target = other(cluster, active)
    move_vip(cluster, target)
    assert (cluster.locate(VIP_RESOURCE), cluster.locate(HAPROXY)) == ([target], [target])
    assert [n.name for n in cluster.nodes if n.has_address(VIP)] == [target]
    assert haproxy_pids(cluster, active) == [], "haproxy left with the address"
    assert "cli-prefer" not in cluster.pcs("constraint", "--full"), "move cleaned up"
    assert cluster.status().failures == []


def test_pcs_resource_update_of_reload_token_reloads_without_moving(cluster: Cluster) -> None:
    """The README's pcs form of "Applying an edited haproxy.cfg"."""
    create_guide(cluster)
    active = serving_node(cluster)
    cluster.settle()
    master = haproxy_master(cluster, active)
    cluster.write_haproxy_config(haproxy_config(extra=EXTRA_LISTENER))
    cluster.pcs("resource", "update", HAPROXY, "reload_token=edited-1")
    assert cluster.wait_for(lambda: apiserver_answer(cluster, port=7443), 20,
                            what="the new listener answering") == "kube-mast01"
    cluster.settle()
    assert cluster.locate(VIP_RESOURCE) == [active]
    assert haproxy_master(cluster, active) == master, "reloaded, not restarted"
    assert cluster.status().failures == []


def test_pcs_backend_health_rule_keeps_the_vip_where_apiservers_are_up(
        cluster: Cluster) -> None:
    """The README's pcs form of the backend-health location rule is accepted, and with the
    apiservers UP it leaves the VIP where it is."""
    create_guide(cluster)
    active = serving_node(cluster)
    cluster.pcs("constraint", "location", VIP_RESOURCE, "rule",
                "constraint-id=vip-needs-apiservers", "score=-INFINITY", f"{HAPROXY}-kube-apiserver-up", "lt", "1")
    cluster.pcs("resource", "update", HAPROXY, "min_servers_up=1")
    cluster.wait_for(lambda: backends_up(cluster, active) == "3", 20, what="3 servers UP")
    cluster.settle()
    rules = cluster.view_node(None).run(["cibadmin", "--query", "--scope",
                                         "constraints"]).stdout
    assert f'attribute="{HAPROXY}-kube-apiserver-up"' in rules and 'operation="lt"' in rules
    assert cluster.locate(VIP_RESOURCE) == [active] == cluster.locate(HAPROXY)
    assert cluster.status().failures == []


def test_pcs_clone_topology_moves_only_the_address(cluster: Cluster) -> None:
    create_clone_topology(cluster)
    active = serving_node(cluster)
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == cluster.names, FAILOVER_S,
                     what="haproxy on every node")
    cluster.settle()
    before = {name: haproxy_pids(cluster, name) for name in cluster.names}
    assert all(len(pids) == 2 for pids in before.values())
    target = other(cluster, active)
    move_vip(cluster, target)
    assert [n.name for n in cluster.nodes if n.has_address(VIP)] == [target]
    assert {name: haproxy_pids(cluster, name) for name in cluster.names} == before, \
        "haproxy kept running on both nodes"
    assert cluster.status().failures == []


def declared_parameters(agent: str) -> dict[str, str]:
    """Every parameter of the agent and its default ("" for none), from its committed
    meta-data (test_metadata.py keeps that equal to what the agent prints)."""
    root = ET.parse(os.path.join(REPO, "metadata", f"{agent}.xml")).getroot()
    return {p.get("name", ""): (p.find("content").get("default", "")  # type: ignore[union-attr]
                                if p.find("content") is not None else "")
            for p in root.iter("parameter")}


def described(text: str) -> dict[str, str]:
    """`pcs resource describe`'s "Resource options:" section, per parameter: its lines
    joined. A parameter's entry starts two spaces in with its name."""
    options = text.split("Resource options:", 1)[1].split("\nDefault operations:", 1)[0]
    entries: dict[str, str] = {}
    name = ""
    for line in options.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.strip():
            name = line.split()[0].rstrip(":")
            entries[name] = line
        elif name:
            entries[name] += " " + line.strip()
    return entries


@pytest.mark.parametrize("agent", ["IPaddr2", "haproxy"])
def test_pcs_resource_describe_shows_every_parameter_with_its_default(
        cluster: Cluster, agent: str) -> None:
    shown = described(cluster.pcs("resource", "describe", f"ocf:kuth:{agent}"))
    declared = declared_parameters(agent)
    assert sorted(shown) == sorted(declared)
    for name, default in declared.items():
        if default:
            assert f"Default: {default}" in shown[name], (name, shown[name])
