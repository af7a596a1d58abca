"""What the connection hand-over (ocf_lib.logic.handover) costs, without a cluster: the size
of its attribute values at 2,000 to 50,000 connections, the characters it writes a second
while connections come and go, and the CPU time of its encoding.

    python3 -m bench.handover_cost [--minutes 10] [--output bench/results/handover_cost.md]

attrd is a dictionary here and the connections are made up (clients of one subnet with
random ephemeral ports, as a large Kubernetes cluster's nodes hold them on its API address),
so what it measures is the agent's side: what goes into attrd_updater. What attrd and
Corosync make of it on a real ring is bench-scale's to measure.
"""

import argparse
import random
import time
from collections import deque

from ocf_lib.adapters import pacemaker
from ocf_lib.logic import handover
from ocf_lib.logic import handover_codec as codec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

Record = codec.Record
WORKLOADS = {  # name: (connections per client, IPv6)
    "IPv4, 3 a client": (3, False),
    "IPv4, 1 a client": (1, False),
    "IPv6, 1 a client": (1, True),
}


def clients(count: int, *, per_client: int = 3, ipv6: bool = False, seed: int = 1
            ) -> set[Record]:
    """count connections to port 6443 from clients of one subnet (a /16 for IPv4, random
    interface identifiers in one /48 for IPv6), per_client each, from random ephemeral
    ports."""
    rng = random.Random(seed)
    records: set[Record] = set()
    while len(records) < count:
        if ipv6:
            client = bytes.fromhex("200100020000") + rng.getrandbits(80).to_bytes(10, "big")
        else:
            client = bytes([198, 18]) + rng.getrandbits(16).to_bytes(2, "big")
        for _ in range(per_client):
            records.add(codec.pack(client, rng.randrange(32768, 61000), 6443))
    return set(sorted(records)[:count])


class Attrd:
    """pacemaker's attribute calls replaced, through patch (setattr, or a test's
    monkeypatch.setattr), by a dictionary that counts what is written to it."""

    def __init__(self, members: list[str], patch: "Callable[[object, str, object], None]" = setattr
                 ) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.members = members
        self.writes: list[tuple[str, str, int]] = []  # (node, attribute, characters)
        patch(pacemaker, "member_names", lambda joined=False: self.members)
        patch(pacemaker, "update_attribute", self.update)
        patch(pacemaker, "delete_attribute",
              lambda name, node: self.values.pop((name, node), None))
        patch(pacemaker, "attribute_values", lambda name, members=None: {
            node: self.values[name, node] for node in members or self.members
            if (name, node) in self.values})

    def update(self, name: str, value: str, *, node: str, private: bool) -> None:
        assert private, "never in the CIB"
        self.values[name, node] = value
        self.writes.append((node, name, len(value)))

    def handed_to(self, node: str, attribute: str) -> set[Record]:
        """What a tickler on node would read."""
        shards, connections = codec.parse_header(self.values.get((attribute, node)))
        for index in range(shards):
            connections += codec.decode(self.values[codec.shard_name(attribute, shards, index),
                                                    node])
        return {codec.pack(*connection) for connection in connections}


def sizes(count: int, per_client: int, ipv6: bool) -> tuple[int, int, float, float]:
    """(characters, shards, ms to encode, ms to decode) of a list of count connections."""
    records = clients(count, per_client=per_client, ipv6=ipv6)
    began = time.process_time()
    size = 16 if ipv6 else 4
    shards = codec.shard_count(count, size)
    texts = codec.split(records, shards, size) if shards else [codec.header(0, records, size)]
    encoded = time.process_time()
    for text in texts:
        codec.decode(text.rpartition(":")[2])
    decoded = time.process_time()
    return (sum(map(len, texts)), shards, (encoded - began) * 1000,
            (decoded - encoded) * 1000)


def churn(count: int, per_second: float, minutes: float, per_client: int, ipv6: bool,
          patch: "Callable[[object, str, object], None]" = setattr) -> dict[str, float]:
    """The owner's writes while per_second of count connections are replaced every second,
    for minutes after the first base, in a three-node cluster (two other nodes)."""
    clock = [0.0]
    attrd = Attrd(["node1", "node2", "node3"], patch)
    rng = random.Random(5)
    pool = list(clients(count * 3, per_client=per_client, ipv6=ipv6, seed=11))
    rng.shuffle(pool)
    held, spare = pool[:count], deque(pool[count:])
    owner = handover.HandOver("2001:2::10" if ipv6 else "198.18.0.10", "vip", "node1",
                              clock=lambda: clock[0])
    replaced = int(count * per_second * handover.HANDOVER_PERIOD)

    def look() -> set[Record]:
        now = set(held)
        for _ in range(replaced):  # any may end; a new one takes its place
            index = rng.randrange(len(held))
            held[index], held[-1] = held[-1], held[index]
            spare.append(held.pop())
            held.append(spare.popleft())
        return now

    owner.look = look  # type: ignore[method-assign]
    rounds = int(minutes * 60 / handover.HANDOVER_PERIOD)
    for _ in range(15):  # the first base, and the first check of the other nodes
        owner()
        clock[0] += handover.HANDOVER_PERIOD
    attrd.writes.clear()
    cpu = missing = 0.0
    for _ in range(rounds):
        seen = owner.seen
        began = time.process_time()
        owner()
        cpu += time.process_time() - began
        clock[0] += handover.HANDOVER_PERIOD
        missing += len(seen & owner.seen - attrd.handed_to("node2", owner.attribute))
    seconds = rounds * handover.HANDOVER_PERIOD
    written = sum(chars for _, _, chars in attrd.writes)
    return {"chars_per_s": written / seconds, "calls_per_s": len(attrd.writes) / seconds,
            "cpu_ms_per_round": cpu / rounds * 1000, "missing": missing / rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--output", default="bench/results/handover_cost.md")
    args = parser.parse_args()
    lines = ["# Connection hand-over: size and write rate (bench/handover_cost.py)", "",
             f"Limits: a list of up to {codec.INLINE_MAX} characters is written whole; "
             f"shards of at most {codec.SHARD_MAX} characters (aim "
             f"{codec.SHARD_TARGET}), {codec.MAX_SHARDS} shards, {handover.HANDOVER_MAX} "
             f"connections; rate limit {handover.RATE} characters/s; a new base once the "
             f"headers written since the last cost as much, or "
             f"{handover.STALE_FRACTION:.0%} of it is gone.", "",
             "## Size of the list and CPU time of its encoding", "",
             "| workload | connections | characters | a connection | shards | encode ms "
             "| decode ms |", "|---|---|---|---|---|---|---|"]
    for name, (per_client, ipv6) in WORKLOADS.items():
        for count in (2_000, 20_000, 50_000):
            chars, shards, encode_ms, decode_ms = sizes(count, per_client, ipv6)
            lines.append(f"| {name} | {count:,} | {chars:,} | {chars / count:.1f} | {shards} "
                         f"| {encode_ms:.0f} | {decode_ms:.0f} |")
            print(lines[-1], flush=True)
    lines += ["", f"## Steady state: connections replaced while they are held "
                  f"({args.minutes:g} min, 3 nodes: every value goes to 2)", "",
              "| workload | connections | churn | characters/s (all nodes) | attrd_updater/s "
              "| CPU ms a round | held twice, not handed over |", "|---|---|---|---|---|---|---|"]
    for name, (per_client, ipv6) in WORKLOADS.items():
        for count, rate in ((2_000, 0.01), (20_000, 0.01), (50_000, 0.01), (50_000, 0.05)):
            if ipv6 and rate > 0.01:
                continue
            got = churn(count, rate, args.minutes, per_client, ipv6)
            lines.append(f"| {name} | {count:,} | {rate:.0%}/s | {got['chars_per_s']:,.0f} | "
                         f"{got['calls_per_s']:.2f} | {got['cpu_ms_per_round']:.0f} | "
                         f"{got['missing']:,.0f} |")
            print(lines[-1], flush=True)
    with open(args.output, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
