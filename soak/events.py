"""The soak's events: each does one fault or operator action to the cluster and returns
what happened and which failures it may leave in Pacemaker's records.

Every choice an event makes comes from the run's random generator and names nodes by their
role (the VIP's node, or the k-th other), so one seed gives one sequence of events and
parameters, whatever the cluster's timing. An event returns once its fault has been done
and undone (a cable back in, a partition healed, a broken configuration replaced); the run
then waits for the cluster to settle and checks the invariants (soak.checks).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from lab import REPO
from lab.cluster import Cluster
from lab.guide import haproxy_config
from lab.nodes import OCF_PROVIDERS

WAIT_S = 90   # the longest a step inside an event may wait


# A crash the watcher reports counts up to twice: Pacemaker 2.1.5's crm_resource --fail raises
# the fail-count by 2 (seen here: 1 and 2 from the DC 4 ms apart), so with
# migration-threshold=2 the first haproxy crash already moves the resources; 2.1.6 and later
# (Debian 13's 3.0.0) count it once.
FAILS_PER_REPORTED_CRASH = 2


@dataclass
class Outcome:
    detail: str
    # (resource, node or '*') -> how many failures the event may cause there
    may_fail: dict[tuple[str, str], int] = field(default_factory=dict)
    reloaded: bool = False      # a reload ran: old workers may live for their bound
    max_outage: float | None = None  # seconds without a served request the event may cost


class Run(Protocol):
    """What events need from the run."""

    cluster: Cluster
    rng: random.Random
    vip: str
    haproxy: str
    haproxy_id: str   # the primitive (not the clone) whose parameters change
    clone: bool

    def active(self) -> str: ...


def others(run: Run, name: str) -> list[str]:
    return [n for n in run.cluster.names if n != name]


def pick(run: Run, choices: list[str]) -> str:
    return choices[run.rng.randrange(len(choices))]


def wait(run: Run, predicate: Callable[[], object], what: str) -> None:
    run.cluster.wait_for(predicate, WAIT_S, interval=0.2, what=what)


def move(run: Run) -> Outcome:
    """crm resource move, then clear: the planned move of maintenance."""
    source = run.active()
    target = pick(run, others(run, source))
    run.cluster.crm("resource", "move", run.vip, target)
    wait(run, lambda: run.cluster.locate(run.vip) == [target], f"{run.vip} on {target}")
    run.cluster.crm("resource", "clear", run.vip)
    return Outcome(f"{run.vip} {source} -> {target}")


def standby(run: Run) -> Outcome:
    """The VIP's node in standby until everything left it, then online again."""
    node = run.active()
    run.cluster.crm("node", "standby", node)
    wait(run, lambda: run.cluster.locate(run.vip) not in ([], [node]), f"{run.vip} off {node}")
    run.cluster.crm("node", "online", node)
    return Outcome(f"standby {node}, online again")


def kill_haproxy(run: Run) -> Outcome:
    """kill -9 of haproxy's master and worker on the VIP's node (clone: any node)."""
    node = run.active() if not run.clone else pick(run, run.cluster.names)
    pids = run.cluster.node(node).pids("haproxy")
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return Outcome(f"kill -9 haproxy {pids} on {node}",
                   {(run.haproxy, node): FAILS_PER_REPORTED_CRASH})


def kill_watcher(run: Run) -> Outcome:
    """kill -9 of one of the agents' watchers (the recurring monitor is the safety net)."""
    from soak.checks import MARK, cmdlines
    node = pick(run, run.cluster.names)
    watchers = sorted(pid for pid, argv in cmdlines(run.cluster.node(node)).items()
                      if MARK in argv[:5])
    if not watchers:
        return Outcome(f"no watcher on {node}")
    pid = watchers[run.rng.randrange(len(watchers))]
    os.kill(pid, signal.SIGKILL)
    return Outcome(f"kill -9 watcher {pid} on {node}")


def link_flap(run: Run) -> Outcome:
    """Both cables of a node out for a while: shorter than the token (nothing happens),
    longer than the link check's grace, or long enough to be fenced."""
    node = pick(run, run.cluster.names)
    seconds = [0.3, 0.8, 2.0, 4.0][run.rng.randrange(4)]
    before = len(run.cluster.fenced())
    run.cluster.link_down(node)
    time.sleep(seconds)
    run.cluster.link_up(node)
    fenced = node in run.cluster.fenced()[before:]
    if fenced:
        run.cluster.wait_booted(node)
    return Outcome(f"cables of {node} out {seconds} s{', fenced' if fenced else ''}",
                   {(run.vip, node): FAILS_PER_REPORTED_CRASH,
                    (run.haproxy, node): FAILS_PER_REPORTED_CRASH})


def crash(run: Run) -> Outcome:
    """A node dies at once; the others fence it (a reboot) and it rejoins."""
    node = run.active() if run.rng.random() < 0.7 else pick(run, others(run, run.active()))
    run.cluster.crash(node)
    run.cluster.wait_booted(node)
    wait(run, lambda: node in run.cluster.status().online, f"{node} rejoined")
    return Outcome(f"crash of {node}")


def partition(run: Run) -> Outcome:
    """The ring split (the lan whole): one side is fenced, then the ring heals."""
    lonely = run.active() if run.rng.random() < 0.5 else pick(run, others(run, run.active()))
    before = len(run.cluster.fenced())
    run.cluster.partition([lonely], others(run, lonely))
    wait(run, lambda: len(run.cluster.fenced()) > before, "a node fenced")
    victim = run.cluster.fenced()[before]
    run.cluster.wait_booted(victim)
    run.cluster.heal()
    wait(run, lambda: len(run.cluster.status().online) == len(run.cluster.names),
         "every node online after heal")
    return Outcome(f"{lonely} split off, {victim} fenced, healed")


def _reload(run: Run) -> None:
    token = f"soak-{time.monotonic_ns()}"
    run.cluster.crm("resource", "param", run.haproxy_id, "set", "reload_token", token)


def reload_edited(run: Run) -> Outcome:
    """A valid edit of haproxy.cfg on every node, applied with reload_token."""
    run.cluster.write_haproxy_config(haproxy_config() + f"# soak edit {run.rng.random()}\n")
    _reload(run)
    return Outcome("haproxy.cfg edited, reload", reloaded=True)


def reload_broken(run: Run) -> Outcome:
    """A broken edit applied with reload_token (haproxy -c refuses it): haproxy keeps
    serving the last accepted configuration wherever it runs, and crm_mon shows it degraded
    there; then the operator puts a valid file back and reloads, which clears that. No
    outage: nothing stops or restarts (the degraded monitors are the only records)."""
    running = run.cluster.locate(run.haproxy)
    run.cluster.write_haproxy_config(haproxy_config() + "    no-such-keyword-soak\n")
    _reload(run)
    wait(run, lambda: set(running) <= degraded(run), "haproxy degraded wherever it runs")
    moved = run.cluster.locate(run.haproxy) != running
    run.cluster.write_haproxy_config(haproxy_config())
    _reload(run)
    wait(run, lambda: not degraded(run), "degraded cleared by the fixed file")
    return Outcome(f"broken haproxy.cfg reloaded, served degraded on {', '.join(running)}"
                   f"{' (haproxy MOVED)' if moved else ''}, then fixed and reloaded",
                   {(run.haproxy, "*"): 1}, reloaded=True, max_outage=0.5)


def degraded(run: Run) -> set[str]:
    """The nodes whose haproxy serves the last accepted configuration because the file is
    refused: its node attribute <resource>-config-refused, set and cleared by monitor."""
    return {node for node, attributes in run.cluster.status().attributes.items()
            if attributes.get(f"{run.haproxy_id}-config-refused")}


def cleanup(run: Run) -> Outcome:
    """crm resource cleanup: Pacemaker forgets the failures (run.explained is reset)."""
    run.cluster.crm("resource", "cleanup")
    return Outcome("crm resource cleanup")


def upgrade(run: Run) -> Outcome:
    """A package upgrade on one node, while its resources run: the agents' files are
    replaced by a new copy (as dpkg unpacks a new version), the running watchers and
    haproxy stay, and the next actions run the new files."""
    node = pick(run, run.cluster.names)
    release = os.path.join(run.cluster.dir, f"release-{time.monotonic_ns()}")
    for part in ("agents", "ocf_lib"):
        shutil.copytree(os.path.join(REPO, part), os.path.join(release, part),
                        ignore=shutil.ignore_patterns("__pycache__"))
    run.cluster.node(node).run(["ln", "-sfn", os.path.join(release, "agents"),
                                f"{OCF_PROVIDERS}/kuth"])
    return Outcome(f"agents upgraded on {node}")


# name -> (event, weight): how often each comes, relative to the others.
EVENTS: dict[str, tuple[Callable[[Run], Outcome], int]] = {
    "move": (move, 3), "standby": (standby, 2), "haproxy kill -9": (kill_haproxy, 2),
    "watcher killed": (kill_watcher, 2), "link flap": (link_flap, 2), "node crash": (crash, 2),
    "partition": (partition, 2), "reload": (reload_edited, 2),
    "reload broken": (reload_broken, 1), "cleanup": (cleanup, 1), "upgrade": (upgrade, 1),
}


def choose(rng: random.Random) -> str:
    names = list(EVENTS)
    return rng.choices(names, weights=[EVENTS[n][1] for n in names])[0]
