"""The soak's invariants: what must hold once the cluster has settled after any event, and
what must hold at every instant (`Sampler`).

Each check returns the violations it found, as sentences an operator can act on; an empty
list means it holds. They read the nodes directly (addresses, processes, /run/resource-agents)
as well as Pacemaker's view, and compare the two: an agent that tells Pacemaker one thing
while the node does another is what they are for.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter

from lab import processes
from lab.cluster import Cluster, Status
from lab.nodes import Node
from lab.topology import KUBE_PORT
from agents.ipaddr2 import REFUSE_AFTER_STOP
from ocf_lib.helpers.refuser import REFUSER

MARK = "kuth-watcher"    # in every watcher's command line (ocf_lib.helpers.watch)
RSCTMP = "/run/resource-agents"


def holders(cluster: Cluster, ip: str) -> list[str]:
    """The powered nodes whose lan0 carries ip, whatever Pacemaker believes."""
    return [n.name for n in cluster.nodes if cluster.powered(n.name) and n.has_address(ip)]


def served(cluster: Cluster, ip: str, vip: str, status: Status) -> list[str]:
    """The VIP is on exactly one node, where Pacemaker says, and answers the client."""
    found = holders(cluster, ip)
    if len(found) != 1:
        return [f"the VIP {ip} is on {found or 'no node'}"]
    if status.resources.get(vip, []) != found:
        return [f"the VIP is on {found[0]} but Pacemaker has {vip} on "
                f"{status.resources.get(vip) or 'no node'}"]
    if cluster.client.get(f"http://{ip}:{KUBE_PORT}/", timeout=1).status != 200:
        return [f"the VIP on {found[0]} does not serve the kube-apiservers"]
    return []


def placement(cluster: Cluster, status: Status, vip: str, haproxy: str, clone: bool
              ) -> list[str]:
    """haproxy runs where Pacemaker has it, and that is where the topology says: with the
    VIP (guide), or at least where the VIP is (clone)."""
    problems = []
    active = set(status.resources.get(haproxy, []))
    for node in cluster.nodes:
        running = bool(cluster.powered(node.name) and node.pids("haproxy"))
        if running != (node.name in active):
            problems.append(f"haproxy {'runs' if running else 'does not run'} on {node.name}, "
                            f"Pacemaker has it {'not ' if running else ''}there")
    vip_nodes = set(status.resources.get(vip, []))
    if clone and not vip_nodes <= active:
        problems.append(f"the VIP is on {sorted(vip_nodes)}, haproxy only on {sorted(active)}")
    if not clone and active != vip_nodes:
        problems.append(f"haproxy on {sorted(active)}, the VIP on {sorted(vip_nodes)}")
    return problems


def leaks(cluster: Cluster, status: Status, resources: list[str], old_workers_allowed: bool,
          ip: str) -> list[str]:
    """Nothing an agent made outlives its resource on a node: watchers (one per node at
    most), state files and watch registrations (the lock may stay, and a refuser's record), haproxy's old
    workers (beyond their bound), node attributes; and no refuser where the VIP ip is,
    nor past its bound."""
    problems = []
    for node in cluster.nodes:
        if not cluster.powered(node.name):
            continue
        here = {r for r in resources if node.name in status.resources.get(r, [])}
        problems += _watchers(node, here)
        problems += _state_files(node, here)
        problems += _refusers(node, ip)
        workers = len(node.pids("haproxy"))
        if workers > 2 and not old_workers_allowed:
            problems.append(f"{workers} haproxy processes on {node.name}: old workers past "
                            f"their bound")
        for name in status.attributes.get(node.name, {}):
            owner = next((r for r in resources if name.startswith(f"{r}-")), None)
            if owner and owner not in here:
                problems.append(f"node attribute {name} left on {node.name}")
    return problems


def cmdlines(node: Node) -> dict[int, list[str]]:
    """The command line of every live process of the node."""
    found = {pid: processes.cmdline(pid) for pid in node.netns.pids()}
    return {pid: argv for pid, argv in found.items() if argv}


def _watchers(node: Node, here: set[str]) -> list[str]:
    """One watcher at most on a node, and none where no resource is active."""
    pids = sorted(pid for pid, argv in cmdlines(node).items() if MARK in argv[:5])
    if len(pids) > 1:
        return [f"{len(pids)} watchers on {node.name}: {pids}"]
    if pids and not here:
        return [f"watcher {pids} on {node.name}, where no resource is active"]
    return []


def _state_files(node: Node, here: set[str]) -> list[str]:
    """State files (kuth-<agent>-<instance>.<suffix>) only for resources active here."""
    try:
        names = os.listdir(node.path(RSCTMP))
    except OSError:
        return []
    problems = []
    for name in names:
        # A refuser's record stays after stop, where the resource is no longer active; the
        # refuser itself is checked by _refusers. haproxy's copy of the last accepted
        # configuration (and when it was handed over) stays by design: a later start there
        # runs it if the file is refused (ocf_lib.logic.haproxy_accepted). The watcher's
        # registrations are kuth-watch-<netns>.kuth-<agent>-<instance>.
        base = name.split(".", 1)[1] if name.startswith("kuth-watch-") else name
        if not base.startswith("kuth-") or base.endswith(
                (".lock", ".refuser", ".accepted.cfg", ".accepted.published")):
            continue
        instance = base.split("-", 2)[-1]  # <instance>[.<suffix>], the instance maybe r:N
        if not any(instance == r or instance.startswith((f"{r}.", f"{r}:")) for r in here):
            problems.append(f"state file {RSCTMP}/{name} on {node.name}, where the resource "
                            f"is not active")
    return problems


def _refusers(node: Node, ip: str) -> list[str]:
    """The refusers IPaddr2's stop leaves (ocf_lib.logic.vip): none on a node that carries
    the VIP (it would answer for an address the node holds), none past its bound (the
    default refuse_after_stop, as the soak sets none; a second more for scheduling), and
    each recorded in the state directory (else no start could end it)."""
    problems = []
    recorded = set()
    try:
        names = os.listdir(node.path(RSCTMP))
    except OSError:
        names = []
    for name in names:
        if name.startswith("kuth-") and name.endswith(".refuser"):
            try:
                recorded.add(node.read(f"{RSCTMP}/{name}").split()[0])
            except (OSError, IndexError):
                pass
    holds = node.has_address(ip)
    for pid in node.pids(REFUSER):
        age = processes.age(pid)
        if age is None:  # gone, or a zombie: ended
            continue
        if holds:
            problems.append(f"refuser {pid} on {node.name}, which carries the VIP {ip}")
        if age > REFUSE_AFTER_STOP + 1:
            problems.append(f"refuser {pid} on {node.name} has run {age:.0f} s, past its "
                            f"bound of {REFUSE_AFTER_STOP} s")
        if str(pid) not in recorded:
            problems.append(f"refuser {pid} on {node.name} is recorded in no state file: no "
                            f"start can end it")
    return problems


def failures(cluster: Cluster, status: Status, explained: Counter[tuple[str, str]]
             ) -> list[str]:
    """Every failure Pacemaker records was caused by an event on that node (explained:
    (resource, node) -> how many failures the events since the last cleanup may cause
    there), or by one that may fail anywhere ((resource, '*')); and no fail-count is higher
    than its events explain."""
    problems = []
    for failure in status.failures:
        resource = failure.get("op_key", "").rsplit("_", 2)[0].split(":")[0]
        node = failure.get("node", "")
        if (resource, "*") in explained:
            continue
        allowed = explained.get((resource, node), 0)
        if not allowed:
            problems.append(f"unexplained failure of {resource} on {node}: "
                            f"{failure.get('task')} {failure.get('exitreason', '')}".strip())
            continue
        count = fail_count(cluster, resource, node)
        if count > allowed:
            problems.append(f"fail-count {count} of {resource} on {node}, after {allowed} "
                            f"failure{'s' if allowed > 1 else ''} caused there")
    return problems


def fail_count(cluster: Cluster, resource: str, node: str) -> int:
    out = cluster.view_node(None).run(["crm_failcount", "--query", "-r", resource, "-N", node],
                                      check=False).stdout
    value = out.rsplit("value=", 1)[-1].strip()
    return 1_000_000 if value == "INFINITY" else int(value) if value.isdigit() else 0


class Sampler:
    """Samples, every interval, which nodes carry the VIP, for the whole run: two at once is
    a violation at any instant (a split brain that fencing should have prevented)."""

    def __init__(self, cluster: Cluster, ip: str, interval: float = 0.1) -> None:
        self.cluster = cluster
        self.ip = ip
        self.interval = interval
        self.doubles: list[tuple[float, list[str]]] = []  # when, who
        self.samples = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vip-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                found = holders(self.cluster, self.ip)
            except Exception:  # a node rebooting under our feet; the next sample decides
                continue
            self.samples += 1
            if len(found) > 1:
                self.doubles.append((time.monotonic(), found))

    def since(self, when: float) -> list[tuple[float, list[str]]]:
        return [d for d in self.doubles if d[0] >= when]
