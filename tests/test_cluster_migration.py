"""A running cluster built from the usual guide -- heartbeat's IPaddr2 for the address and
the guide's old shell haproxy agent (lab/legacy/haproxy, installed as ocf:heartbeat:haproxy)
-- migrated live to ocf:kuth:IPaddr2 and ocf:kuth:haproxy as the README's "Migrating from
heartbeat's agents" says, once with crmsh and once with pcs, while a client sends a request
through the VIP every 10 ms and holds watch streams: no request fails, no stream is cut, the
address never leaves its node, and haproxy is the same process. Afterwards the cluster
behaves as one built with our agents: a planned move moves both, and an edited haproxy.cfg
applied through Pacemaker fails no request and cuts no stream.

The first parameter change after the migration's probes: Pacemaker (2.1.5 and 3.0.0) makes
it a restart, because it keeps each probe's "found running" result as a last failure
without the digest that tells it the agent can reload. On Pacemaker 2.1 the procedure deletes
those records, and the test applies an edited haproxy.cfg right after the migration: the
old agent's haproxy is handed over to a master-worker haproxy of ours without a cut. Pacemaker
3.0 writes them back at once (any change to the operation history from outside its
controller makes the DC re-join every node, which sends its history again), so there the
first move clears them, and the edit is applied after it.

The cluster is the guide's: stonith-enabled=no, no-quorum-policy=ignore (lab.cluster with
fencing=False), monitors every 10 s; /run/haproxy exists on every node, as haproxy's
tmpfiles make it at boot (the old agent does not). One 2-node cluster serves the module,
reset for each test. KUTH_CLUSTER_LOGS=DIR keeps every node's Pacemaker and Corosync logs.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lab import REPO, constraints
from lab.cluster import Cluster
from lab.guide import haproxy_config
from lab.topology import KUBE_PORT, VIP_NETWORK
from lab.traffic import Streams, Traffic
from ocf_lib.adapters import process

from test_cluster_haproxy import EXTRA_LISTENER, apiserver_answer, haproxy_pids, other
from test_cluster_operations import clients

pytestmark = pytest.mark.cluster  # its cluster is its own (guide_cluster)

LEGACY_AGENT = os.path.join(REPO, "lab", "legacy", "haproxy")
VIP = f"{VIP_NETWORK}.20"
VIP_RESOURCE = "haproxy-vip"   # the guide's names
HAPROXY = "haproxy"
SETTLE_S = 60
STREAMS = 4
# The guide's configuration, with the lab's address and interface.
GUIDE_CRM = f"""\
property stonith-enabled=no no-quorum-policy=ignore
rsc_defaults resource-stickiness=100
primitive {VIP_RESOURCE} ocf:heartbeat:IPaddr2 \\
    params ip={VIP} cidr_netmask=24 nic=lan0 \\
    op monitor interval=10s
primitive {HAPROXY} ocf:heartbeat:haproxy \\
    op monitor interval=10s
""" + constraints.guide(VIP_RESOURCE, HAPROXY)
# The README's step 2 with crmsh: the two primitives as crm shows them, their agent renamed.
CRM_RENAME = r"s/^(primitive \S+ )(ocf:heartbeat:)?(IPaddr2|haproxy) /\1ocf:kuth:\3 /"
# The README's step 2 with pcs: the provider of the two primitives in a copy of the CIB.
PCS_RENAME = (r'/<primitive [^>]*id="(haproxy-vip|haproxy)"/ '
              r's/provider="heartbeat"/provider="kuth"/')
# The README's step 4: the probes' "found running" records, which carry no reload digest.
PROBE_RECORDS = ("//lrm_rsc_op[contains(@id,'_last_failure_0')][@operation='monitor']"
                 "[@interval='0'][@rc-code='0']")


@pytest.fixture(scope="module")
def guide_cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0 or not all(shutil.which(p) for p in ("corosync", "pacemakerd", "crm",
                                                               "haproxy")):
        pytest.skip("needs root, corosync, pacemaker, crmsh and haproxy")
    with Cluster(nodes=2, fencing=False, extra_agents={"heartbeat/haproxy": LEGACY_AGENT},
                 logs_dir=os.environ.get("KUTH_CLUSTER_LOGS")) as cluster:
        yield cluster


@pytest.fixture
def cluster(guide_cluster: Cluster) -> Cluster:
    """The module's cluster, reset, with /run/haproxy on every node (haproxy's tmpfiles)."""
    guide_cluster.reset()
    for node in guide_cluster.nodes:
        node.run(["install", "-d", "-m", "2775", "-o", "root", "-g", "haproxy", "/run/haproxy"])
    return guide_cluster


def serving_node(cluster: Cluster) -> str:
    """The node with the address, once haproxy answers through it and Pacemaker is idle."""
    [node] = cluster.wait_for(lambda: cluster.locate(VIP_RESOURCE), SETTLE_S, what="VIP started")
    cluster.wait_for(lambda: node in cluster.locate(HAPROXY), SETTLE_S,
                     what=f"haproxy started on {node}")
    cluster.wait_for(lambda: apiserver_answer(cluster), 10, what="apiservers through the VIP")
    cluster.settle()
    return node


def build_guide_with_crm(cluster: Cluster) -> str:
    cluster.configure(GUIDE_CRM)
    return serving_node(cluster)


def build_guide_with_pcs(cluster: Cluster) -> str:
    cluster.pcs("property", "set", "stonith-enabled=false", "no-quorum-policy=ignore")
    cluster.pcs("resource", "defaults", "update", "resource-stickiness=100")
    cluster.pcs("resource", "create", VIP_RESOURCE, "ocf:heartbeat:IPaddr2", f"ip={VIP}",
                "cidr_netmask=24", "nic=lan0", "op", "monitor", "interval=10s")
    cluster.pcs("resource", "create", HAPROXY, "ocf:heartbeat:haproxy",
                "op", "monitor", "interval=10s")
    cluster.pcs("constraint", "colocation", "add", HAPROXY, "with", VIP_RESOURCE, "INFINITY",
                "id=haproxy-with-vip")
    cluster.pcs("constraint", "order", "start", VIP_RESOURCE, "then", "start", HAPROXY,
                "kind=Mandatory", "id=vip-before-haproxy")
    return serving_node(cluster)


def old_agents_haproxy(cluster: Cluster, name: str) -> int:
    """The old agent's haproxy on node name: one daemonized process, its pid in
    /var/run/haproxy.pid."""
    [pid] = haproxy_pids(cluster, name)
    assert cluster.node(name).read("/run/haproxy.pid").split() == [str(pid)]  # /var/run
    return pid


def wait_idle(cluster: Cluster) -> None:
    cluster.settle(SETTLE_S)


def shows_both_started_on(cluster: Cluster, node: str, provider: str) -> bool:
    """crm_mon shows both primitives with provider's agents, started on node alone, and
    nothing stopped or failed."""
    text = cluster.view_node(None).run(["crm_mon", "-1"]).stdout
    return (f"{VIP_RESOURCE}\t(ocf:{provider}:IPaddr2):\t Started {node}" in text
            and f"{HAPROXY}\t(ocf:{provider}:haproxy):\t Started {node}" in text
            and "Stopped" not in text and cluster.status().failures == [])


def migrate_with_crm(cluster: Cluster, node: str) -> None:
    """The README's procedure, crmsh form."""
    view = cluster.view_node(None)
    cluster.crm("configure", "property", "maintenance-mode=true")
    wait_idle(cluster)
    view.write("/run/migrate.crm", cluster.crm("configure", "show", VIP_RESOURCE, HAPROXY))
    view.run(["sed", "-i", "-E", CRM_RENAME, "/run/migrate.crm"])
    cluster.crm("configure", "load", "update", "/run/migrate.crm")
    cluster.crm("resource", "refresh")
    after_the_probes(cluster, node)
    cluster.crm("configure", "property", "maintenance-mode=false")


def migrate_with_pcs(cluster: Cluster, node: str) -> None:
    """The README's procedure, pcs form."""
    run = cluster.view_node(None).run
    cluster.pcs("property", "set", "maintenance-mode=true")
    wait_idle(cluster)
    cluster.pcs("cluster", "cib", "/run/migrate.xml")
    run(["sed", "-i", "-E", PCS_RENAME, "/run/migrate.xml"])
    cluster.pcs("cluster", "cib-push", "/run/migrate.xml", "--config")
    cluster.pcs("resource", "refresh")
    after_the_probes(cluster, node)
    cluster.pcs("property", "set", "maintenance-mode=false")


def after_the_probes(cluster: Cluster, node: str) -> None:
    """Steps 3 and 4, the same for both tools: the new agents' probes found both running on
    node (crm_mon); on Pacemaker 2.1, their records without a reload digest go."""
    wait_idle(cluster)
    cluster.wait_for(lambda: shows_both_started_on(cluster, node, "kuth"), 20,
                     what=f"both started on {node} with the new agents")
    if probe_records_stay_deleted(cluster):
        cluster.view_node(None).run(["cibadmin", "--delete-all", "--force", "--xpath",
                                     PROBE_RECORDS])


def probe_records_stay_deleted(cluster: Cluster) -> bool:
    """Pacemaker 2.1 keeps the deletion of the probes' records; 3.0 writes them back."""
    version = cluster.view_node(None).run(["pacemakerd", "--version"]).stdout.split()[1]
    return int(version.split(".")[0]) < 3


def assert_nothing_cut(traffic: Traffic, streams: Streams, began: float, ended: float,
                       what: str) -> None:
    time.sleep(1.0)  # the last requests get their answer
    outage = traffic.outage(began, ended)
    assert streams.cut(began, ended) == 0, (what, streams.cuts)
    assert outage.failed == 0, (what, outage)
    assert outage.total > (ended - began) * 50, (what, outage)
    print(f"{what} ({ended - began:.1f} s): {outage.failed} failed of {outage.total} "
          f"requests, {streams.cut(began, ended)} of {STREAMS} streams cut")


def apply_edit(cluster: Cluster, set_token: Callable[[Cluster, str], None], token: str,
               port: int) -> None:
    """An edited haproxy.cfg (a new listener on port) applied as the README says."""
    listener = EXTRA_LISTENER.replace("7443", str(port)).replace("reload-check",
                                                                 f"check-{port}")
    cluster.write_haproxy_config(haproxy_config(extra=listener))
    set_token(cluster, token)
    assert cluster.wait_for(lambda: apiserver_answer(cluster, port=port), 20,
                            what="the edited file's listener") == "kube-mast01"
    wait_idle(cluster)


class Sampler:
    """Calls look every interval seconds in a thread and keeps every distinct answer."""

    def __init__(self, look: Callable[[], object], interval: float = 0.1) -> None:
        self.look = look
        self.interval = interval
        self.seen: list[object] = []
        self._running = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._running = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join()

    def _run(self) -> None:
        while self._running:
            value = self.look()
            if value not in self.seen:
                self.seen.append(value)
            time.sleep(self.interval)


def address_holders(cluster: Cluster) -> tuple[str, ...]:
    return tuple(n.name for n in cluster.nodes if n.has_address(VIP))


def masters(cluster: Cluster, name: str) -> list[int]:
    """haproxy processes on node name whose parent is no haproxy: the old agent's process,
    our master."""
    pids = haproxy_pids(cluster, name)
    return sorted(pid for pid in pids
                  if (info := process.process_info(pid)) and info.ppid not in pids)


def run_migration(cluster: Cluster, build: Callable[[Cluster], str],
                  migrate: Callable[[Cluster, str], None],
                  set_token: Callable[[Cluster, str], None],
                  move: Callable[[Cluster, str], None]) -> None:
    active = build(cluster)
    old = old_agents_haproxy(cluster, active)
    target = other(cluster, active)
    with clients(cluster, interval=0.01) as (traffic, streams), \
            Sampler(lambda: address_holders(cluster)) as holders:
        began = time.monotonic()
        migrate(cluster, active)
        wait_idle(cluster)
        migrated = time.monotonic()
        assert shows_both_started_on(cluster, active, "kuth")
        assert haproxy_pids(cluster, active) == [old], "the old agent's haproxy, untouched"
        assert_nothing_cut(traffic, streams, began, migrated, "migration")
        if probe_records_stay_deleted(cluster):
            began = time.monotonic()
            apply_edit(cluster, set_token, "edited-1", 7443)  # hands the old haproxy over
            assert_nothing_cut(traffic, streams, began, time.monotonic(), "first reload")
            assert old in haproxy_pids(cluster, active), "the old one serves the streams on"
            assert [pid for pid in masters(cluster, active) if pid != old], "our master"
            assert len(haproxy_pids(cluster, active)) == 3, "old, our master, its worker"
    assert holders.seen == [(active,)], "the address never left its node"
    assert shows_both_started_on(cluster, active, "kuth")

    move(cluster, target)
    cluster.wait_for(lambda: cluster.locate(HAPROXY) == [target], SETTLE_S,
                     what=f"haproxy on {target}")
    cluster.wait_for(lambda: apiserver_answer(cluster), 10, what=f"apiservers through {target}")
    wait_idle(cluster)
    assert address_holders(cluster) == (target,)
    assert haproxy_pids(cluster, active) == [], "the old process went with the move"
    assert len(masters(cluster, target)) == 1 and len(haproxy_pids(cluster, target)) == 2
    master = masters(cluster, target)

    with clients(cluster, interval=0.01) as (traffic, streams):
        began = time.monotonic()
        apply_edit(cluster, set_token, "edited-2", 7444)
        assert_nothing_cut(traffic, streams, began, time.monotonic(), "reload after the move")
    assert masters(cluster, target) == master, "reloaded, not restarted"
    assert cluster.status().failures == []


def test_crm_migrates_the_guides_cluster_without_a_cut(cluster: Cluster) -> None:
    def move(cluster: Cluster, target: str) -> None:
        cluster.crm("resource", "move", VIP_RESOURCE, target)
        cluster.wait_for(lambda: cluster.locate(VIP_RESOURCE) == [target], SETTLE_S,
                         what=f"VIP on {target}")
        cluster.crm("resource", "clear", VIP_RESOURCE)

    run_migration(cluster, build_guide_with_crm, migrate_with_crm,
                  lambda c, token: c.crm("resource", "param", HAPROXY, "set", "reload_token",
                                         token), move)


def test_pcs_migrates_the_guides_cluster_without_a_cut(cluster: Cluster) -> None:
    if not shutil.which("pcs"):
        pytest.skip("needs pcs")

    def move(cluster: Cluster, target: str) -> None:
        cluster.pcs("resource", "move", VIP_RESOURCE, target)

    run_migration(cluster, build_guide_with_pcs, migrate_with_pcs,
                  lambda c, token: c.pcs("resource", "update", HAPROXY,
                                         f"reload_token={token}"), move)
