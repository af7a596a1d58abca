"""A cluster node: network, mount and UTS namespaces held by one `sleep` process, and a
disk that outlives it.

What callers get: `Node.boot()` makes the namespaces and lays out the node as a freshly
booted Debian node would be: its hostname; its network as its interfaces file would set it
(only the node's own addresses, an empty neighbour table); fresh tmpfs on /run and /dev/shm
(VOLATILE_DIRS); and, bind-mounted from its disk (a directory of the machine's, `disk`),
the directories a real node keeps across reboots (DISK_DIRS: /etc/{corosync,haproxy},
/var/lib/{corosync,pacemaker}, /var/log/{pacemaker,corosync,crmsh}, and /etc/hosts), with
what packages and systemd-tmpfiles make; then the OCF agents to run and, with fence_agent,
the lab's fence agent (lab.fencing). Nodes never share state with each
other or the machine. `power_off()` ends every process of the node at once, as pulling a
VM's power does: the volatile state goes with the namespaces' last process, the disk
stays for the next boot. Then `run`, `popen`, `read`, `write`, `path` and friends work
inside the node.

The agents: /usr/lib/ocf/resource.d is replaced, only in the node, by a tmpfs holding bind
mounts of the machine's providers (heartbeat, pacemaker) and `kuth` -> agents_dir (a
symlink, not a bind mount, so the agent's realpath still finds ocf_lib next to it in a
checkout), or, with package_root, the files of an unpacked .deb are laid over the node's
/usr. With extra_agents ({"heartbeat/haproxy": path}), a provider that gets one is a copy of
the machine's on a tmpfs with the file added (the old shell haproxy agent of
lab/legacy, say): the machine's /usr/lib/ocf stays as it is. The fence agent: lab/usr laid over the node's /usr, so that it is in /usr/sbin, where
pacemaker-fenced looks for fence_* agents. Both go into one read-only overlay: overlays
stack at most two deep, and in the Debian 13 root (tools/debian13-root) / is one already.
"""
from __future__ import annotations

import os
import subprocess
import time

from lab import command, processes
from lab.command import ClusterError
from lab.fencing import USR_LAYER
from lab.netns import Netns
from lab.topology import RING_NETWORK, VIP_NETWORK

OCF_PROVIDERS = "/usr/lib/ocf/resource.d"
# Fresh tmpfs at every boot, with their modes (/dev/shm holds libqb's IPC buffers, made by
# hacluster too).
VOLATILE_DIRS = {"/run": "0755", "/dev/shm": "1777"}
# The node's own directories on its disk, kept across reboots, with their modes.
DISK_DIRS = {"/etc/corosync": "0755", "/etc/haproxy": "0755", "/var/lib/corosync": "0755",
             "/var/lib/pacemaker": "0755", "/var/log/pacemaker": "0770",
             "/var/log/corosync": "0755", "/var/log/crmsh": "0775"}
HOSTS = "/etc/hosts"  # a file of the node's disk too (crmsh resolves node names with it)
# The node's interfaces and their address's last byte is the node's number (lab.topology).
INTERFACES = {"ring0": RING_NETWORK, "lan0": VIP_NETWORK}
# The environment of every command in a node: HOME on the node's /run, so crmsh keeps its
# cache and history there and not in the machine's /root.
NODE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/run/home", "LANG": "C.UTF-8"}
PACEMAKER_ENV = {**NODE_ENV, "PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
                 "PCMK_logfacility": "none"}


class Node:
    """A cluster node: network, mount and UTS namespaces held by one `sleep` process."""

    def __init__(self, name: str, number: int, netns: Netns, disk: str) -> None:
        """disk: the machine directory that holds the node's DISK_DIRS and /etc/hosts."""
        self.name = name
        self.number = number
        self.netns = netns
        self.disk = disk
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
        return command.run(self.enter(argv), check=check, input=input, timeout=timeout,
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
        return [pid for pid in self.netns.pids() if processes.name(pid).startswith(comm_prefix)]


    # -- boot and power

    def boot(self, agents_dir: str | None, package_root: str | None,
             fence_agent: bool = False, extra_agents: dict[str, str] | None = None) -> None:
        """Make the node's namespaces and lay it out as a freshly booted node: hostname,
        network, fresh volatile and kept disk directories, the OCF agents (agents_dir, or
        package_root's /usr, plus extra_agents: {"provider/type": file}), and with
        fence_agent the lab's fence agent."""
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns.name, "unshare", "--mount", "--uts",
             "--propagation", "private", "sleep", "infinity"], stdin=subprocess.DEVNULL)
        wait_exec(self.holder, "sleep")
        self.run(["hostname", self.name])
        self._configure_network()
        for directory, mode in VOLATILE_DIRS.items():
            self.run(["mount", "-t", "tmpfs", "-o", f"mode={mode}", f"{self.name}-state",
                      directory])
        self._mount_disk()
        self._make_dirs()
        layers = ([USR_LAYER] if fence_agent else []) + (
            [f"{package_root}/usr"] if package_root else [])
        if layers:  # one overlay: a machine whose / is an overlay already allows one more
            self.run(["mount", "-t", "overlay", "-o", f"lowerdir={':'.join(layers)}:/usr",
                      f"{self.name}-usr", "/usr"])
        if agents_dir:
            self._show_agents(agents_dir, extra_agents or {})

    def power_off(self) -> None:
        """End every process of the node at once (SIGKILL, until none is left), as pulling a
        VM's power does; its namespaces' volatile state goes with the last one, and its
        kernel's addresses (the VIP among them) with its memory."""
        self.netns.kill_all()
        if self.holder is not None:
            self.holder.wait()
        for dev in INTERFACES:
            self.netns.ip("addr", "flush", "dev", dev)

    @property
    def powered(self) -> bool:
        return self.holder is not None and self.holder.poll() is None

    def _configure_network(self) -> None:
        """The node's interfaces as at boot: its own address on each, nothing learned."""
        for dev, network in INTERFACES.items():
            self.netns.ip("addr", "flush", "dev", dev)
            self.netns.ip("addr", "add", f"{network}.{self.number}/24", "dev", dev)
        self.netns.ip("neigh", "flush", "all")

    def _mount_disk(self) -> None:
        """DISK_DIRS and /etc/hosts from the node's disk (made on the first boot)."""
        for directory, mode in DISK_DIRS.items():
            source = f"{self.disk}{directory}"
            if not os.path.isdir(source):
                os.makedirs(source)
                os.chmod(source, int(mode, 8))
            self.run(["mount", "--bind", source, directory])
        hosts = f"{self.disk}{HOSTS}"
        if not os.path.exists(hosts):
            with open(hosts, "w", encoding="utf-8"):
                pass
        self.run(["mount", "--bind", hosts, HOSTS])

    def _make_dirs(self) -> None:
        """What the packages and systemd-tmpfiles would have made on a booted node."""
        owned = ["/var/lib/pacemaker/cib", "/var/lib/pacemaker/pengine",
                 "/var/lib/pacemaker/blackbox", "/var/lib/pacemaker/cores", "/run/crm"]
        self.run(["mkdir", "-p", "-m", "0750", *owned, "/run/resource-agents", "/run/home"])
        self.run(["chown", "hacluster:haclient", *owned, "/var/log/pacemaker", "/var/log/crmsh"])

    def _show_agents(self, agents_dir: str, extra_agents: dict[str, str]) -> None:
        """resource.d in the node: a tmpfs with the machine's providers bind-mounted back
        (heartbeat's relative links ../../lib/heartbeat/... then still resolve) and kuth, a
        symlink to agents_dir. A provider with extra agents is copied instead (2.3 MB for
        heartbeat, a few ms), and the extra files are added to the copy."""
        providers = sorted(p for p in os.listdir(OCF_PROVIDERS) if p != "kuth")
        extended = {name.split("/")[0] for name in extra_agents}
        hidden = "/run/ocf-providers"  # the machine's directory, before the tmpfs hides it
        self.run(["mkdir", hidden])
        self.run(["mount", "--bind", OCF_PROVIDERS, hidden])
        self.run(["mount", "-t", "tmpfs", "-o", "mode=0755", f"{self.name}-ocf", OCF_PROVIDERS])
        for provider in sorted(set(providers) | extended):
            self.run(["mkdir", f"{OCF_PROVIDERS}/{provider}"])
            if provider not in extended:
                self.run(["mount", "--bind", f"{hidden}/{provider}",
                          f"{OCF_PROVIDERS}/{provider}"])
            elif provider in providers:
                self.run(["cp", "-a", f"{hidden}/{provider}/.", f"{OCF_PROVIDERS}/{provider}"])
        self.run(["umount", hidden])
        for name, source in sorted(extra_agents.items()):
            self.run(["install", "-m", "0755", source, f"{OCF_PROVIDERS}/{name}"])
        self.run(["ln", "-s", agents_dir, f"{OCF_PROVIDERS}/kuth"])


def wait_exec(proc: subprocess.Popen[bytes], comm: str, timeout: float = 10) -> None:
    """Wait until proc has exec'd comm: before that it is not yet in its new namespaces."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processes.name(proc.pid) == comm:
            return
        if proc.poll() is not None:
            raise ClusterError(f"namespace holder exited {proc.returncode}")
        time.sleep(0.005)
    raise ClusterError(f"namespace holder did not become {comm} in {timeout} s")
