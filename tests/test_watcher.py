"""The crash watcher of the haproxy agent: a real haproxy in a node, and stand-ins for
Pacemaker's crm_resource and crm_mon that record what they are asked (the cluster tests
check the same against real Pacemaker)."""
import os
import subprocess
import time

import pytest

from lab.haproxy import FRONT, SERVERS, wait_for
from ocfshim import HaAgentNode, run_agent
from ocf_lib.adapters import process
from ocf_lib.helpers.watch import MARK
from ocf_lib.helpers.watcher import quiet_reason

CRM_MON_OK = """<pacemaker-result api-version="2.2" request="crm_mon --output-as=xml">
  <summary><cluster_options stonith-enabled="false" maintenance-mode="{maintenance}"/></summary>
  <nodes><node name="node1" online="true" maintenance="{node_maintenance}"/></nodes>
  <resources><resource id="test-rsc" resource_agent="ocf:kuth:haproxy" role="Started"
     active="true" managed="{managed}" maintenance="false"/></resources>
</pacemaker-result>
"""


def crm_mon_xml(maintenance="false", node_maintenance="false", managed="true"):
    return CRM_MON_OK.format(maintenance=maintenance, node_maintenance=node_maintenance,
                             managed=managed)


class Pacemaker:
    """crm_resource and crm_mon stand-ins on PATH: the first records its arguments with a
    timestamp, the second prints whatever XML the test sets."""

    def __init__(self, directory):
        self.bin = directory / "bin"
        self.bin.mkdir()
        self.calls = directory / "crm_resource.log"
        self.status = directory / "crm_mon.xml"
        self.status.write_text(crm_mon_xml())
        self._script("crm_resource", f'echo "$(date +%s.%N) $*" >> {self.calls}\n')
        self._script("crm_mon", f"cat {self.status}\n")
        self.env = {"OCF_RESKEY_CRM_meta_on_node": "node1",
                    "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin"}

    def _script(self, name, body):
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)

    def reports(self):
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def ha(netns_pool, tmp_path):
    ha = HaAgentNode(netns_pool.host(), tmp_path)
    ha.lab.start_server(SERVERS[0])
    try:
        yield ha
    finally:
        ha.agent("stop")
        ha.lab.close()
        for pid in watchers(ha):
            os.kill(pid, 9)


@pytest.fixture
def pcmk(tmp_path):
    return Pacemaker(tmp_path)


def watchers(ha):
    """The live watchers inside the node (other tests may run watchers elsewhere)."""
    inside = set(ha.node.pids())
    out = subprocess.run(["pgrep", "-f", MARK], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) in inside and process.alive(int(p))]


def kill_haproxy(ha):
    killed_at = time.time()
    for pid in ha.haproxy_pids():
        os.kill(pid, 9)
    return killed_at


def test_crash_is_reported_at_once(ha, pcmk):
    assert ha.agent("start", extra=pcmk.env).rc == 0
    assert len(watchers(ha)) == 1
    killed_at = kill_haproxy(ha)
    wait_for(pcmk.reports, timeout=5, what="a failure report")
    stamp, args = pcmk.reports()[0].split(" ", 1)
    assert args == "--fail --resource test-rsc --node node1"
    delay = float(stamp) - killed_at
    print(f"crash reported {delay * 1000:.0f} ms after kill -9")
    assert delay < 2, "well before any monitor"
    wait_for(lambda: not watchers(ha), what="the watcher ended")


def test_stop_ends_the_watcher_without_a_report(ha, pcmk):
    assert ha.agent("start", extra=pcmk.env).rc == 0
    assert len(watchers(ha)) == 1
    assert ha.agent("stop", extra=pcmk.env).rc == 0
    assert watchers(ha) == []
    time.sleep(0.3)
    assert pcmk.reports() == []


def test_reload_keeps_watching_without_a_report(ha, pcmk):
    assert ha.agent("start", extra=pcmk.env).rc == 0
    before = watchers(ha)
    assert ha.agent("reload", reload_token="1", extra=pcmk.env).rc == 0
    assert watchers(ha) == before, "the master (and so the watcher) stays across a reload"
    assert ha.agent("reload", extraconf="-L kuthpeer", extra=pcmk.env).rc == 0
    wait_for(lambda: len(watchers(ha)) == 1, what="one watcher of the node, of the new master")
    time.sleep(0.3)
    assert pcmk.reports() == []
    kill_haproxy(ha)
    wait_for(pcmk.reports, timeout=5, what="a failure report after the reloads")


@pytest.mark.parametrize("status", [crm_mon_xml(maintenance="true"),
                                    crm_mon_xml(node_maintenance="true"),
                                    crm_mon_xml(managed="false")],
                         ids=["cluster-maintenance", "node-maintenance", "unmanaged"])
def test_no_report_in_maintenance_or_unmanaged(ha, pcmk, status):
    pcmk.status.write_text(status)
    assert ha.agent("start", extra=pcmk.env).rc == 0
    kill_haproxy(ha)
    wait_for(lambda: not watchers(ha), what="the watcher ended")
    assert pcmk.reports() == []


def test_failed_start_leaves_no_watcher(ha, pcmk):
    ha.write_config(open(ha.config).read().replace(f"bind {FRONT}:", "bind 198.18.9.9:"))
    assert ha.agent("start", extra=pcmk.env).rc != 0
    assert watchers(ha) == []


def test_watch_false_and_outside_pacemaker_start_no_watcher(ha, pcmk):
    assert ha.agent("start", watch="false", extra=pcmk.env).rc == 0
    assert watchers(ha) == []
    assert ha.agent("stop").rc == 0
    assert ha.agent("start").rc == 0, "no CRM_meta_on_node: not run by Pacemaker"
    assert watchers(ha) == []


def test_watch_false_through_a_reload_ends_the_watcher(ha, pcmk):
    assert ha.agent("start", extra=pcmk.env).rc == 0
    assert len(watchers(ha)) == 1
    assert ha.agent("reload", watch="false", extra=pcmk.env).rc == 0
    assert watchers(ha) == []
    assert ha.agent("monitor", interval_ms=20000, watch="false", extra=pcmk.env).rc == 0
    assert watchers(ha) == []


def test_monitor_replaces_a_dead_watcher(ha, pcmk):
    assert ha.agent("start", extra=pcmk.env).rc == 0
    [first] = watchers(ha)
    os.kill(first, 9)
    wait_for(lambda: not watchers(ha), what="the watcher killed")
    assert ha.agent("monitor", interval_ms=20000, extra=pcmk.env).rc == 0
    [second] = watchers(ha)
    assert second != first
    assert pcmk.reports() == [], "a dying watcher takes nothing down"


def test_watcher_leaves_with_the_cluster(ha, pcmk):
    """The watcher also waits on the agent's parent (pacemaker-execd): when it ends, the
    node has left the cluster and the watcher goes, without a report."""
    parent = ha.node.popen("/usr/bin/python3", "-c",
                           "import subprocess,sys,time;"
                           "sys.exit(subprocess.call(sys.argv[1:]) or time.sleep(300))",
                           *ha.agent_argv("start"), env=ha.agent_env(extra=pcmk.env))
    wait_for(lambda: watchers(ha), what="the watcher started")
    parent.kill()
    parent.wait()
    wait_for(lambda: not watchers(ha), what="the watcher left with its parent")
    assert pcmk.reports() == []


def test_watcher_costs_no_cpu_while_waiting(ha, pcmk):
    assert ha.agent("start", extra=pcmk.env).rc == 0
    [pid] = watchers(ha)

    def cpu_ticks():
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def settled():
        """The watcher has finished starting (imports, pidfd) and waits: on a loaded
        machine its start-up may still be spending its last tick when start returns."""
        ticks = cpu_ticks()
        time.sleep(0.2)
        return cpu_ticks() == ticks
    wait_for(settled, timeout=10, what="the watcher waiting")
    before = cpu_ticks()
    time.sleep(1.0)
    assert cpu_ticks() == before


def test_quiet_reason_reads_crm_mon():
    assert quiet_reason(crm_mon_xml(), "test-rsc", "node1") == ""
    assert "maintenance mode" in quiet_reason(crm_mon_xml(maintenance="true"), "test-rsc",
                                              "node1")
    assert "node1 is in maintenance" in quiet_reason(crm_mon_xml(node_maintenance="true"),
                                                     "test-rsc", "node1")
    assert "unmanaged" in quiet_reason(crm_mon_xml(managed="false"), "test-rsc:0", "node1")
    assert quiet_reason("not xml", "test-rsc", "node1") == ""


# -- the floating address ---------------------------------------------------------------------

V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}


def vip_watchers(node):
    inside = set(node.pids())
    out = subprocess.run(["pgrep", "-f", MARK], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) in inside and process.alive(int(p))]


def vip_agent(action, node, pcmk, **params):
    return run_agent("IPaddr2", action, {**V4, **params}, ns=node, extra=pcmk.env)


@pytest.fixture
def vip(lan, pcmk):
    node, peer = lan
    assert vip_agent("start", node, pcmk).rc == 0
    assert len(vip_watchers(node)) == 1
    try:
        yield node, peer
    finally:
        vip_agent("stop", node, pcmk)
        for pid in vip_watchers(node):
            os.kill(pid, 9)


def test_address_removed_by_hand_is_reported_at_once(vip, pcmk):
    node, _ = vip
    removed_at = time.time()
    node.ip("addr", "del", "198.18.0.10/24", "dev", "lan0")
    wait_for(pcmk.reports, timeout=5, what="a failure report")
    stamp, args = pcmk.reports()[0].split(" ", 1)
    assert args == "--fail --resource test-rsc --node node1"
    print(f"address removal reported {(float(stamp) - removed_at) * 1000:.0f} ms later")
    assert float(stamp) - removed_at < 1


def test_link_without_carrier_is_reported_after_the_grace(vip, pcmk):
    node, peer = vip
    down_at = time.time()
    peer.ip("link", "set", "lan0", "down")
    wait_for(pcmk.reports, timeout=5, what="a failure report")
    delay = float(pcmk.reports()[0].split(" ", 1)[0]) - down_at
    print(f"carrier loss reported {delay * 1000:.0f} ms later")
    assert 0.9 <= delay < 3


def test_a_brief_flap_is_not_a_failure(vip, pcmk):
    node, peer = vip
    peer.ip("link", "set", "lan0", "down")
    time.sleep(0.3)
    peer.ip("link", "set", "lan0", "up")
    time.sleep(1.5)
    assert pcmk.reports() == []
    assert len(vip_watchers(node)) == 1


def test_interface_removed_is_reported(vip, pcmk):
    node, _ = vip
    node.ip("link", "del", "lan0")
    wait_for(pcmk.reports, timeout=5, what="a failure report")


def test_stop_of_the_address_is_not_a_failure(vip, pcmk):
    node, _ = vip
    assert vip_agent("stop", node, pcmk).rc == 0
    assert vip_watchers(node) == []
    time.sleep(0.3)
    assert pcmk.reports() == []


def test_vip_monitor_stays_cheap_and_replaces_a_dead_watcher(vip, pcmk):
    node, _ = vip
    [first] = vip_watchers(node)
    os.kill(first, 9)
    wait_for(lambda: not vip_watchers(node), what="the watcher killed")
    assert run_agent("IPaddr2", "monitor", V4, ns=node, interval_ms=10000,
                     extra=pcmk.env).rc == 0
    assert len(vip_watchers(node)) == 1 and vip_watchers(node) != [first]
    assert pcmk.reports() == []


# -- registrations ----------------------------------------------------------------------------

def test_a_registration_reads_back_what_was_written():
    from ocf_lib.helpers.watch import AddressTarget, ProcessTarget, Watch
    for target in (ProcessTarget(4321), AddressTarget("2001:2::10", "lan0", True, False)):
        watch = Watch("vip:1", "node1", "/run/x.lock", target)
        back = Watch.parse(watch.text())
        assert back is not None and back.text() == watch.text()
        assert (back.resource, back.node, back.lock) == ("vip:1", "node1", "/run/x.lock")
        assert back.target.kind == target.kind and back.target.fields() == target.fields()


@pytest.mark.parametrize("text", ["", "kind=process\n", "resource=r\nnode=n\nlock=l\n"
                                  "kind=process\npid=x\n", "resource=r\nnode=n\nlock=l\n"
                                  "kind=disk\n"])
def test_what_is_not_a_registration_parses_to_none(text):
    from ocf_lib.helpers.watch import Watch
    assert Watch.parse(text) is None


def test_the_resources_of_a_node_share_one_watcher(vip, pcmk):
    """A second address on the node is watched by the same process; stopping one leaves the
    other watched; the watcher leaves with the last one."""
    node, _ = vip
    second = {**V4, "ip": "198.18.0.11"}
    assert run_agent("IPaddr2", "start", second, ns=node, extra=pcmk.env,
                     instance="second-rsc").rc == 0
    [watcher] = vip_watchers(node)
    assert run_agent("IPaddr2", "stop", V4, ns=node, extra=pcmk.env).rc == 0
    node.ip("addr", "del", "198.18.0.11/24", "dev", "lan0")
    wait_for(pcmk.reports, timeout=5, what="a failure report")
    assert [r.split(" ", 1)[1] for r in pcmk.reports()] == [
        "--fail --resource second-rsc --node node1"]
    assert vip_watchers(node) in ([watcher], [])
    wait_for(lambda: not vip_watchers(node), what="the watcher leaving with nothing to watch")
    assert run_agent("IPaddr2", "stop", second, ns=node, extra=pcmk.env,
                     instance="second-rsc").rc == 0
