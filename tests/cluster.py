"""A real Pacemaker + Corosync cluster on one machine, for end-to-end tests, the demo and the
failover benchmark. Needs root; uses pytest nowhere.

Topology (every address in 198.18.0.0/15, every interface inside namespaces made here):

    ring switch  198.18.0.0/24  node ring0 .1 .2 .3          Corosync (knet)
    lan switch   198.18.1.0/24  node lan0  .1 .2 .3          where the VIP lives (VIP_NETWORK)
                                kube-mast01..03  .11 .12 .13  HTTP on :6443 (kube-apiservers)
                                client           .100         sends traffic

A node is a network namespace plus its own mount and UTS namespaces: a holder process
(`unshare --mount --uts --propagation private sleep infinity`) keeps them, and every command
enters them with `nsenter -t HOLDER -m -u -n`. Inside, /run, /dev/shm, /etc/{corosync,haproxy},
/var/lib/corosync, /var/lib/pacemaker, /var/log/{pacemaker,corosync,crmsh} are private tmpfs
mounts (PRIVATE_DIRS), so nodes never share state with each other or the machine, and nothing
is written to the machine's disk: the state goes away with the namespace, even after a
SIGKILL. The machine reaches a node's files through `Node.path()` (/proc/HOLDER/root/...).
Cluster options are preset in the CIB before Pacemaker starts (default_properties: no
fencing, dc-deadtime 2s), so a cluster is up in about 5 s. /usr/lib/ocf/resource.d is replaced,
only in the node, by a tmpfs holding bind mounts of the machine's providers (heartbeat,
pacemaker) and `kuth` -> `agents_dir` (a symlink, not a bind mount, so the agent's realpath
still finds ocf_lib next to it in a checkout), or, with package_root, the files of an unpacked
.deb laid over the node's /usr. Each node also serves its own name over HTTP on :80, so a GET
through the VIP tells which node answered, and has the guide's haproxy.cfg (haproxy_config())
in its private /etc/haproxy, with a fresh /run that has no /run/haproxy yet.

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
    haproxy_config(check_interval="1s", extra="") -> str   the guide's, for this lab
    Node: .run(argv, check=True, input=None, timeout=60, env=None) -> CompletedProcess;
          .popen(argv, log=None, env=None); .enter(argv) -> argv for nsenter; .path(p);
          .read(p); .write(p, text, owner=None); .addresses(dev="lan0"); .has_address(ip);
          .pids(comm_prefix); .name, .ring_address, .lan_address, .netns
    Client: .get(url, timeout=2.0, auth=None) -> HttpReply(.status, .body) or OSError;
            .connect(host, port, timeout=2.0) -> socket; .socket(); .ping(addr) -> bool;
            .run(argv)
    Traffic(client, url, interval=0.02, timeout=0.5): a GET every interval on a clock (each
            in a thread), a context manager; .results [(sent, ok)]; .outage(since, until)
            -> Outage(.longest_gap, .failed, .total); .served_since(t)
    ClusterError: a command failed or a wait timed out (the message has crm_mon's view)

Teardown kills every process inside the namespaces and deletes them (the mount namespaces
and their tmpfs go with the last process). It also happens when the harness dies without
running it, even by SIGKILL: a reaper process, started first in its own session, waits for
EOF on a pipe only the harness holds, then deletes every namespace named with this
process's prefix. `reap_stale()` removes what a harness of a dead process left, in case the
reaper was killed too.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the harness is imported by scripts too, not only under pytest
    sys.path.insert(0, HERE)

from netns import Netns, NetnsPool  # noqa: E402

REPO = os.path.dirname(HERE)
AGENTS = os.path.join(REPO, "agents")
NAME_PREFIX = "hapx"
RING_NETWORK = "198.18.0"
VIP_NETWORK = "198.18.1"
CLIENT_ADDRESS = f"{VIP_NETWORK}.100"
KUBE_MASTERS = {f"kube-mast0{n}": f"{VIP_NETWORK}.{10 + n}" for n in (1, 2, 3)}
KUBE_PORT = 6443
NODE_HTTP_PORT = 80
STATS_PORT = 32700
STATS_AUTH = ("admin", "admin")
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
GUIDE_HAPROXY_CFG = os.path.join(HERE, "data", "haproxy", "guide.cfg")
OCF_PROVIDERS = "/usr/lib/ocf/resource.d"
# Private tmpfs in each node, with their modes: the state of one node's daemons, invisible to
# the others (/dev/shm holds libqb's IPC buffers, made by hacluster too).
PRIVATE_DIRS = {"/run": "0755", "/dev/shm": "1777", "/etc/corosync": "0755",
                "/etc/haproxy": "0755", "/var/lib/corosync": "0755", "/var/lib/pacemaker": "0755",
                "/var/log/pacemaker": "0770", "/var/log/corosync": "0755",
                "/var/log/crmsh": "0775"}
# The environment of every command in a node: HOME on the node's /run, so crmsh keeps its
# cache and history there and not in the machine's /root.
NODE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/run/home", "LANG": "C.UTF-8"}
PACEMAKER_ENV = {**NODE_ENV, "PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
                 "PCMK_logfacility": "none"}
CLONE_NEWNET = 0x40000000
SERVE = [sys.executable, "-IS", os.path.abspath(__file__), "serve"]
_clusters = itertools.count()
T = TypeVar("T")


class ClusterError(Exception):
    """A cluster command failed or the cluster did not reach a state in time."""


def _run(argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 60,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv, capturing text; a failure raises ClusterError with the command's stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout,
                          env=env, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


# -- namespaces, reaping ---------------------------------------------------------------------

class NamedPool(NetnsPool):
    """A NetnsPool whose namespaces are called PREFIX<role>, so an operator sees what each is
    and a reaper finds all of one harness by its prefix."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def new(self, role: str = "") -> Netns:  # type: ignore[override]
        ns = Netns(f"{self.prefix}{role or f'switch{len(self.made)}'}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True)
        self.made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns


def harness_prefix(pid: int, number: int) -> str:
    """hapx-PID-N-: the process that owns the namespaces, and which of its clusters."""
    return f"{NAME_PREFIX}-{pid}-{number}-"


def reap(prefix: str) -> None:
    """Kill everything inside, and delete, every namespace whose name starts with prefix."""
    for name in _run(["ip", "netns", "list"]).stdout.split():
        if name.startswith(prefix):
            Netns(name).delete()


def reap_stale() -> None:
    """Reap the namespaces of harnesses whose process is gone (reaper killed as well)."""
    for name in _run(["ip", "netns", "list"]).stdout.split():
        parts = name.split("-")
        if len(parts) > 2 and parts[0] == NAME_PREFIX and parts[1].isdigit():
            if not os.path.exists(f"/proc/{parts[1]}"):
                reap(f"{NAME_PREFIX}-{parts[1]}-")


def start_reaper(prefix: str) -> subprocess.Popen[bytes]:
    """A process in its own session that reaps prefix once our end of its stdin closes: at
    teardown, or when this process dies in any way."""
    return subprocess.Popen([sys.executable, "-IS", os.path.abspath(__file__), "reap", prefix],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


# -- one node -------------------------------------------------------------------------------

class Node:
    """A cluster node: network, mount and UTS namespaces held by one `sleep` process."""

    def __init__(self, name: str, number: int, netns: Netns) -> None:
        self.name = name
        self.number = number
        self.netns = netns
        self.ring_address = f"{RING_NETWORK}.{number}"
        self.lan_address = f"{VIP_NETWORK}.{number}"
        self.holder: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Node({self.name})"

    @property
    def pid(self) -> int:
        assert self.holder is not None, f"{self.name} is not started"
        return self.holder.pid

    def enter(self, argv: list[str]) -> list[str]:
        """argv wrapped to run inside this node's namespaces."""
        return ["nsenter", "-t", str(self.pid), "-m", "-u", "-n", *argv]

    def run(self, argv: list[str], *, check: bool = True, input: str | None = None,
            timeout: float = 60, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the node (environment NODE_ENV unless env); with check, a failure
        raises ClusterError."""
        return _run(self.enter(argv), check=check, input=input, timeout=timeout,
                    env=env or NODE_ENV)

    def popen(self, argv: list[str], *, log: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start argv in the node in the background, output to the node's file log."""
        out = open(self.path(log), "ab") if log else subprocess.DEVNULL
        try:
            return subprocess.Popen(self.enter(argv), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env or NODE_ENV)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]

    def path(self, path: str) -> str:
        """Where the node's file `path` is seen from the machine (its mount namespace)."""
        return f"/proc/{self.pid}/root{path}"

    def read(self, path: str) -> str:
        with open(self.path(path), encoding="utf-8", errors="replace") as f:
            return f.read()

    def write(self, path: str, text: str, owner: str | None = None) -> None:
        with open(self.path(path), "w", encoding="utf-8") as f:
            f.write(text)
        if owner:
            self.run(["chown", owner, path])

    def addresses(self, dev: str = "lan0") -> list[str]:
        """The node's addresses on dev, as 'addr/prefix'."""
        return self.netns.addresses(dev)

    def has_address(self, ip: str, dev: str = "lan0") -> bool:
        return any(a.split("/")[0] == ip for a in self.addresses(dev))

    def pids(self, comm_prefix: str) -> list[int]:
        """Processes in the node whose command name starts with comm_prefix."""
        found = []
        for pid in self.netns.pids():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().startswith(comm_prefix):
                        found.append(pid)
            except FileNotFoundError:
                pass
        return found


def _wait_exec(proc: subprocess.Popen[bytes], comm: str, timeout: float = 10) -> None:
    """Wait until proc has exec'd comm: before that it is not yet in its new namespaces."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/comm") as f:
                if f.read().strip() == comm:
                    return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise ClusterError(f"namespace holder exited {proc.returncode}")
        time.sleep(0.005)
    raise ClusterError(f"namespace holder did not become {comm} in {timeout} s")


# -- the client ------------------------------------------------------------------------------

class HttpReply:
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"HttpReply({self.status}, {self.body[:80]!r})"


class Client:
    """A host on the lan. Its sockets are made in its namespace by this very process (setns
    around socket()), so a request costs no process start: cheap enough for a benchmark that
    sends one every 10 ms."""

    def __init__(self, netns: Netns) -> None:
        self.netns = netns
        self._libc = ctypes.CDLL(None, use_errno=True)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket that lives in the client's network namespace."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(f"/run/netns/{self.netns.name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._setns(target)
            try:
                return socket.socket(family, type)
            finally:
                self._setns(own)
        finally:
            os.close(own)
            os.close(target)

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def connect(self, host: str, port: int, timeout: float = 2.0) -> socket.socket:
        sock = self.socket()
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def get(self, url: str, timeout: float = 2.0,
            auth: tuple[str, str] | None = None) -> HttpReply:
        """GET url from the client, with basic auth (user, password) if given; OSError
        (timeout, refused, unreachable) when it fails."""
        import base64
        import http.client
        from urllib.parse import urlsplit
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        conn.sock = self.connect(parts.hostname or "", parts.port or 80, timeout)
        headers = {}
        if auth:
            token = base64.b64encode(":".join(auth).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            conn.request("GET", parts.path or "/", headers=headers)
            reply = conn.getresponse()
            return HttpReply(reply.status, reply.read().decode("utf-8", "replace"))
        except http.client.HTTPException as err:
            raise OSError(f"GET {url}: {err!r}") from err
        finally:
            conn.close()

    def ping(self, address: str, count: int = 1, timeout: float = 1.0) -> bool:
        proc = self.run(["ping", "-n", "-q", "-c", str(count), "-W", str(timeout), address],
                        check=False)
        return proc.returncode == 0

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.netns.name, *argv], check=check)


class Outage:
    """What the client saw in a time window: the longest time without a successful request
    (from the window's start, between successes, to its end) and the failed requests."""

    def __init__(self, longest_gap: float, failed: int, total: int) -> None:
        self.longest_gap = longest_gap
        self.failed = failed
        self.total = total

    def __repr__(self) -> str:
        return (f"Outage(longest_gap={self.longest_gap:.3f}, failed={self.failed}, "
                f"total={self.total})")


class Traffic:
    """GET url from the client every interval seconds, on a clock: each request runs in a
    thread of its own, so one that hangs until its timeout (a SYN to a node that is gone)
    does not delay the next. Every result is kept as (sent, ok) on time.monotonic()."""

    def __init__(self, client: Client, url: str, interval: float = 0.02,
                 timeout: float = 0.5) -> None:
        self.client = client
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.results: list[tuple[float, bool]] = []
        self._running = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=int(self.timeout / self.interval) + 8)
        self._running = True
        self._thread = threading.Thread(target=self._clock, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending and wait for the requests in flight."""
        self._running = False
        if self._thread:
            self._thread.join()
        if self._pool:
            self._pool.shutdown(wait=True)

    def _clock(self) -> None:
        due = time.monotonic()
        while self._running:
            assert self._pool is not None
            self._pool.submit(self._request, time.monotonic())
            due += self.interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()  # late (a busy machine): do not send a burst

    def _request(self, sent: float) -> None:
        try:
            ok = self.client.get(self.url, timeout=self.timeout).status == 200
        except OSError:
            ok = False
        self.results.append((sent, ok))

    def outage(self, since: float, until: float) -> Outage:
        """The client's view of [since, until]: call it once the requests sent before until
        had their answer or timeout."""
        window = sorted(r for r in self.results if since <= r[0] <= until)
        last, longest = since, 0.0
        for sent, ok in window:
            if ok:
                longest = max(longest, sent - last)
                last = sent
        longest = max(longest, until - last)
        return Outage(longest, sum(1 for _, ok in window if not ok), len(window))

    def served_since(self, since: float) -> bool:
        """A request sent after since succeeded."""
        return any(ok and sent >= since for sent, ok in list(self.results))


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


def haproxy_config(check_interval: str = "1s", extra: str = "") -> str:
    """The guide's haproxy.cfg (tests/data/haproxy/guide.cfg) for this lab: servers
    kube-mast01..03 are the stand-ins; everything else as in the guide (stats socket in
    /run/haproxy, chroot, user haproxy, daemon, wildcard frontends on :6443 and :32700, the
    stats page with admin:admin) but the health checks, every check_interval instead of
    `inter 10s downinter 5s`, so a test sees a server go DOWN in seconds. extra: sections
    appended."""
    with open(GUIDE_HAPROXY_CFG, encoding="utf-8") as f:
        text = f.read()
    for number, (name, address) in enumerate(KUBE_MASTERS.items(), 1):
        text = text.replace(f"{name} 192.168.4.2{number}:", f"{name} {address}:")
    text = text.replace("inter 10s downinter 5s",
                        f"inter {check_interval} downinter {check_interval}")
    if "192.168.4." in text or f"inter {check_interval}" not in text:
        raise ValueError(f"{GUIDE_HAPROXY_CFG} changed: adapt haproxy_config()")
    return text + extra


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
        """Holder process, hostname, private directories, OCF providers, configuration."""
        node.holder = subprocess.Popen(
            ["ip", "netns", "exec", node.netns.name, "unshare", "--mount", "--uts",
             "--propagation", "private", "sleep", "infinity"], stdin=subprocess.DEVNULL)
        _wait_exec(node.holder, "sleep")
        node.run(["hostname", node.name])
        for directory, mode in PRIVATE_DIRS.items():
            node.run(["mount", "-t", "tmpfs", "-o", f"mode={mode}", f"{node.name}-state",
                      directory])
        self._make_dirs(node)
        if self.package_root:
            node.run(["mount", "-t", "overlay", "-o", f"lowerdir={self.package_root}/usr:/usr",
                      f"{node.name}-package", "/usr"])
        if self.agents_dir:
            self._show_agents(node)
        node.write("/etc/corosync/corosync.conf", corosync_conf(self.nodes, self.token_ms))
        self.write_haproxy_config(haproxy_config(), [node.name])
        self._preset_cib(node)

    @staticmethod
    def _make_dirs(node: Node) -> None:
        """What the packages and systemd-tmpfiles would have made on a booted node."""
        owned = ["/var/lib/pacemaker/cib", "/var/lib/pacemaker/pengine",
                 "/var/lib/pacemaker/blackbox", "/var/lib/pacemaker/cores", "/run/crm"]
        node.run(["mkdir", "-p", "-m", "0750", *owned, "/run/resource-agents", "/run/home"])
        node.run(["chown", "hacluster:haclient", *owned, "/var/log/pacemaker", "/var/log/crmsh"])

    def _show_agents(self, node: Node) -> None:
        """resource.d in the node: a tmpfs with the machine's providers bind-mounted back
        (heartbeat's relative links ../../lib/heartbeat/... then still resolve) and kuth, a
        symlink to agents_dir."""
        providers = sorted(p for p in os.listdir(OCF_PROVIDERS) if p != "kuth")
        hidden = "/run/ocf-providers"  # the machine's directory, before the tmpfs hides it
        node.run(["mkdir", hidden])
        node.run(["mount", "--bind", OCF_PROVIDERS, hidden])
        node.run(["mount", "-t", "tmpfs", "-o", "mode=0755", f"{node.name}-ocf", OCF_PROVIDERS])
        for provider in providers:
            node.run(["mkdir", f"{OCF_PROVIDERS}/{provider}"])
            node.run(["mount", "--bind", f"{hidden}/{provider}", f"{OCF_PROVIDERS}/{provider}"])
        node.run(["umount", hidden])
        node.run(["ln", "-s", str(self.agents_dir), f"{OCF_PROVIDERS}/kuth"])

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
            self.servers.append(node.popen([*SERVE, node.name, str(NODE_HTTP_PORT)]))

    def start_kube_master(self, name: str) -> None:
        """Start the stand-in kube-apiserver name (again, after stop_kube_master)."""
        self.kube_servers[name] = self.kube_masters[name].popen(
            *SERVE, name, str(KUBE_PORT), stdin=subprocess.DEVNULL)

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
        the next test: cables in, ring healed, Pacemaker running on every node, every
        kube-apiserver stand-in serving, the lab's haproxy.cfg on every node."""
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


# -- helper processes (run as `python3 cluster.py ...`) --------------------------------------

def serve(name: str, port: int) -> None:
    """Answer every GET with name: a kube-apiserver stand-in, or a node saying who it is."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("", port), Handler).serve_forever()


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) == 3:
        serve(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["reap"] and len(argv) == 2:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # outlive a Ctrl-C of the harness
        sys.stdin.buffer.read()
        reap(argv[1])
        return 0
    print("usage: cluster.py serve NAME PORT | reap PREFIX", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
