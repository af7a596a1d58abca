"""A real haproxy from Debian inside one network namespace, for the agent tests and the
haproxy benchmark (the cluster has its own, lab.cluster).

What callers get: `HaproxyLab` (a namespace with the lab's addresses, backend servers and
haproxy.cfg; `start` runs haproxy on it), `HaNode` (the same on a lab.netns.Host, with the
stats socket in the host's /run/haproxy, where an agent finds it), `guide_config_for_test`,
`wait_for` and `freeze`. The configuration is the guide's (lab/data/guide.cfg) with what a
test must change: frontends on 198.18.1.1, the kube-apiserver servers on 198.18.2.1-3 (never
the guide's 192.168.4.x), checks every 200 ms, the stats socket where the caller says.
Backend servers are small HTTP servers in the same namespace; a server without one is
DOWN. `close()` kills every haproxy and server the lab started (SIGCONT first, so a
SIGSTOPped one dies too); the namespace pool then removes whatever is left.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from lab import processes
from lab.guide import GUIDE_CFG
from lab.netns import Host, Netns
from ocf_lib.adapters import haproxy_api as api
from ocf_lib.adapters import process

HAPROXY = "/usr/sbin/haproxy"
FRONT = "198.18.1.1"
SERVERS = ("198.18.2.1", "198.18.2.2", "198.18.2.3")


def guide_config_for_test(socket_path: str) -> str:
    """The guide's haproxy.cfg with the test's addresses, socket and check timing."""
    text = Path(GUIDE_CFG).read_text()
    for number, address in enumerate(SERVERS, 1):
        text = text.replace(f"192.168.4.2{number}:", f"{address}:")
    text = text.replace("bind *:", f"bind {FRONT}:")
    text = text.replace("/run/haproxy/admin.sock", socket_path)
    return "\n".join("    default-server inter 200ms downinter 200ms rise 1 fall 1"
                     if line.strip().startswith("default-server") else line
                     for line in text.splitlines()) + "\n"


def _answers(ask: Callable[[], object]) -> bool:
    try:
        return bool(ask())
    except api.RuntimeApiError:
        return False


def wait_for(condition: Callable[[], object], timeout: float = 10, what: str = "") -> object:
    """Poll condition until it returns something true; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.05)


def freeze(pid: int) -> None:
    """SIGSTOP pid and return once every one of its threads has stopped: the signal
    is asynchronous and haproxy's second thread may answer one more request."""
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: processes.stopped(pid), timeout=5, what=f"pid {pid} stopped")


class HaproxyLab:
    def __init__(self, ns: Netns, workdir: Path) -> None:
        self.ns = ns
        self.workdir = workdir
        self.socket = str(workdir / "admin.sock")
        self.config = workdir / "haproxy.cfg"
        self.pidfile = str(workdir / "haproxy.pid")
        self.master_socket = str(workdir / "master.sock")
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        self.haproxy_pids: set[int] = set()
        for address in (FRONT, *SERVERS):
            ns.ip("addr", "add", f"{address}/32", "dev", "lo")
        self.config.write_text(guide_config_for_test(self.socket))

    def start_server(self, address: str, port: int = 6443) -> None:
        """An HTTP server at address:port, so the haproxy server there turns UP."""
        proc = self.ns.popen("/usr/bin/python3", "-m", "http.server", "--bind", address,
                             str(port), "--directory", str(self.workdir),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.servers[f"{address}:{port}"] = proc
        wait_for(lambda: self._listening(address, port), what=f"server {address}:{port}")

    def stop_server(self, address: str, port: int = 6443) -> None:
        proc = self.servers.pop(f"{address}:{port}")
        proc.kill()
        proc.wait()

    def start(self, *extra: str, master_worker: bool = False) -> list[int]:
        """Start haproxy on the lab's config; return the pids of its pidfile once the
        stats socket answers (and, in master-worker mode, the master CLI: its socket
        exists a moment before the master listens on it)."""
        argv = [HAPROXY, "-f", str(self.config), "-p", self.pidfile, *extra]
        if master_worker:
            argv[1:1] = ["-W", "-S", self.master_socket]
        result = self.ns.run(*argv, check=False)
        assert result.returncode == 0, result.stderr
        pids = process.read_pidfile(self.pidfile)
        self.haproxy_pids.update(pids)
        wait_for(lambda: _answers(lambda: api.show_info(self.socket, timeout=1)),
                 what="the stats socket")
        if master_worker:
            wait_for(lambda: _answers(lambda: api.show_proc(self.master_socket, timeout=1)),
                     what="the master CLI")
        self.haproxy_pids.update(info.pid for info in
                                 process.find_haproxy(HAPROXY, str(self.config)))
        return pids

    def close(self) -> None:
        for pid in self.haproxy_pids | {info.pid for info in
                                        process.find_haproxy(HAPROXY, str(self.config))}:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        for proc in self.servers.values():
            proc.kill()
            proc.wait()
        self.servers.clear()

    def _listening(self, address: str, port: int) -> bool:
        out = self.ns.run("ss", "-Htln", "src", f"{address}:{port}", check=False).stdout
        return bool(out.strip())


SOCKET = "/run/haproxy/admin.sock"


class HaNode:
    """For agent tests: a host (lab.netns.Host, with a fresh /run) with the lab's servers and
    a haproxy config whose socket is in /run/haproxy."""

    def __init__(self, node: Host, workdir: Path) -> None:
        self.node = node
        self.lab = HaproxyLab(node, workdir)
        self.config = str(self.lab.config)
        self.write_config(guide_config_for_test(SOCKET))

    def write_config(self, text, mode=0o644):
        with open(self.config, "w") as f:
            f.write(text)
        os.chmod(self.config, mode)

    def haproxy_pids(self):
        """Live haproxy processes of the node's network namespace (zombies not yet reaped by
        init excluded)."""
        inside = set(self.node.pids())  # the pid namespace is the machine's: keep the node's
        out = self.node.run("pgrep", "-x", "haproxy", check=False).stdout
        return sorted(int(p) for p in out.split() if int(p) in inside and process.alive(int(p)))

    def http(self, port, path="/", auth=True):
        """Status of an HTTP GET to the frontend address from inside the node."""
        code = ("import urllib.request,base64,sys\n"
                f"r=urllib.request.Request('http://{FRONT}:{port}{path}')\n"
                + ("r.add_header('Authorization','Basic '+base64.b64encode(b'admin:admin').decode())\n"
                   if auth else "")
                + "print(urllib.request.urlopen(r,timeout=5).status)")
        return self.node.run("/usr/bin/python3", "-c", code, check=False).stdout.strip()

    def connect(self, port=6443):
        """A TCP connection through haproxy, opened from inside the node; returns the client
        process, which sends an HTTP request when told on stdin and prints the answer."""
        code = ("import socket,sys\n"
                f"s=socket.create_connection(('{FRONT}',{port}),timeout=30)\n"
                "print('open',flush=True)\n"
                "sys.stdin.readline()\n"
                "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
                "print(s.recv(100).split(b'\\r\\n')[0].decode(),flush=True)\n")
        proc = self.node.popen("/usr/bin/python3", "-c", code, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "open"
        return proc


