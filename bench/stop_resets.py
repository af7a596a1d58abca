"""How long ocf:kuth:IPaddr2's stop takes with N established TCP connections on its address,
all of which it resets (ocf_lib.logic.vip.reset_connections), and whether every client got
its reset.

    python3 -m bench.stop_resets [--connections 0,1000,5000,20000,50000] [--runs 5]

The node and a client host are network namespaces on one link (bench.agent_speed's Lane).
Every process here is held to 20,000 open files, so the connections are spread: listeners
on the node share the port with SO_REUSEPORT, each accepting a few thousand, and client
processes each hold a few thousand from an address of their own (so ports do not run out).
The clients stay idle, as Kubernetes watches do, and read nothing while stop runs: the
machine's two CPUs then serve the agent alone. The client host records each reset as it
arrives (a packet socket, kernel timestamps), which tells when the first and the last
client learned; afterwards every client socket is asked for its error, which tells that
none was missed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.agent_speed import (DEFAULT_AGENT, NIC, Agent, BenchError, Case, Lane,
                               machine_lines, ms, packet_socket_in, run_main)
from lab.netns import Netns, NetnsPool

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "stop_resets.md"
PORT = 7000
PER_LISTENER = 6000  # connections a listener is meant to accept; the hash spreads them unevenly
PER_CLIENT = 9000  # connections a client process opens, from an address of its own
SO_RCVBUFFORCE, SO_TIMESTAMPNS = 33, 35  # not in Python's socket module
CASE = Case("inet", "198.18.0.10", "24")  # the agent's defaults otherwise
TARGET_CONNECTIONS, TARGET_SECONDS = 20_000, 0.3  # issue 25: the address's stop stays short

# Listens on argv[1] (an IPv6 one taking IPv4 clients too), accepts forever and holds every
# connection; the port is shared with the other listeners.
LISTENER = """
import socket, sys
family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
if family == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((sys.argv[1], %d))
s.listen(4096)
print('listening', flush=True)
held = []
while True:
    held.append(s.accept()[0])
""" % PORT
# Opens argv[3] connections from address argv[2] to argv[1]:PORT, says 'open', and after a
# line on stdin tells (JSON) what each socket has seen meanwhile, reading nothing before.
CLIENT = """
import json, socket, sys
vip, source, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = []
for _ in range(count):
    s = socket.socket(socket.AF_INET6 if ':' in vip else socket.AF_INET)
    s.bind((source, 0))
    s.connect((vip, %d))
    s.setblocking(False)
    held.append(s)
print('open', flush=True)
sys.stdin.readline()
seen = {'reset': 0, 'open': 0, 'closed': 0, 'other': 0}
for s in held:
    try:
        seen['closed' if s.recv(1) == b'' else 'other'] += 1
    except ConnectionResetError:
        seen['reset'] += 1
    except BlockingIOError:
        seen['open'] += 1
    except OSError:
        seen['other'] += 1
print(json.dumps(seen), flush=True)
""" % PORT


class Crowd:
    """count idle connections from the client host to vip:PORT on the node (both on the
    link NIC), held by listener processes on the node (on the wildcard address bind) and
    client processes on the client host, each from an address of its own that it adds
    there; `seen()` tells what the clients' sockets saw, `close()` ends every process."""

    def __init__(self, node: Netns, client: Netns, vip: str, count: int,
                 bind: str = "0.0.0.0") -> None:
        self.listeners = [self._started(node, "/usr/bin/python3", "-c", LISTENER, bind)
                          for _ in range(math.ceil(count / PER_LISTENER) + 1)]
        self.clients = []
        for number, start in enumerate(range(0, count, PER_CLIENT)):
            source = f"2001:2::{100 + number:x}" if ":" in vip else f"198.18.0.{100 + number}"
            client.ip("addr", "replace", source + ("/64" if ":" in vip else "/24"), "dev", NIC,
                      *(["nodad"] if ":" in vip else []))
            self.clients.append(client.popen(
                "/usr/bin/python3", "-c", CLIENT, vip, source,
                str(min(PER_CLIENT, count - start)), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True))
        for proc in self.clients:
            self._expect(proc, "open")
        self._wait_accepted(node)

    def _started(self, ns: Netns, *argv: str) -> subprocess.Popen[str]:
        proc = ns.popen(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self._expect(proc, "listening")
        return proc

    @staticmethod
    def _expect(proc: subprocess.Popen[str], word: str) -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != word:
            raise BenchError(f"a connection process said {line!r}, not {word!r}"
                             f" (exit {proc.poll()})")

    @staticmethod
    def _wait_accepted(node: Netns, timeout: float = 30) -> None:
        """Wait until the listeners have accepted every connection (their queues are
        empty), so that stop meets the sockets as a server holds them."""
        deadline = time.monotonic() + timeout
        while True:
            queued = node.run("ss", "-Hltn", "sport", "=", f":{PORT}").stdout.split("\n")
            if all(int(line.split()[1]) == 0 for line in queued if line.strip()):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"listeners still have connections queued after {timeout} s")
            time.sleep(0.05)

    def seen(self) -> dict[str, int]:
        """What the client sockets have seen, summed over the client processes: reset,
        open (nothing yet), closed (a FIN) or other."""
        total = dict.fromkeys(("reset", "open", "closed", "other"), 0)
        for proc in self.clients:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in self.clients:
            assert proc.stdout is not None
            for key, value in json.loads(proc.stdout.readline()).items():
                total[key] += value
        return total

    def close(self) -> None:
        for proc in (*self.clients, *self.listeners):
            proc.kill()
            proc.wait()


class Resets:
    """The resets the client host receives from the address, each with the time the kernel
    took it in: a packet socket on its link with room for every frame until read."""

    def __init__(self, client: Netns, vip: str) -> None:
        self.sock = packet_socket_in(client, NIC)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 28)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.vip = socket.inet_aton(vip)

    def read(self) -> list[float]:
        """The arrival times (time.time() seconds) of the resets from the address since the
        last read, in order."""
        times = []
        while True:
            try:
                frame, ancillary, _, _ = self.sock.recvmsg(128, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return times
            if self._is_reset(frame):
                seconds, nanoseconds = struct.unpack("=qq", ancillary[0][2][:16])
                times.append(seconds + nanoseconds / 1e9)

    def _is_reset(self, frame: bytes) -> bool:
        if frame[12:14] != b"\x08\x00" or frame[23] != socket.IPPROTO_TCP:
            return False
        tcp = 14 + (frame[14] & 0x0F) * 4
        return frame[26:30] == self.vip and bool(frame[tcp + 13] & 0x04)

    def close(self) -> None:
        self.sock.close()


@contextmanager
def address_with_crowd(count: int, statedir: str) -> Iterator[tuple[Lane, Netns, Crowd]]:
    """The agent's address started on a fresh lane and count connections to it: the lane,
    its client host and the crowd, all removed afterwards."""
    pool = NetnsPool()
    lane = crowd = None
    try:
        lane = Lane(Agent("ours", DEFAULT_AGENT), pool, statedir)
        node, client = pool.made  # the lane's two namespaces
        lane.action(CASE, "start", 0)
        crowd = Crowd(node, client, CASE.ip, count)
        yield lane, client, crowd
    finally:
        for part in (crowd, lane):
            if part is not None:
                part.close()
        pool.cleanup()


def one_stop(count: int, statedir: str) -> dict[str, float]:
    """Time the agent's stop with count connections on the address; the figures of that run:
    stop's wall seconds, when the first and the last reset reached the client host after
    stop began, and what the client sockets saw."""
    with address_with_crowd(count, statedir) as (lane, client, crowd):
        resets = Resets(client, CASE.ip)
        try:
            began = time.time()
            seconds = lane.action(CASE, "stop", 0)
            time.sleep(0.2)  # the last resets on their way
            arrived = resets.read()
        finally:
            resets.close()
        return {"stop": seconds, "first": arrived[0] - began if arrived else math.nan,
                "last": arrived[-1] - began if arrived else math.nan, **crowd.seen()}


def one_breakdown(count: int, statedir: str) -> dict[str, float]:
    """Time, in this process inside the node's namespace, the two halves of what stop does
    with count connections: listing them (sock_diag.on_address: the kernel's dump, read
    into Connections) and destroying them (sock_diag.destroy)."""
    from ocf_lib.adapters import sock_diag
    with address_with_crowd(count, statedir) as (lane, _, _):
        with lane.view.entered():
            began = time.perf_counter()
            connections = sock_diag.on_address(CASE.ip)
            listed = time.perf_counter()
            closed = sock_diag.destroy(connections)
            ended = time.perf_counter()
    if closed != count:
        raise BenchError(f"destroy closed {closed} of {count} connections")
    return {"dump": listed - began, "destroy": ended - listed}


def measure(counts: list[int], runs: int) -> tuple[list[str], list[str], list[str]]:
    """The table rows: one per count for the stops, one per count for the breakdown; and
    the line on the target."""
    stops, breakdowns, target = [], [], []
    with tempfile.TemporaryDirectory(prefix="stop-resets-") as tmp:
        lanes = iter(range(1_000_000))
        for count in counts:
            print(f"{count} connections: {runs} stops, {runs} breakdowns", file=sys.stderr)
            figures = [one_stop(count, os.path.join(tmp, str(next(lanes)))) for _ in range(runs)]
            stops.append(stop_row(count, figures))
            if count == TARGET_CONNECTIONS:
                target = target_line(figures)
            if count:
                parts = [one_breakdown(count, os.path.join(tmp, str(next(lanes))))
                         for _ in range(runs)]
                dump, destroy = (statistics.median(p[key] for p in parts)
                                 for key in ("dump", "destroy"))
                breakdowns.append(f"| {count:,} | {ms(dump)} | {ms(destroy)} |"
                                  f" {destroy / count * 1e6:.1f} |")
    return stops, breakdowns, target


def target_line(figures: list[dict[str, float]]) -> list[str]:
    """Whether stop met its bound at TARGET_CONNECTIONS (the median run) and reset every
    client (all runs)."""
    seconds = statistics.median(f["stop"] for f in figures)
    met = seconds <= TARGET_SECONDS and all(f["reset"] == TARGET_CONNECTIONS for f in figures)
    return [f"Target: at {TARGET_CONNECTIONS:,} connections stop within"
            f" {ms(TARGET_SECONDS)} ms and every client reset: {ms(seconds)} ms,"
            f" {'met' if met else '**not met**'}.", ""]


def stop_row(count: int, figures: list[dict[str, float]]) -> str:
    """Medians over the runs, the spread of stop's time, and the clients' totals."""
    def median(key: str) -> float:
        return statistics.median(f[key] for f in figures)
    seconds = sorted(f["stop"] for f in figures)
    missed = sum(count - f["reset"] for f in figures)
    return (f"| {count:,} | {ms(median('stop'))} | {ms(seconds[0])}-{ms(seconds[-1])} |"
            f" {ms(median('first')) if count else '-'} | {ms(median('last')) if count else '-'} |"
            f" {sum(f['reset'] for f in figures):,} of {count * len(figures):,} |"
            f" {'**' + str(missed) + '**' if missed else 0} |")


def report(counts: list[int], runs: int, load_before: float) -> str:
    stops, breakdowns, target = measure(counts, runs)
    lines = ["# IPaddr2's stop with N connections on the address", "",
             *machine_lines(load_before),
             f"- Agent: `{DEFAULT_AGENT}`, defaults, IPv4 address {CASE.ip}/{CASE.cidr};"
             f" {runs} stops per N, medians shown",
             "- Clients: idle connections from the client host (a network namespace on the"
             " same link), listeners on the node's wildcard address sharing the port", "",
             "| connections | stop (ms) | stop, fastest-slowest (ms) |"
             " first reset at the client host (ms) | last reset (ms) | clients reset, all runs |"
             " clients missed |",
             "|---:|---:|---:|---:|---:|---:|---:|",
             *stops, "", *target,
             "A reset's time counts from stop's spawn to the frame's arrival on the client"
             " host's link (kernel timestamp). After each stop every client socket is asked for"
             " its error: \"reset\" means ECONNRESET. The client host shares the machine:"
             " a veth hands each reset over on the CPU that sent it, so about half of a"
             " destroy's kernel time here is the client's handling of it (perf: the client's"
             " tcp_validate_incoming and early demux beside the node's tcp_abort); a node on a"
             " real link pays the other half alone.", "",
             "The two halves, in one process in the node's namespace (medians of as many runs):", "",
             "| connections | dump: on_address (ms) | destroy (ms) | destroy per connection"
             " (us) |",
             "|---:|---:|---:|---:|",
             *breakdowns]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="0,1000,5000,20000,50000",
                        help="comma-separated connection counts (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5,
                        help="stops timed per count (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown file to write (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(n) for n in args.connections.split(",")]
    except ValueError:
        parser.error("--connections takes numbers separated by commas")
    if args.runs < 1 or any(n < 0 for n in args.counts):
        parser.error("--runs must be at least 1 and counts not negative")
    return args


def main(argv: list[str]) -> int:
    return run_main("stop_resets", parse_args(argv),
                    lambda args: report(args.counts, args.runs, os.getloadavg()[0]),
                    "namespaces removed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
