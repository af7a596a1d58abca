"""`make soak`: random events on the lab's clusters, invariants checked after each.

The 2-node cluster runs the guide's topology (haproxy follows the VIP), then the 3-node
cluster the clone topology (haproxy everywhere, the VIP where haproxy runs), half of the
minutes each, fencing on (the lab's fence device), with a GET through the VIP every 20 ms
and 4 watch streams held through it. Events (soak.events): planned move, standby and
online, haproxy kill -9, a watcher killed, a link flap, a node crash (fenced), a partition
and heal, a reload of an edited configuration, valid or broken, cleanup, and an upgrade of
the agents on one node. After each, once the cluster has settled (within SETTLE_S), the
invariants (soak.checks): the VIP on exactly one node, where Pacemaker has it, serving;
haproxy where the configuration says; no leaked watcher, state file, old worker or node
attribute; every failure Pacemaker records explained by an event; and, sampled every
0.1 s for the whole run, never the VIP on two nodes at once. A violation prints the event
log that led to it.

    python3 -m soak.soak [--minutes 30] [--seed S] [--output bench/results/soak.md]

The events and their choices are a function of the seed (printed at the start and end), so
`--seed S` runs the same sequence again; the timing of a real cluster is not.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lab import constraints
from lab.cluster import Cluster
from lab.command import ClusterError
from lab.topology import KUBE_PORT, VIP_NETWORK
from lab.traffic import Streams, Traffic
from soak import checks, events

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "results" / "soak.md"
VIP = "vip"
HAPROXY = "haproxy"
IP = f"{VIP_NETWORK}.20"
SETTLE_S = 90            # an event's recovery must end within this
OLD_WORKERS_TIMEOUT = 30  # the soak's old_workers_timeout (s): its bound on old workers
MONITOR_S = 20
STREAMS = 4
PRIMITIVES = f"""\
primitive {VIP} ocf:kuth:IPaddr2 \\
    params ip={IP} nic=lan0 cidr_netmask=24 \\
    meta migration-threshold=2 \\
    op monitor interval={MONITOR_S} timeout=60 on-fail=restart
primitive {HAPROXY} ocf:kuth:haproxy \\
    params old_workers_timeout={OLD_WORKERS_TIMEOUT} \\
    meta migration-threshold=2 \\
    op monitor interval={MONITOR_S} timeout=60 on-fail=restart
rsc_defaults resource-stickiness=100
"""
GUIDE = PRIMITIVES + constraints.guide(VIP, HAPROXY)
CLONE = PRIMITIVES + constraints.clone(VIP, HAPROXY)


@dataclass
class Record:
    """One event: what it was, when, how long the cluster took to settle, what clients saw,
    and the violations found after it."""
    cluster: str
    number: int
    name: str
    detail: str
    began: float
    recovery: float
    outage: float
    stall: float
    violations: list[str]


class Soak:
    """Runs events on one cluster until its deadline; collects records."""

    def __init__(self, cluster: Cluster, rng: random.Random, clone: bool, label: str,
                 began: float) -> None:
        self.cluster = cluster
        self.rng = rng
        self.clone = clone
        self.label = label
        self.began = began
        self.vip = VIP
        self.haproxy = HAPROXY
        self.haproxy_id = HAPROXY
        # (resource, node or '*') -> failures the events since the last cleanup may cause
        self.explained: Counter[tuple[str, str]] = Counter()
        self.last_reload = -1e9
        self.records: list[Record] = []

    def say(self, text: str) -> None:
        print(f"[{(time.monotonic() - self.began) / 60:5.1f} min] {self.label}: {text}",
              flush=True)

    def active(self) -> str:
        """The VIP's node, once exactly one carries it."""
        def one() -> str:
            found = self.cluster.locate(VIP)
            return found[0] if len(found) == 1 else ""
        return self.cluster.wait_for(one, SETTLE_S, what="the VIP on one node")

    def configure(self) -> None:
        self.cluster.configure(CLONE if self.clone else GUIDE)
        self.cluster.wait_for(self.settled, SETTLE_S, interval=0.2, what="started")

    def settled(self) -> bool:
        """Every node online, Pacemaker with nothing left to do, the VIP serving from one
        node and haproxy running where Pacemaker has it, twice in a row a second apart (a
        watcher's report of a crash may take that long to reach Pacemaker)."""
        def calm() -> bool:
            status = self.cluster.status()
            return (len(status.online) == len(self.cluster.names)
                    and not checks.served(self.cluster, IP, VIP, status)
                    and not checks.placement(self.cluster, status, VIP, HAPROXY, self.clone)
                    and self.cluster.view_node(None).run(
                        ["crm_resource", "--wait", "--timeout=1s"], check=False,
                        timeout=10).returncode == 0)
        if not calm():
            return False
        time.sleep(1)
        return calm()

    def check(self) -> list[str]:
        status = self.cluster.status()
        old_allowed = time.monotonic() - self.last_reload < OLD_WORKERS_TIMEOUT + MONITOR_S + 10
        return [*checks.served(self.cluster, IP, VIP, status),
                *checks.placement(self.cluster, status, VIP, HAPROXY, self.clone),
                *checks.leaks(self.cluster, status, [VIP, HAPROXY], old_allowed, IP),
                *checks.failures(self.cluster, status, self.explained)]

    def run(self, until: float, traffic: Traffic, streams: Streams,
            sampler: checks.Sampler) -> None:
        while time.monotonic() < until:
            name = events.choose(self.rng)
            event, _ = events.EVENTS[name]
            number = len(self.records) + 1
            since = time.monotonic()
            outcome = events.Outcome("(failed)")
            try:
                outcome = event(self)
                if name == "cleanup":
                    self.explained.clear()
                self.explained.update(outcome.may_fail)
                if outcome.reloaded:
                    self.last_reload = time.monotonic()
                self.cluster.wait_for(self.settled, SETTLE_S, interval=0.2,
                                      what=f"settled after {name}")
                recovery = time.monotonic() - since
                violations = self.check()
                detail = outcome.detail
            except (ClusterError, OSError) as err:
                recovery = time.monotonic() - since
                detail, violations = outcome.detail, [f"{name}: {err}"]
            violations += [f"the VIP on {who} at once, {when - since:.1f} s into the event"
                           for when, who in sampler.since(since)]
            until_ok = time.monotonic()
            outage = traffic.outage(since, until_ok).longest_gap
            if outcome.max_outage is not None and outage > outcome.max_outage:
                violations.append(f"an outage of {outage:.2f} s, where {name} may cost "
                                  f"{outcome.max_outage:g} s at most")
            record = Record(self.label, number, name, detail, since - self.began, recovery,
                            outage, streams.stall(since, until_ok), violations)
            self.records.append(record)
            self.say(f"#{number} {name}: {detail}; settled in {recovery:.1f} s, outage "
                     f"{record.outage:.2f} s, stream stall {record.stall:.2f} s"
                     + (f"; VIOLATIONS: {violations}" if violations else ""))
            if violations:
                self.report_violation(record)
                self.recover()
            elif outcome.may_fail:
                self.clean_up(outcome.may_fail)

    def clean_up(self, caused: dict[tuple[str, str], int]) -> None:
        """As an operator does after a failure was seen and understood: crm resource
        cleanup, so that failures do not add up to migration-threshold across events."""
        for resource in sorted({r for r, _ in caused}):
            self.cluster.crm("resource", "cleanup", resource)
            for key in [k for k in self.explained if k[0] == resource]:
                del self.explained[key]
        self.cluster.wait_for(self.settled, SETTLE_S, interval=0.2, what="settled after cleanup")

    def report_violation(self, record: Record) -> None:
        print(f"\nVIOLATION after event #{record.number} ({record.name}) on {self.label}:",
              flush=True)
        for line in record.violations:
            print(f"    {line}")
        print("  the events that led to it:")
        for r in self.records[-15:]:
            print(f"    #{r.number} at {r.began / 60:.1f} min {r.name}: {r.detail} "
                  f"(settled {r.recovery:.1f} s)")
        print(f"  fence requests: {self.cluster.fence_log()[-6:]}\n", flush=True)

    def recover(self) -> None:
        """After a violation: back to a clean cluster with the configuration, to go on."""
        try:
            self.cluster.reset()
            self.configure()
            self.explained.clear()
        except ClusterError as err:
            self.say(f"could not recover: {err}")
            raise


def summary(records: list[Record]) -> list[str]:
    """A markdown table per event type: count, recovery worst and median, outage, stall."""
    lines = ["| event | count | settled s (worst / median) | short-request outage s "
             "(worst / median) | stream stall s (worst / median) | violations |",
             "|---|---|---|---|---|---|"]
    for name in events.EVENTS:
        rows = [r for r in records if r.name == name]
        if not rows:
            continue

        def both(values: list[float]) -> str:
            return f"{max(values):.2f} / {statistics.median(values):.2f}"
        lines.append(f"| {name} | {len(rows)} | {both([r.recovery for r in rows])} | "
                     f"{both([r.outage for r in rows])} | {both([r.stall for r in rows])} | "
                     f"{sum(len(r.violations) for r in rows)} |")
    return lines


def soak_cluster(nodes: int, clone: bool, minutes: float, rng: random.Random, began: float,
                 logs: str | None) -> tuple[list[Record], int]:
    label = f"{nodes} nodes, {'clone' if clone else 'guide'} topology"
    with Cluster(nodes=nodes, logs_dir=logs) as cluster:
        soak = Soak(cluster, rng, clone, label, began)
        soak.say(f"cluster up in {cluster.started_in:.1f} s")
        soak.configure()
        with Traffic(cluster.client, f"http://{IP}:{KUBE_PORT}/", interval=0.02,
                     timeout=0.5) as traffic, \
                Streams(cluster.client, IP, KUBE_PORT, count=STREAMS) as streams, \
                checks.Sampler(cluster, IP) as sampler:
            soak.run(time.monotonic() + minutes * 60, traffic, streams, sampler)
        return soak.records, sampler.samples


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long in all (default 30)")
    p.add_argument("--seed", type=int, default=None, help="the random seed (default: new)")
    p.add_argument("--output", type=Path, default=None,
                   help=f"write the report there (make soak: {DEFAULT_OUTPUT})")
    p.add_argument("--logs", default=os.environ.get("KUTH_CLUSTER_LOGS"),
                   help="keep every node's logs in this directory")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("run as root: the clusters live in network namespaces")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10 ** 6)
    rng = random.Random(seed)
    began = time.monotonic()
    print(f"soak: {args.minutes:g} minutes, seed {seed} (again: make soak "
          f"MINUTES={args.minutes:g} SEED={seed})", flush=True)
    records: list[Record] = []
    samples = 0
    for nodes, clone in ((2, False), (3, True)):
        done, sampled = soak_cluster(nodes, clone, args.minutes / 2, rng, began, args.logs)
        records += done
        samples += sampled
    violations = sum(len(r.violations) for r in records)
    table = summary(records)
    line = f"soak: {len(records)} events, {violations} violations, seed {seed}"
    print("\n" + "\n".join(table) + "\n\n" + line, flush=True)
    if args.output:
        write_report(args, seed, records, table, line, samples, time.monotonic() - began)
    return 1 if violations else 0


def write_report(args: argparse.Namespace, seed: int, records: list[Record],
                 table: list[str], line: str, samples: int, seconds: float) -> None:
    head = [
        "# Soak: random events with invariants",
        "",
        f"Run {datetime.datetime.now():%Y-%m-%d %H:%M} on {platform.node()} "
        f"({os.cpu_count()} CPUs), {seconds / 60:.1f} minutes, seed {seed} "
        f"(`make soak MINUTES={args.minutes:g} SEED={seed}`).",
        "The 2-node cluster in the guide's topology, then the 3-node cluster in the clone "
        "topology, half of the time each; fencing on; a GET through the VIP every 20 ms and "
        f"{STREAMS} watch streams. Settled: from the event until Pacemaker had nothing left to "
        "do and the VIP served from one node. Outage: the longest time without a successful "
        "request in that window; stream stall: the longest a stream went without data. "
        f"The VIP's holders were sampled {samples} times (every 0.1 s).",
        "",
    ]
    bad = [f"- #{r.number} {r.name} ({r.cluster}): {v}" for r in records for v in r.violations]
    body = [*head, *table, "", line, ""]
    if bad:
        body += ["Violations:", *bad, ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(body))
    print(f"soak: wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
