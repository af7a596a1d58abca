"""Network namespaces, veth links and switches: real iproute2, nothing on the root namespace.

What callers get: `NetnsPool` makes namespaces (`new()`), hosts with a private /run
(`host()`), veth links (`link()`) and switches (`switch()`: a bridge in a namespace of its
own), and `cleanup()` kills whatever still runs inside them before deleting them, so a failed
test leaves no process, interface or address behind. Every namespace of a NetnsPool is named
``kuth-t<pid>-<n>``, so that a run only ever deletes its own; `NamedPool` names them by role
under a harness's prefix instead (see teardown). Addresses come from 198.18.0.0/15 (IPv4) and
2001:2::/48 (IPv6), the ranges set aside for benchmarking.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time

_counter = itertools.count()

# Each namespace keeps its TCP connections in a table of its own, as a real host does,
# not in the machine's, which every namespace shares by default: a look at a node's
# sockets (sock_diag) walks the whole table, and 100,000 clients' sockets in it would make
# a tickler's or a stop's look tens of milliseconds longer than on a real node. The size is
# read from the namespace that creates it (net.ipv4.tcp_child_ehash_entries), here a
# throwaway one; a kernel before 6.1 lacks it and keeps the shared table.
TCP_HASH_BUCKETS = 131_072  # a host's connections: the scale benchmark holds 50,000 a side
_ADD_NETNS = """
sysctl -qw net.ipv4.tcp_child_ehash_entries="$2" 2>/dev/null
exec ip netns add "$1"
"""


def add_netns(name: str) -> None:
    """`ip netns add name`, with a TCP table of its own (see TCP_HASH_BUCKETS)."""
    subprocess.run(["unshare", "--net", "sh", "-c", _ADD_NETNS, "sh", name,
                    str(TCP_HASH_BUCKETS)], check=True)


class Netns:
    """One network namespace; `run` executes a command inside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def exec_argv(self, argv: list[str]) -> list[str]:
        """argv wrapped to run inside the namespace."""
        return [shutil.which("ip") or "ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace (input on its stdin) and capture its output as text."""
        return subprocess.run(self.exec_argv(list(argv)), capture_output=True, input=input,
                              text=True, check=check, env=env, timeout=timeout)

    def ip(self, *args: str, check: bool = True) -> str:
        """Run `ip -n NAME ARGS...` and return its standard output."""
        return subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True,
                              check=check).stdout

    def popen(self, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start argv inside the namespace in the background."""
        return subprocess.Popen(self.exec_argv(list(argv)), **kwargs)  # type: ignore[call-overload]

    def addresses(self, dev: str) -> list[str]:
        """The addresses on dev as 'addr/prefix' strings (empty when dev is gone)."""
        import json
        out = self.ip("-j", "addr", "show", "dev", dev, check=False)
        if not out.strip():
            return []
        return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out)
                for a in link.get("addr_info", [])]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> None:
        """SIGKILL every process inside, again until none is left (one may fork meanwhile)."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def delete(self) -> None:
        """Kill every process inside, then delete the namespace."""
        self.kill_all()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Host(Netns):
    """A host with a network namespace and a mount namespace of its own in which /run is a
    fresh tmpfs, as on a node fresh from boot (no /run/haproxy, no /run/resource-agents).
    A holder process keeps the mount namespace; commands enter both with nsenter."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", name, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", "mount -t tmpfs -o mode=755 tmpfs /run && echo ready && exec sleep 86400"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != b"ready":
            raise RuntimeError("could not make the node's private /run")

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", *argv]

    def delete(self) -> None:
        super().delete()
        self.holder.wait()


class NetnsPool:
    """Creates namespaces and veth links; `cleanup()` removes all it made."""

    def __init__(self) -> None:
        self.made: list[Netns] = []

    def new(self) -> Netns:
        """A network namespace with its loopback up."""
        ns = Netns(self._add())
        self.made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def host(self) -> Host:
        """A network namespace plus a private mount namespace with a fresh /run."""
        host = Host(self._add())
        self.made.append(host)
        host.ip("link", "set", "lo", "up")
        return host

    @staticmethod
    def _add() -> str:
        name = f"kuth-t{os.getpid()}-{next(_counter)}"
        add_netns(name)
        return name

    @staticmethod
    def link(a: Netns, a_dev: str, b: Netns, b_dev: str) -> None:
        """Connect a and b with a veth pair named a_dev/b_dev, both up."""
        subprocess.run(["ip", "-n", a.name, "link", "add", a_dev, "type", "veth", "peer", "name",
                        b_dev, "netns", b.name], check=True)
        a.ip("link", "set", a_dev, "up")
        b.ip("link", "set", b_dev, "up")

    def switch(self, hosts: list[Netns], dev: str = "lan0") -> Netns:
        """An Ethernet switch: a bridge in a namespace of its own, with a port for each host,
        whose end in the host is called dev. Frames cross it without netfilter, as they cross
        a real switch (Linux passes bridged IP to iptables by default, and on one machine
        that work is charged to whoever sent the frame: a tickler's sends, at a node loss)."""
        sw = self.new()
        for table in ("iptables", "ip6tables", "arptables"):
            sw.run("sysctl", "-qw", f"net.bridge.bridge-nf-call-{table}=0")
        sw.ip("link", "add", "br0", "type", "bridge")
        sw.ip("link", "set", "br0", "up")
        for number, host in enumerate(hosts):
            self.link(sw, f"port{number}", host, dev)
            sw.ip("link", "set", f"port{number}", "master", "br0")
        return sw

    def cleanup(self) -> None:
        for ns in reversed(self.made):
            ns.delete()
        self.made.clear()


class NamedPool(NetnsPool):
    """A NetnsPool whose namespaces are called PREFIX<role>, so an operator sees what each is
    and a reaper finds all of one harness by its prefix."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def new(self, role: str = "") -> Netns:  # type: ignore[override]
        ns = Netns(f"{self.prefix}{role or f'switch{len(self.made)}'}")
        add_netns(ns.name)
        self.made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns
