"""A real Pacemaker + Corosync cluster on one machine: 2 or 3 nodes (lab.nodes) on a ring
switch and a lan switch, the kube-apiserver stand-ins (lab.apiserver) and a client
(lab.traffic) on the lan, in the topology of lab.topology.

What callers get: `Cluster`, a context manager that builds all of it and starts Corosync and
Pacemaker on every node (about 5 s: cluster options are preset in the CIB before Pacemaker
starts, see default_properties), and removes it all at exit (lab.teardown: also after a
SIGKILL of the caller). In between: look (`status`, `locate`, `crm`), configure
(`configure`, `settle`, `wait_for`), and inject failures (`link_down`, `partition`,
`kill_pacemaker`, `stop_kube_master`). Every node has the guide's haproxy.cfg
(lab.guide.haproxy_config) in its private /etc/haproxy, with a fresh /run that has no
/run/haproxy yet.

Usage:

    with Cluster(nodes=2, token_ms=1000) as cluster:      # start() on enter, teardown on exit
        cluster.configure('primitive vip ocf:kuth:IPaddr2 params ip=198.18.1.20 ...')
        cluster.wait_for(lambda: cluster.locate("vip"), timeout=30, what="vip started")
        cluster.client.get("http://198.18.1.20/").body    # 'hapx-node01'
        cluster.link_down("hapx-node01")

API (see each docstring):
    Cluster(nodes=2, token_ms=1000, agents_dir=AGENTS, properties=None, logs_dir=None,
            package_root=None)
        a context manager: start() on enter (teardown if it fails), teardown() on exit
    .start(timeout=90) -> float   seconds until every node sees all online and one DC
                                  (also kept as .started_in)
    .teardown()                   safe at any point, twice
    .reset(timeout=60)            cables in, ring healed, Pacemaker up everywhere, no
                                  resources, constraints or failures, stand-ins serving,
                                  the lab's haproxy.cfg: ready for the next test
    .nodes: list[Node]; .names: list[str]; .node(name) -> Node; .client: Client
    .kube_masters: dict[str, Netns]        kube-mast01..03, serving their name on :6443
    .status(view=None) -> Status  crm_mon's XML as .dc, .quorate, .online, .resources
                                  {id: [nodes]} (groups and clones too), .failures,
                                  .attributes {node: {name: value}} (as crm_mon -A)
    .locate(resource, view=None) -> list[str]   where it is active, as node `view` sees it
    .crm(*args, view=None, input=None) -> str   crmsh on a node
    .configure(text, view=None)   `crm configure load update -`
    .settle(timeout=60, view=None)              `crm_resource --wait`
    .wait_for(predicate, timeout=30, interval=0.25, what="") -> the predicate's truthy value
    .link_down(node) / .link_up(node)           pull / plug both cables (ring and lan)
    .partition(*groups) / .heal()               split the Corosync ring into groups of names
    .kill_pacemaker(node, sig=SIGKILL) -> pids / .start_pacemaker(node)
    .stop_kube_master(name) / .start_kube_master(name)   a stand-in down / up again
    .write_haproxy_config(text, names=None)     /etc/haproxy/haproxy.cfg (root, 0644)
    ClusterError (lab.command): a command failed or a wait timed out (the message has
    crm_mon's view)
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import TypeVar

from lab import AGENTS, apiserver
from lab.command import ClusterError
from lab.guide import haproxy_config
from lab.netns import NamedPool, Netns
from lab.nodes import PACEMAKER_ENV, Node
from lab.teardown import harness_prefix, reap_stale, start_reaper
from lab.topology import CLIENT_ADDRESS, KUBE_MASTERS, KUBE_PORT, NAME_PREFIX, NODE_HTTP_PORT
from lab.traffic import Client

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
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


def default_properties(node_count: int) -> dict[str, str]:
    """Cluster options written into the CIB before Pacemaker starts: no fencing (nothing to
    fence with here), the usual no-quorum-policy for the size, and a short dc-deadtime so the
    first DC election does not wait the default 20 s."""
    return {"stonith-enabled": "false", "dc-deadtime": "2s",
            "no-quorum-policy": "ignore" if node_count == 2 else "stop"}


class Cluster:
    """nodes (2 or 3) Debian nodes running Corosync and Pacemaker, a lan with kube-apiserver
    stand-ins and a client. A context manager: start() on enter, teardown() on exit."""

    def __init__(self, nodes: int = 2, token_ms: int = 1000, agents_dir: str | None = AGENTS,
                 properties: dict[str, str] | None = None, logs_dir: str | None = None,
                 package_root: str | None = None) -> None:
        """agents_dir: shown to the nodes as /usr/lib/ocf/resource.d/kuth; None leaves the
        machine's (an installed package). properties: CIB cluster options preset before
        start (default_properties). logs_dir: where teardown copies every node's logs, in a
        directory per cluster. package_root: a Debian package unpacked there (`dpkg -x`):
        its usr/ is laid over each node's /usr (a read-only overlay), so the nodes run the
        package's files where it installs them and the machine's /usr stays as it is; give
        agents_dir=None with it."""
        if nodes not in (2, 3):
            raise ValueError("a cluster here has 2 or 3 nodes")
        self.token_ms = token_ms
        self.agents_dir = os.path.abspath(agents_dir) if agents_dir else None
        self.properties = properties if properties is not None else default_properties(nodes)
        self.logs_dir = logs_dir
        self.package_root = os.path.abspath(package_root) if package_root else None
        self.prefix = harness_prefix(os.getpid(), next(_clusters))
        self.pool = NamedPool(self.prefix)
        self.reaper: subprocess.Popen[bytes] | None = None
        self.nodes: list[Node] = []
        self.servers: list[subprocess.Popen[bytes]] = []
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
        self._build_networks()
        for node in self.nodes:
            self._prepare_node(node)
        for node in self.nodes:
            self._start_corosync(node)
        for node in self.nodes:
            self._wait_corosync(node)
            self.start_pacemaker(node.name)
        self._start_servers()
        self.wait_for(self._formed, timeout, what="all nodes online with a DC")
        self.wait_for(self._serving, 10, what="HTTP servers answering")
        self.started_in = time.monotonic() - began
        return self.started_in

    def _build_networks(self) -> None:
        self.nodes = [Node(f"{NAME_PREFIX}-node0{n}", n, self.pool.new(f"node0{n}"))
                      for n in range(1, self.node_count + 1)]
        self.ring_switch = self.pool.switch([n.netns for n in self.nodes], dev="ring0")
        kubes = {name: self.pool.new(name) for name in KUBE_MASTERS}
        client = self.pool.new("client")
        self.lan_switch = self.pool.switch([*(n.netns for n in self.nodes), *kubes.values(),
                                            client], dev="lan0")
        for node in self.nodes:
            node.netns.ip("addr", "add", f"{node.ring_address}/24", "dev", "ring0")
            node.netns.ip("addr", "add", f"{node.lan_address}/24", "dev", "lan0")
        for name, ns in kubes.items():
            ns.ip("addr", "add", f"{KUBE_MASTERS[name]}/24", "dev", "lan0")
        client.ip("addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "lan0")
        self.client = Client(client)
        self.kube_masters = kubes

    def _prepare_node(self, node: Node) -> None:
        """The node booted, with its Corosync and HAProxy configuration and preset CIB."""
        node.boot(self.agents_dir, self.package_root)
        node.write("/run/hosts", hosts_file(self.nodes))  # crmsh resolves node names
        node.run(["mount", "--bind", "/run/hosts", "/etc/hosts"])
        node.write("/etc/corosync/corosync.conf", corosync_conf(self.nodes, self.token_ms))
        self.write_haproxy_config(haproxy_config(), [node.name])
        self._preset_cib(node)

    def _preset_cib(self, node: Node) -> None:
        """An empty CIB with self.properties, in place before Pacemaker first starts."""
        cib = "/var/lib/pacemaker/cib/cib.xml"
        node.write(cib, node.run(["cibadmin", "--empty"]).stdout)
        env = {**PACEMAKER_ENV, "CIB_file": cib}
        for name, value in self.properties.items():
            node.run(["crm_attribute", "--type", "crm_config", "--name", name,
                      "--update", value], env=env)
        node.run(["chown", "hacluster:haclient", cib])

    def _start_corosync(self, node: Node) -> None:
        self.daemons[node.name] = [node.popen(["corosync", "-f"],
                                              log="/var/log/corosync/stdout.log")]

    def _wait_corosync(self, node: Node, timeout: float = 15) -> None:
        self.wait_for(lambda: node.run(["corosync-cfgtool", "-s"], check=False).returncode == 0,
                      timeout, what=f"corosync answering on {node.name}")

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

    def _start_servers(self) -> None:
        """kube-apiserver stand-ins on :6443, and each node's name on :80."""
        for name in self.kube_masters:
            self.start_kube_master(name)
        for node in self.nodes:
            self.servers.append(node.popen([*apiserver.command(node.name, NODE_HTTP_PORT)]))

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
        """Back to a whole cluster without resources, constraints or failure history, for
        the next test: cables in, ring healed, Pacemaker running on every node, none in
        standby, every kube-apiserver stand-in serving, the lab's haproxy.cfg on every
        node."""
        for name in sorted(self.cut):
            self.link_up(name)
        if self.partitioned:
            self.heal()
        for name in sorted(self.stopped):
            self.start_pacemaker(name)
        self.wait_for(self._formed, timeout, what="all nodes online with a DC")
        node = self.view_node(None)
        for scope in ("constraints", "resources"):
            node.run(["cibadmin", "--replace", "--scope", scope, "--xml-text", f"<{scope}/>"])
        self.wait_for(lambda: not any(self.status().resources.values()), timeout,
                      what="former resources stopped")
        node.run(["crm_resource", "--cleanup"])
        for name in self.names:
            node.run(["crm_attribute", "--type", "nodes", "--node", name, "--name", "standby",
                      "--delete"])
        for name in self.kube_masters:
            if name not in self.kube_servers:
                self.start_kube_master(name)
        self.write_haproxy_config(haproxy_config())

    # -- looking

    def view_node(self, view: str | None) -> Node:
        """The node to ask: view, else the first node with its cables in and Pacemaker up."""
        if view:
            return self.node(view)
        for node in self.nodes:
            if node.name not in self.cut and node.name not in self.stopped:
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
        try:
            return repr(self.status())
        except (ClusterError, OSError, subprocess.TimeoutExpired) as err:
            return f"status unavailable: {err}"

    # -- failures

    def _port(self, name: str) -> str:
        return f"port{self.names.index(name)}"

    def link_down(self, name: str) -> None:
        """Pull both cables of a node (ring and lan): its interfaces lose carrier."""
        for switch in (self.ring_switch, self.lan_switch):
            switch.ip("link", "set", self._port(name), "down")  # type: ignore[union-attr]
        self.cut.add(name)

    def link_up(self, name: str) -> None:
        for switch in (self.ring_switch, self.lan_switch):
            switch.ip("link", "set", self._port(name), "up")  # type: ignore[union-attr]
        self.cut.discard(name)

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
        the cluster manager. Returns the pids signalled."""
        pids = self.node(name).pids("pacemaker")
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        self.stopped.add(name)
        return pids

    # -- teardown

    def teardown(self) -> None:
        """Kill and delete everything this harness made; safe to call at any point, twice."""
        if self.logs_dir:
            self._collect_logs()
        self.pool.cleanup()
        for proc in [*self.servers, *self.kube_servers.values(),
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

    def _collect_logs(self) -> None:
        """Copy every node's Pacemaker and Corosync logs to logs_dir/PREFIX, before they
        vanish."""
        assert self.logs_dir
        directory = os.path.join(self.logs_dir, self.prefix.rstrip("-"))
        os.makedirs(directory, exist_ok=True)
        for node in self.nodes:
            if node.holder is None or node.holder.poll() is not None:
                continue
            for log in ("/var/log/pacemaker/pacemaker.log", "/var/log/corosync/corosync.log"):
                dest = os.path.join(directory, f"{node.name}-{os.path.basename(log)}")
                try:
                    with open(dest, "w", encoding="utf-8") as f:
                        f.write(node.read(log))
                except OSError:
                    pass  # a node that failed before it had logs
