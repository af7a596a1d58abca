"""The lab's fence device: a power switch for the cluster's nodes, as a hypervisor is for
virtual machines, and the fence agent that drives it.

What callers get: `PowerSwitch(netns, machines)` serves, on TCP port POWER_PORT of
POWER_ADDRESS in its own host on the lan (netns), the requests of the fence agent
`lab/usr/sbin/fence_kuth_lab` (AGENT), which every node sees as /usr/sbin/fence_kuth_lab.
Like a hypervisor that fence_virsh reaches over the network, it is reached over the lan:
a node whose cables are pulled cannot fence anyone, the others can fence it. `machines`
(the Cluster) does the work: `power_off(name)` ends everything running in the node's
namespaces at once, `power_on(name)` starts its boot and returns (as a real power button
does; the node joins when its boot is done), `powered(name)`, `names`, and
`node_at(address)`. In the CIB:

    primitive fence-lab stonith:fence_kuth_lab \
        params ip=198.18.1.250 pcmk_host_list="hapx-node01 hapx-node02"

The protocol is one request line per connection and one answer line: `off NODE`, `on NODE`
-> `ok`; `status NODE` -> `on` or `off`; `list` -> the node names separated by spaces;
anything wrong -> `error: why`.

One rule differs from a hypervisor on purpose: requests run one at a time, and a request
from a node that is powered off by the time its turn comes is refused. Two nodes that lose
each other's ring but not the lan both fence at once; with IPMI both could die (a "fence
race"), which real two-node clusters avoid with pcmk_delay_max or priority-fencing-delay
(README). The lab lets the first request win instead.
"""
from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
from typing import Protocol

from lab import REPO
from lab.netns import Netns
from lab.topology import POWER_ADDRESS, POWER_PORT

USR_LAYER = os.path.join(REPO, "lab", "usr")  # laid over each node's /usr (lab.nodes)
AGENT_DIR = os.path.join(USR_LAYER, "sbin")
AGENT = "fence_kuth_lab"
# Run inside a namespace: make a listening socket there, hand it back over the fd argv[3].
_LISTEN = ("import socket, sys; server = socket.create_server((sys.argv[1], int(sys.argv[2])));"
           " socket.send_fds(socket.socket(fileno=int(sys.argv[3])), [b'fd'],"
           " [server.fileno()])")


class Machines(Protocol):
    """What the power switch acts on: the cluster's nodes."""

    names: list[str]

    def power_off(self, name: str) -> None: ...

    def power_on(self, name: str) -> None: ...

    def powered(self, name: str) -> bool: ...

    def node_at(self, address: str) -> str | None: ...


def listen_in(netns: Netns, address: str, port: int) -> socket.socket:
    """A TCP socket listening on address:port inside netns, for this process to serve (a
    socket stays in the namespace it was made in, whoever holds it)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        subprocess.run(netns.exec_argv([sys.executable, "-S", "-c", _LISTEN, address,
                                         str(port), str(theirs.fileno())]),
                       pass_fds=(theirs.fileno(),), check=True, stdin=subprocess.DEVNULL)
        _, [fd], _, _ = socket.recv_fds(ours, 16, 1)
    return socket.socket(fileno=fd)


class PowerSwitch:
    """Serves fence requests for machines on POWER_ADDRESS:POWER_PORT inside netns, one at
    a time, in a thread."""

    def __init__(self, netns: Netns, machines: Machines) -> None:
        self.machines = machines
        self.lock = threading.Lock()
        self.log: list[str] = []   # every request served: "requester: request -> answer"
        switch = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                requester = switch.requester(self.request)
                request = self.rfile.readline().decode("utf-8", "replace").strip()
                answer = switch.answer(requester, request)
                self.wfile.write(answer.encode() + b"\n")

        self.server = socketserver.ThreadingTCPServer((POWER_ADDRESS, POWER_PORT), Handler,
                                                      bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = listen_in(netns, POWER_ADDRESS, POWER_PORT)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="power-switch",
                                       daemon=True)
        self.thread.start()

    def requester(self, conn: socket.socket) -> str | None:
        """The node that connects, by its address (None: another host of the lan)."""
        return self.machines.node_at(conn.getpeername()[0])

    def answer(self, requester: str | None, request: str) -> str:
        """Carry out one request line (under the lock) and return the answer line."""
        verb, _, name = request.partition(" ")
        with self.lock:
            try:
                answer = self._carry_out(requester, verb, name)
            except Exception as err:  # the agent gets the reason, the switch goes on
                answer = f"error: {type(err).__name__}: {err}"
            self.log.append(f"{requester or 'machine'}: {request} -> {answer}")
        return answer

    def _carry_out(self, requester: str | None, verb: str, name: str) -> str:
        if verb == "list":
            return " ".join(self.machines.names)
        if name not in self.machines.names:
            return f"error: no node {name!r}; nodes are {' '.join(self.machines.names)}"
        if verb == "status":
            return "on" if self.machines.powered(name) else "off"
        if verb not in ("on", "off"):
            return f"error: unknown request {verb!r}"
        if requester is not None and not self.machines.powered(requester):
            return f"error: {requester}, which asked, is powered off"
        if verb == "off":
            self.machines.power_off(name)
        else:
            self.machines.power_on(name)
        return "ok"

    def close(self) -> None:
        """Stop serving (safe twice); the log stays."""
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
