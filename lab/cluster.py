"""A real Pacemaker + Corosync cluster on one machine: 2 or 3 nodes (lab.nodes) on a ring
switch and a lan switch, the kube-apiserver stand-ins (lab.apiserver), a client
(lab.traffic) and a power switch (lab.fencing, the fence device) on the lan, in the
topology of lab.topology. Fencing is on (stonith-enabled=true, and two_node on a pair), as
the README tells operators.

What callers get: `Cluster`, a context manager that builds all of it and starts Corosync and
Pacemaker on every node (about 5 s: cluster options are preset in the CIB before Pacemaker
starts, see default_properties), and removes it all at exit (lab.teardown: also after a
SIGKILL of the caller). In between: look (`status`, `locate`, `crm`), configure
(`configure`, `settle`, `wait_for`), and inject failures (`link_down`, `partition`,
`crash`, `kill_pacemaker`, `stop_kube_master`). A node the cluster fences is powered off
and boots again by itself (`fenced`, `wait_booted`). Every node has the guide's haproxy.cfg
(lab.guide.haproxy_config) in its own /etc/haproxy (on its disk, kept across reboots), with
a fresh /run that has no /run/haproxy yet.

Usage:

    with Cluster(nodes=2, token_ms=1000) as cluster:      # start() on enter, teardown on exit
        cluster.configure('primitive vip ocf:kuth:IPaddr2 params ip=198.18.1.20 ...')
        cluster.wait_for(lambda: cluster.locate("vip"), timeout=30, what="vip started")
        cluster.client.get("http://198.18.1.20/").body    # 'hapx-node01'
        cluster.link_down("hapx-node01")

API (see each docstring):
    Cluster(nodes=2, token_ms=1000, agents_dir=AGENTS, properties=None, logs_dir=None,
            package_root=None, fencing=True, extra_agents=None)
        a context manager: start() on enter (teardown if it fails), teardown() on exit
    .start(timeout=90) -> float   seconds until every node sees all online and one DC
                                  (also kept as .started_in)
    .teardown()                   safe at any point, twice
    .reset(timeout=60)            every node on, cables in, ring healed, Pacemaker up
                                  everywhere, no resources (but the fence device),
                                  constraints, failures or fencing history, stand-ins
                                  serving, the lab's haproxy.cfg: ready for the next test
    .nodes: list[Node]; .names: list[str]; .node(name) -> Node; .client: Client
    .kube_masters: dict[str, Netns]        kube-mast01..03, serving their name on :6443
    .status(view=None) -> Status  crm_mon's XML as .dc, .quorate, .online, .resources
                                  {id: [nodes]} (groups and clones too), .failures,
                                  .attributes {node: {name: value}} (as crm_mon -A)
    .locate(resource, view=None) -> list[str]   where it is active, as node `view` sees it
    .crm(*args, view=None, input=None) -> str   crmsh on a node
    .handed_over(resource, node) -> [str]       connections ocf:kuth:IPaddr2 handed over
    .configure(text, view=None)   `crm configure load update -`
    .settle(timeout=60, view=None)              `crm_resource --wait`
    .wait_for(predicate, timeout=30, interval=0.25, what="") -> the predicate's truthy value
    .link_down(node) / .link_up(node)           pull / plug both cables (ring and lan)
    .partition(*groups) / .heal()               split the Corosync ring into groups of names
    .kill_pacemaker(node, sig=SIGKILL) -> pids / .start_pacemaker(node)
    .crash(node)                  the node dies at once (power_off); its fencing reboots it
    .power_off(node) / .power_on(node) / .powered(node) / .wait_booted(node)
    .fenced() -> [node]           nodes the fence device powered off since reset()
    .fence_log() -> [str]         every request the power switch served
    .stop_kube_master(name) / .start_kube_master(name)   a stand-in down / up again
    .write_haproxy_config(text, names=None)     /etc/haproxy/haproxy.cfg (root, 0644)
    ClusterError (lab.command): a command failed or a wait timed out (the message has
    crm_mon's view)
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import TypeVar

from lab import AGENTS, apiserver, processes
from lab.command import ClusterError
from lab.fencing import AGENT, PowerSwitch
from lab.guide import haproxy_config
from lab.netns import NamedPool, Netns
from lab.nodes import HOSTS, PACEMAKER_ENV, Node
from lab.teardown import harness_prefix, lab_dir, reap_stale, start_reaper
from lab.topology import (CLIENT_ADDRESS, KUBE_MASTERS, KUBE_PORT, NAME_PREFIX, NODE_HTTP_PORT,
                          POWER_ADDRESS)
from lab.traffic import Client

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
FENCE_DEVICE = "fence-lab"  # the fence device's resource id
_clusters = itertools.count()
T = TypeVar("T")

# -- what crm_mon says -----------------------------------------------------------------------

class Status:
    """One node's view of the cluster, from `crm_mon --output-as=xml`."""

    def __init__(self, xml_text: str) -> None:
        root = ET.fromstring(xml_text)
        dc = root.find("summary/current_dc")
        self.dc = dc.get("name") if dc is not None and dc.get("present") == "true" else None
        self.quorate = dc is not None and dc.get("with_quorum") == "true"
        self.online = sorted(n.get("name", "") for n in root.iterfind("nodes/node")
                             if n.get("online") == "true")
        # Nodes to be fenced, and nodes in the membership whose controller has not joined:
        # a resource shown on either is only where it was last seen.
        self.unclean = sorted(n.get("name", "") for n in root.iterfind("nodes/node")
                              if n.get("unclean") == "true")
        self.pending = sorted(n.get("name", "") for n in root.iterfind("nodes/node")
                              if n.get("pending") == "true")
        self.resources: dict[str, list[str]] = {}
        resources = root.find("resources")
        if resources is not None:
            self._collect(resources, [])
        self.failures = [dict(f.attrib) for f in root.iterfind("failures/failure")]
        self.attributes = {n.get("name", ""): {a.get("name", ""): a.get("value", "")
                                               for a in n.iterfind("attribute")}
                           for n in root.iterfind("node_attributes/node")}

    def _collect(self, parent: ET.Element, owners: list[str]) -> None:
        """Nodes where each resource is active, also under its group and clone ids."""
        for element in parent:
            rid = element.get("id", "")
            if element.tag == "resource":
                # Starting is not there yet (Pacemaker 2.1 records pending actions); a
                # Stopping or failed instance still is.
                active = element.get("active") == "true" and element.get("role") != "Starting"
                nodes = [n.get("name", "") for n in element.iterfind("node") if active]
                for key in (rid.split(":")[0], *owners):
                    self.resources.setdefault(key, [])
                    self.resources[key] = sorted(set(self.resources[key]) | set(nodes))
            else:
                self.resources.setdefault(rid, [])
                self._collect(element, [*owners, rid])

    def __repr__(self) -> str:
        return (f"Status(dc={self.dc}, quorate={self.quorate}, online={self.online}, "
                f"unclean={self.unclean}, pending={self.pending}, "
                f"resources={self.resources}, failures={self.failures}, "
                f"attributes={self.attributes})")


# -- the cluster -----------------------------------------------------------------------------

def corosync_conf(nodes: list[Node], token_ms: int) -> str:
    """corosync.conf for these nodes: knet without crypto (the ring never leaves the
    namespaces); two_node for a pair, so the survivor of a pair keeps quorum."""
    entries = "".join(f"    node {{\n        name: {n.name}\n        nodeid: {n.number}\n"
                      f"        ring0_addr: {n.ring_address}\n    }}\n" for n in nodes)
    two_node = "    two_node: 1\n" if len(nodes) == 2 else ""
    return (f"totem {{\n    version: 2\n    cluster_name: {NAME_PREFIX}\n    transport: knet\n"
            f"    token: {token_ms}\n    crypto_cipher: none\n    crypto_hash: none\n}}\n"
            f"nodelist {{\n{entries}}}\n"
            f"quorum {{\n    provider: corosync_votequorum\n{two_node}}}\n"
            "logging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n"
            "    to_syslog: no\n    to_stderr: no\n    timestamp: on\n}\n")


def hosts_file(nodes: list[Node]) -> str:
    """/etc/hosts of a node: localhost and every node's name on its ring address (crmsh
    checks that a node it is told about answers by name, `crm node standby` among them)."""
    return "127.0.0.1 localhost\n::1 localhost\n" + "".join(
        f"{n.ring_address} {n.name}\n" for n in nodes)


def default_properties(node_count: int, fencing: bool = True) -> dict[str, str]:
    """Cluster options written into the CIB before Pacemaker starts: fencing on, as the
    README tells operators, with Pacemaker's default no-quorum-policy (stop: two_node keeps
    a pair's survivor quorate); without fencing, a pair ignores quorum as the guide does. A
    short dc-deadtime, so the first DC election does not wait the default 20 s."""
    if fencing:
        return {"stonith-enabled": "true", "dc-deadtime": "2s"}
    return {"stonith-enabled": "false", "dc-deadtime": "2s",
            "no-quorum-policy": "ignore" if node_count == 2 else "stop"}


def fence_device(nodes: list[Node]) -> str:
    """The CIB's primitive for the lab's fence device (lab.fencing), fencing every node."""
    hosts = " ".join(n.name for n in nodes)
    return (f'<primitive id="{FENCE_DEVICE}" class="stonith" type="{AGENT}">'
            f'<instance_attributes id="{FENCE_DEVICE}-params">'
            f'<nvpair id="{FENCE_DEVICE}-ip" name="ip" value="{POWER_ADDRESS}"/>'
            f'<nvpair id="{FENCE_DEVICE}-hosts" name="pcmk_host_list" value="{hosts}"/>'
            f'</instance_attributes><operations>'
            f'<op id="{FENCE_DEVICE}-monitor" name="monitor" interval="60s"/>'
            f'</operations></primitive>')


# From power-on to Corosync: a machine's firmware and kernel. A real one takes far longer; a
# node back in under a second joins before its fencer has told the cluster that the reboot
# is done, and its controller then stops for good ("We were allegedly just fenced"), seen
# with Pacemaker 3.0.
FIRMWARE_S = 3.0


class Cluster:
    """nodes (2 or 3) Debian nodes running Corosync and Pacemaker, a lan with kube-apiserver
    stand-ins and a client. A context manager: start() on enter, teardown() on exit."""

    def __init__(self, nodes: int = 2, token_ms: int = 1000, agents_dir: str | None = AGENTS,
                 properties: dict[str, str] | None = None, logs_dir: str | None = None,
                 package_root: str | None = None, fencing: bool = True,
                 extra_agents: dict[str, str] | None = None) -> None:
        """agents_dir: shown to the nodes as /usr/lib/ocf/resource.d/kuth; None leaves the
        machine's (an installed package). fencing: the lab's fence device (lab.fencing) in
        the CIB and stonith-enabled=true. properties: CIB cluster options preset before
        start (default: default_properties). logs_dir: where teardown copies every node's logs, in a
        directory per cluster. package_root: a Debian package unpacked there (`dpkg -x`):
        its usr/ is laid over each node's /usr (a read-only overlay), so the nodes run the
        package's files where it installs them and the machine's /usr stays as it is; give
        agents_dir=None with it. extra_agents: agent files laid into every node's provider
        directories, {"heartbeat/haproxy": path} (lab.nodes; the old shell agent of
        lab/legacy, for a migration)."""
        if nodes not in (2, 3):
            raise ValueError("a cluster here has 2 or 3 nodes")
        self.token_ms = token_ms
        self.agents_dir = os.path.abspath(agents_dir) if agents_dir else None
        self.fencing = fencing
        self.extra_agents = dict(extra_agents or {})
        self.properties = (properties if properties is not None
                           else default_properties(nodes, fencing))
        self.logs_dir = logs_dir
        self.package_root = os.path.abspath(package_root) if package_root else None
        self.prefix = harness_prefix(os.getpid(), next(_clusters))
        self.dir = lab_dir(self.prefix)   # the nodes' disks
        self.pool = NamedPool(self.prefix)
        self.reaper: subprocess.Popen[bytes] | None = None
        self.nodes: list[Node] = []
        self.switch: PowerSwitch | None = None
        self.power_lock = threading.RLock()
        self.boots: dict[str, threading.Thread] = {}   # boots started by power_on
        self.boot_errors: dict[str, BaseException] = {}
        self.fence_mark = 0   # fenced() counts from here
        self.rechecks = 0     # recheck()'s counter, the value of its cluster option
        self.servers: dict[str, subprocess.Popen[bytes]] = {}   # each node's name on :80
        self.kube_servers: dict[str, subprocess.Popen[bytes]] = {}
        self.daemons: dict[str, list[subprocess.Popen[bytes]]] = {}
        self.ring_switch: Netns | None = None
        self.lan_switch: Netns | None = None
        self.client: Client
        self.kube_masters: dict[str, Netns] = {}
        self.cut: set[str] = set()       # nodes whose cables are pulled
        self.stopped: set[str] = set()   # nodes whose Pacemaker was killed
        self.partitioned = False
        self.node_count = nodes
        self.started_in = 0.0

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name}; nodes are {self.names}")

    # -- bring-up

    def start(self, timeout: float = 90) -> float:
        """Build the networks and nodes, start Corosync and Pacemaker everywhere and wait until
        every node sees all nodes online and a DC. Returns the seconds it took."""
        began = time.monotonic()
        reap_stale()
        self.reaper = start_reaper(self.prefix)
        os.makedirs(self.dir)
        self._build_networks()
        for node in self.nodes:
            self._boot(node, first=True)
        for name in self.kube_masters:
            self.start_kube_master(name)
        self.wait_for(self._formed, timeout, what="all nodes online with a DC")
        self.wait_for(self._serving, 10, what="HTTP servers answering")
        self.started_in = time.monotonic() - began
        return self.started_in

    def _build_networks(self) -> None:
        self.nodes = [Node(f"{NAME_PREFIX}-node0{n}", n, self.pool.new(f"node0{n}"),
                           os.path.join(self.dir, f"node0{n}"))
                      for n in range(1, self.node_count + 1)]
        self.ring_switch = self.pool.switch([n.netns for n in self.nodes], dev="ring0")
        kubes = {name: self.pool.new(name) for name in KUBE_MASTERS}
        client = self.pool.new("client")
        power = self.pool.new("power")
        self.lan_switch = self.pool.switch([*(n.netns for n in self.nodes), *kubes.values(),
                                            client, power], dev="lan0")
        power.ip("addr", "add", f"{POWER_ADDRESS}/24", "dev", "lan0")
        if self.fencing:
            self.switch = PowerSwitch(power, self)
        for name, ns in kubes.items():
            ns.ip("addr", "add", f"{KUBE_MASTERS[name]}/24", "dev", "lan0")
        client.ip("addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "lan0")
        self.client = Client(client)
        self.kube_masters = kubes

    def _boot(self, node: Node, first: bool = False) -> None:
        """Boot node: its namespaces and layout (on the first boot also what an installer
        puts on its disk: /etc/hosts, corosync.conf, haproxy.cfg, a preset CIB), cables
        plugged unless pulled, then Corosync, Pacemaker and its HTTP server on :80."""
        node.boot(self.agents_dir, self.package_root, fence_agent=self.fencing,
                  extra_agents=self.extra_agents)
        if first:
            node.write(HOSTS, hosts_file(self.nodes))  # crmsh resolves node names
            node.write("/etc/corosync/corosync.conf", corosync_conf(self.nodes, self.token_ms))
            self.write_haproxy_config(haproxy_config(), [node.name])
            self._preset_cib(node)
        self._plug(node.name)
        self.daemons[node.name] = [node.popen(["corosync", "-f"],
                                              log="/var/log/corosync/stdout.log")]
        self.wait_for(lambda: node.run(["corosync-cfgtool", "-s"], check=False).returncode == 0,
                      15, what=f"corosync answering on {node.name}")
        self.start_pacemaker(node.name)
        self.servers[node.name] = node.popen([*apiserver.command(node.name, NODE_HTTP_PORT)])

    def _preset_cib(self, node: Node) -> None:
        """An empty CIB with self.properties (and the fence device), in place before
        Pacemaker first starts."""
        cib = "/var/lib/pacemaker/cib/cib.xml"
        node.write(cib, node.run(["cibadmin", "--empty"]).stdout)
        env = {**PACEMAKER_ENV, "CIB_file": cib}
        for name, value in self.properties.items():
            node.run(["crm_attribute", "--type", "crm_config", "--name", name,
                      "--update", value], env=env)
        if self.fencing:
            node.run(["cibadmin", "--create", "--scope", "resources", "--xml-text",
                      fence_device(self.nodes)], env=env)
        node.run(["chown", "hacluster:haclient", cib])

    def write_haproxy_config(self, text: str, names: Iterable[str] | None = None) -> None:
        """Write /etc/haproxy/haproxy.cfg on the nodes names (default: all), root's and
        0644 as a package would leave it (the agent refuses a file others may change)."""
        for name in names if names is not None else self.names:
            node = self.node(name)
            node.write(HAPROXY_CFG, text)
            os.chmod(node.path(HAPROXY_CFG), 0o644)

    def start_pacemaker(self, name: str) -> None:
        """Start pacemakerd on a node (again, after kill_pacemaker)."""
        node = self.node(name)
        self.daemons.setdefault(name, []).append(
            node.popen(["pacemakerd"], log="/var/log/pacemaker/stdout.log", env=PACEMAKER_ENV))
        self.stopped.discard(name)

    def start_kube_master(self, name: str) -> None:
        """Start the stand-in kube-apiserver name (again, after stop_kube_master)."""
        self.kube_servers[name] = self.kube_masters[name].popen(
            *apiserver.command(name, KUBE_PORT), stdin=subprocess.DEVNULL)

    def stop_kube_master(self, name: str) -> None:
        """Kill the stand-in kube-apiserver name: its port refuses connections, as when the
        apiserver is down on a running machine."""
        proc = self.kube_servers.pop(name)
        proc.kill()
        proc.wait()

    def _serving(self) -> bool:
        """Every kube-apiserver stand-in and node answers the client."""
        urls = [f"http://{a}:{KUBE_PORT}/" for a in KUBE_MASTERS.values()]
        urls += [f"http://{n.lan_address}:{NODE_HTTP_PORT}/" for n in self.nodes]
        return all(self.client.get(url, timeout=1).status == 200 for url in urls)

    def _formed(self) -> bool:
        """Every node sees every node online and the same DC."""
        views = [self.status(view=node.name) for node in self.nodes]
        return (all(v.online == self.names for v in views)
                and len({v.dc for v in views}) == 1 and views[0].dc is not None)

    def reset(self, timeout: float = 60) -> None:
        """Back to a whole cluster without resources (but the fence device), constraints,
        failure or fencing history, for the next test: every node powered on and booted,
        cables in, ring healed, Pacemaker running on every node, none in standby, every
        kube-apiserver stand-in serving, the lab's haproxy.cfg on every node."""
        for name in sorted(self.cut):
            self.link_up(name)
        if self.partitioned:
            self.heal()
        for name in self.names:
            self.power_on(name)
        for name in self.names:
            self.wait_booted(name)
        for name in sorted(self.stopped):
            self.start_pacemaker(name)
        self.wait_for(self._formed, timeout, what="all nodes online with a DC")
        node = self.view_node(None)
        device = fence_device(self.nodes) if self.fencing else ""
        haproxies = self._haproxy_resources()
        node.run(["cibadmin", "--replace", "--scope", "constraints", "--xml-text",
                  "<constraints/>"])
        node.run(["cibadmin", "--replace", "--scope", "resources", "--xml-text",
                  f"<resources>{device}</resources>"])
        self.wait_for(lambda: not any(nodes for rsc, nodes in self.status().resources.items()
                                      if rsc != FENCE_DEVICE), timeout,
                      what="former resources stopped")
        node.run(["crm_resource", "--cleanup"])
        # Removing the constraints first may have started a resource they held back; once
        # the cluster is idle, nothing runs and nothing will.
        self.settle(timeout)
        self._forget_accepted_configs(haproxies)
        if self.fencing:
            node.run(["stonith_admin", "--cleanup", "--history", "*"])
        self.fence_mark = len(self.fence_log())
        for name in self.names:
            node.run(["crm_attribute", "--type", "nodes", "--node", name, "--name", "standby",
                      "--delete"])
        for name in self.kube_masters:
            if name not in self.kube_servers:
                self.start_kube_master(name)
        self.write_haproxy_config(haproxy_config())

    def _haproxy_resources(self) -> list[str]:
        """The ids of the ocf:kuth:haproxy primitives configured now."""
        xml = self.view_node(None).run(["cibadmin", "--query", "--scope", "resources"]).stdout
        return [p.get("id", "") for p in ET.fromstring(xml).iter("primitive")
                if p.get("provider") == "kuth" and p.get("type") == "haproxy"]

    def _forget_accepted_configs(self, resources: list[str]) -> None:
        """What ocf:kuth:haproxy keeps of the last accepted configuration outlives its
        resource by design (haproxy_accepted): each node's copy and the cluster's private
        attribute; a new test starts without them."""
        from ocf_lib.logic.haproxy_accepted import attribute
        for node in self.nodes:
            directory = node.path("/run/resource-agents")
            for name in os.listdir(directory) if os.path.isdir(directory) else []:
                if name.startswith("kuth-haproxy-") and ".accepted." in name:
                    os.unlink(os.path.join(directory, name))
            for resource in resources:
                self.view_node(None).run(["attrd_updater", "-D", "-n", attribute(resource),
                                          "-N", node.name], check=False)

    # -- looking

    def view_node(self, view: str | None) -> Node:
        """The node to ask: view, else the first node with its cables in and Pacemaker up."""
        if view:
            return self.node(view)
        for node in self.nodes:
            if node.name not in self.cut and node.name not in self.stopped and node.powered:
                return node
        raise ClusterError("no node is reachable to ask")

    def status(self, view: str | None = None) -> Status:
        """The cluster as the node view (default: see view_node) sees it."""
        node = self.view_node(view)
        return Status(node.run(["crm_mon", "-1", "--output-as=xml"], timeout=20).stdout)

    def locate(self, resource: str, view: str | None = None) -> list[str]:
        """The nodes where resource (or group, clone) is active, as view sees it: started,
        stopping or failed there, not while its start is still running."""
        return self.status(view).resources.get(resource, [])

    def handed_over(self, resource: str, name: str) -> list[str]:
        """The connections ('client,port,local port') that the owner of the ocf:kuth:IPaddr2
        resource handed over to node name, for it to tickle if it takes the address after
        losing the owner (ocf_lib.logic.handover.HandOver's private attributes: a header,
        and the shards it names)."""
        from ocf_lib.adapters import inet
        from ocf_lib.logic import handover_codec as codec
        from ocf_lib.logic.handover import handover_attribute
        attribute = handover_attribute(resource)
        shards, delta = codec.parse_header(self._attribute(attribute, name))
        found = set(delta)
        for index in range(shards):
            found.update(codec.decode(self._attribute(codec.shard_name(attribute, shards,
                                                                       index), name) or ""))
        family = {4: inet.AF_INET, 16: inet.AF_INET6}
        return [f"{inet.canonical(family[len(client)], client)},{client_port},{port}"
                for client, client_port, port in sorted(found)]

    def _attribute(self, attribute: str, name: str) -> str | None:
        """The value of node name's transient attribute as its attrd has it; None unset."""
        out = self.node(name).run(["attrd_updater", "-Q", "-n", attribute, "-N", name],
                                  check=False).stdout
        return out.partition('value="')[2].rpartition('"')[0] or None

    def crm(self, *args: str, view: str | None = None, input: str | None = None) -> str:
        """Run crmsh on a node; returns its output, raises ClusterError on failure."""
        return self.view_node(view).run(["crm", *args], input=input, timeout=120).stdout

    def pcs(self, *args: str, view: str | None = None, input: str | None = None) -> str:
        """Run pcs on a node (its resource and constraint commands change the live CIB
        without pcsd); returns its output, raises ClusterError on failure."""
        return self.view_node(view).run(["pcs", *args], input=input, timeout=120).stdout

    def configure(self, text: str, view: str | None = None) -> None:
        """Apply crm configure text (merged with what is there: `crm configure load update -`)."""
        self.crm("configure", "load", "update", "-", view=view, input=text)

    def settle(self, timeout: float = 60, view: str | None = None) -> None:
        """Wait until Pacemaker has nothing left to do (`crm_resource --wait`)."""
        self.view_node(view).run(["crm_resource", "--wait", f"--timeout={int(timeout)}s"],
                                 timeout=timeout + 10)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 30, interval: float = 0.25,
                 what: str = "") -> T:
        """Call predicate until it returns something truthy and return that. A ClusterError
        or OSError counts as not yet. On timeout, ClusterError names what, the last value or
        error, and the cluster's state."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except (ClusterError, OSError, subprocess.TimeoutExpired) as err:
                last = err
            if time.monotonic() >= deadline:
                raise ClusterError(f"not reached in {timeout} s: {what or predicate}; "
                                   f"last: {last!r}; {self._describe()}")
            time.sleep(interval)

    def _describe(self) -> str:
        """The cluster's state and the power switch's requests since the last reset."""
        switch = f"; power switch since reset: {self.fence_log()[self.fence_mark:]}"
        try:
            return repr(self.status()) + switch
        except (ClusterError, OSError, subprocess.TimeoutExpired) as err:
            return f"status unavailable: {err}{switch}"

    # -- failures

    def _port(self, name: str) -> str:
        return f"port{self.names.index(name)}"

    def link_down(self, name: str) -> None:
        """Pull both cables of a node (ring and lan): its interfaces lose carrier."""
        self.cut.add(name)
        self._plug(name)

    def link_up(self, name: str) -> None:
        self.cut.discard(name)
        self._plug(name)

    def _plug(self, name: str) -> None:
        """The node's switch ports carry traffic only while it is powered and its cables are
        in (a powered-off machine's NIC has no carrier)."""
        self._set_ports(name, self.powered(name) and name not in self.cut)

    def _set_ports(self, name: str, up: bool) -> None:
        for switch in (self.ring_switch, self.lan_switch):
            switch.ip("link", "set", self._port(name),  # type: ignore[union-attr]
                      "up" if up else "down")

    # -- power (the machines of lab.fencing's PowerSwitch)

    def crash(self, name: str) -> None:
        """The node dies at once, as in a power loss or kernel panic (power_off, not through
        Pacemaker); with fencing on, the survivors' fencing reboots it."""
        self.power_off(name)

    def power_off(self, name: str) -> None:
        """Cut the node's power: no carrier, every process ended at once (a boot still
        running is let finish first). Its disk stays."""
        with self.power_lock:
            self._join_boot(name)
            self._set_ports(name, False)
            self.node(name).power_off()
            procs = self.daemons.pop(name, [])
            if name in self.servers:
                procs.append(self.servers.pop(name))
            for proc in procs:
                proc.kill()  # already dead unless it never got into the node
                proc.wait()
            self.stopped.discard(name)

    def power_on(self, name: str) -> None:
        """Press the node's power button: returns at once, the node boots in a thread
        (wait_booted waits for it). Nothing happens to a node already on."""
        with self.power_lock:
            if self.powered(name):
                return
            self._join_boot(name)
            self.boot_errors.pop(name, None)
            boot = threading.Thread(target=self._boot_thread, args=(name,), daemon=True,
                                    name=f"boot-{name}")
            self.boots[name] = boot
            boot.start()

    def _boot_thread(self, name: str) -> None:
        try:
            time.sleep(FIRMWARE_S)
            self._boot(self.node(name))
        except BaseException as err:  # kept for wait_booted, which raises it
            self.boot_errors[name] = err

    def _join_boot(self, name: str) -> None:
        boot = self.boots.pop(name, None)
        if boot is not None:
            boot.join()

    def wait_booted(self, name: str, timeout: float = 60) -> None:
        """Wait until the node is powered on (by power_on: its fencing, or reset) and its
        boot has started Pacemaker; raise the boot's error."""
        self.wait_for(lambda: self.powered(name), timeout, what=f"{name} powered on")
        self._join_boot(name)
        if name in self.boot_errors:
            raise ClusterError(f"{name} failed to boot: {self.boot_errors.pop(name)!r}")

    def powered(self, name: str) -> bool:
        """The node is on: booted or booting, not powered off."""
        boot = self.boots.get(name)
        return self.node(name).powered or (boot is not None and boot.is_alive())

    def node_at(self, address: str) -> str | None:
        """The node whose lan address this is (None: another host)."""
        return next((n.name for n in self.nodes if n.lan_address == address), None)

    def fence_log(self) -> list[str]:
        """Every request the power switch served: 'requester: request -> answer'."""
        return list(self.switch.log) if self.switch else []

    def fenced(self) -> list[str]:
        """The nodes a fence device powered off since the last reset(), in order (crash()
        does not count: it does not go through the switch)."""
        return [line.split(" off ")[1].split(" -> ")[0]
                for line in self.fence_log()[self.fence_mark:]
                if " off " in line and line.endswith("-> ok")]

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the Corosync ring: each group of node names gets a bridge of its own. The lan
        stays whole, as in a real split brain where clients still reach every node."""
        groups_ = [list(g) for g in groups]
        if sorted(n for g in groups_ for n in g) != sorted(self.names):
            raise ValueError(f"the groups must name every node once: {groups_}")
        sw = self.ring_switch
        assert sw is not None
        for number, group in enumerate(groups_):
            bridge = f"br{number}"
            if number:
                sw.ip("link", "add", bridge, "type", "bridge")
                sw.ip("link", "set", bridge, "up")
            for name in group:
                sw.ip("link", "set", self._port(name), "master", bridge)
        self.partitioned = True

    def heal(self) -> None:
        """Join the ring again after partition()."""
        sw = self.ring_switch
        assert sw is not None
        for name in self.names:
            sw.ip("link", "set", self._port(name), "master", "br0")
        for line in sw.ip("-o", "link", "show", "type", "bridge").splitlines():
            bridge = line.split(":")[1].strip()
            if bridge != "br0":
                sw.ip("link", "del", bridge)
        self.partitioned = False

    def kill_pacemaker(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Send sig to pacemakerd and all its daemons on a node (Corosync stays): a crash of
        the cluster manager. Returns the pids signalled.

        The fencing that follows a crash is what the tests are about, and the DC of
        Pacemaker 2.1.5 and 3.0.0 at times misses it: it schedules from the status it had
        before its own record that the node's controller left, sees the node online, and
        does nothing more until its next recheck (cluster-recheck-interval, 15 minutes).
        Killing the controller last, once the others have left, made that rarer (1 run in
        17 instead of 1 in 4-10); after a SIGKILL the lab also plays the recheck at once,
        as soon as the CIB records the controller's end (recheck)."""
        node = self.node(name)
        fence_mark = len(self.fence_log())
        pids = node.pids("pacemaker")
        controller = set(node.pids("pacemaker-contro"))  # comm is cut at 15 characters
        for batch in ([p for p in pids if p not in controller], sorted(controller)):
            for pid in batch:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if batch and sig == signal.SIGKILL:
                self.wait_for(lambda: not any(processes.alive(p) for p in batch), 10,
                              interval=0.05, what=f"{name}'s daemons gone")
        self.stopped.add(name)
        if controller and sig == signal.SIGKILL:
            self.wait_for(lambda: self._seen_lost(name, fence_mark), 10, interval=0.05,
                          what=f"the CIB's record that {name}'s controller left")
            self.recheck()
        return pids

    def _seen_lost(self, name: str, fence_mark: int) -> bool:
        """The CIB records that name's controller left: crm_mon, which schedules from it as
        the DC does, finds the node unclean; or it was fenced already (since fence_mark)."""
        return (name in self.status().unclean
                or any(f" off {name} " in line for line in self.fence_log()[fence_mark:]))

    def recheck(self) -> None:
        """Make the DC run its scheduler now, as its cluster-recheck-interval would later:
        a change of a lab-only cluster option is a configuration change, which ends the DC's
        transition and computes a new one from the current CIB."""
        self.rechecks += 1
        self.view_node(None).run(["crm_attribute", "--type", "crm_config", "--name",
                                  "kuth-lab-recheck", "--update", str(self.rechecks)])

    # -- teardown

    def teardown(self) -> None:
        """Kill and delete everything this harness made; safe to call at any point, twice."""
        if self.switch:
            self.switch.close()   # no power button pressed from now on
        for name in list(self.boots):
            self._join_boot(name)
        if self.logs_dir:
            self._collect_logs()
        self.pool.cleanup()
        for proc in [*self.servers.values(), *self.kube_servers.values(),
                     *(p for ps in self.daemons.values() for p in ps),
                     *(n.holder for n in self.nodes if n.holder)]:
            proc.kill()  # outside the namespaces only if it never got in
            proc.wait()
        self.servers.clear()
        self.kube_servers.clear()
        self.daemons.clear()
        if self.reaper:
            self.reaper.stdin.close()  # type: ignore[union-attr]
            self.reaper.wait()
            self.reaper = None
        for node in self.nodes:
            node.holder = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _collect_logs(self) -> None:
        """Copy every node's Pacemaker and Corosync logs (from its disk, so also from a node
        powered off) and the power switch's log to logs_dir/PREFIX, before they vanish."""
        assert self.logs_dir
        directory = os.path.join(self.logs_dir, self.prefix.rstrip("-"))
        os.makedirs(directory, exist_ok=True)
        for node in self.nodes:
            for log in ("/var/log/pacemaker/pacemaker.log", "/var/log/corosync/corosync.log"):
                try:
                    shutil.copyfile(f"{node.disk}{log}", os.path.join(
                        directory, f"{node.name}-{os.path.basename(log)}"))
                except OSError:
                    pass  # a node that failed before it had logs
        with open(os.path.join(directory, "power-switch.log"), "w", encoding="utf-8") as f:
            f.write("".join(f"{line}\n" for line in self.fence_log()))
