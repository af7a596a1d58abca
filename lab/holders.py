"""Many idle long-lived TCP connections, held on both sides by processes of their own: what a
large Kubernetes cluster's watches are to the VIP, without a thread or an HTTP parser each.

Every process here is held to 20,000 open files and cannot raise it, so a side that holds
more is several processes (at most PER_PROCESS connections each):

    holders.py serve PORT [PROCESSES]
                                  accept on *:PORT in PROCESSES processes (SO_REUSEPORT;
                                  the others end with the first, so a service manager
                                  stops them all with it) and hold every connection; a
                                  client that sends a request (a GET of lab.traffic) gets a
                                  short HTTP answer and its connection closed, so short
                                  requests work too
    holders.py hold HOST PORT COUNT FIRST SOURCE [CHURN]
                                  open COUNT connections to HOST:PORT from the address
                                  SOURCE, numbered from FIRST; say nothing on them and watch
                                  them all (epoll): a client learns of a dead connection only
                                  by a reset or an end of stream, and reports each as it
                                  arrives. With CHURN (a fraction), that share of them is
                                  closed and opened anew every second, as clients come and go.

`hold` writes lines on its stdout: `ready N` once its connections are open, then
`reset|closed|<errno name> NUMBER MONOTONIC` for every connection that ends (CLOCK_MONOTONIC
is the machine's in every network namespace, so the parent compares it with its own
time.monotonic()). It runs as `python3 -IS lab/holders.py ...` by path inside a namespace,
so it imports nothing but the standard library.

`Held` (the parent's side) starts as many `hold` processes as COUNT needs in a namespace
and gathers what they report; `serve_command` is the argv of one server process.
"""
from __future__ import annotations

import errno
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

PER_PROCESS = 8_000  # connections one process holds (below 20,000 open files, with margin)
BACKLOG = 4_096
CONNECT_TIMEOUT = 5.0
LOOK_PAUSE = 0.01  # seconds a holder waits after a look that found connections ended
ANSWER = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nheld\n"
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: the port is chosen at connect, per destination
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def open_files_to_the_limit() -> None:
    """Let this process open as many files as its hard limit allows: started through `su -`
    (ocf:heartbeat:anything), it gets PAM's soft limit of 1,024."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve_all(port: int, processes: int) -> None:
    """serve(port) in processes processes: this one and children that end with it."""
    import ctypes
    open_files_to_the_limit()
    parent = os.getpid()
    for _ in range(processes - 1):
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # it ended before prctl
                os._exit(0)
            serve(port)
    serve(port)


def serve(port: int) -> None:
    """Accept on *:port and hold every connection until its client ends it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("", port))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    poll = select.epoll()
    poll.register(listener.fileno(), select.EPOLLIN)
    held: dict[int, socket.socket] = {}
    while True:
        for fd, _ in poll.poll():
            if fd == listener.fileno():
                _accept(listener, poll, held)
                continue
            conn = held[fd]
            try:
                data = conn.recv(4096)
                if data:
                    conn.sendall(ANSWER)
            except OSError:
                pass
            poll.unregister(fd)
            del held[fd]
            conn.close()


def _accept(listener: socket.socket, poll: select.epoll, held: dict[int, socket.socket]
            ) -> None:
    """Every connection waiting on listener, watched from now on."""
    while True:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:  # out of files: leave the rest queued, say so once
            if err.errno in (errno.EMFILE, errno.ENFILE):
                print(f"holders: {err}", file=sys.stderr, flush=True)
                return
            raise
        conn.setblocking(False)
        held[conn.fileno()] = conn
        poll.register(conn.fileno(), select.EPOLLIN | select.EPOLLRDHUP)


class Holder:
    """One `hold` process's connections: number -> socket, watched by one epoll."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.address = (host, port)
        self.source = source
        self.poll = select.epoll()
        self.by_fd: dict[int, tuple[int, socket.socket]] = {}
        self.by_number: dict[int, socket.socket] = {}
        self.ended: list[socket.socket] = []  # reported, closed once a look finds nothing

    def open(self, number: int) -> None:
        """Connect (retrying a refused or timed-out attempt a few times) and watch it."""
        for attempt in range(5):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source, 0))
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                time.sleep(0.1 * (attempt + 1))
                continue
            sock.setblocking(False)
            self.by_fd[sock.fileno()] = (number, sock)
            self.by_number[number] = sock
            self.poll.register(sock.fileno(),
                               select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT)
            return
        raise OSError(f"cannot connect to {self.address} from {self.source}")

    def close(self, number: int) -> None:
        """End a connection as its client does (no report: the client chose to)."""
        sock = self.by_number.pop(number)
        del self.by_fd[sock.fileno()]
        sock.close()  # and out of the epoll with it

    def watch(self, timeout: float | None) -> None:
        """Report every connection that ended within timeout seconds (None: until one
        does). The clients of a node loss end tens of thousands within a second, on the
        CPUs the resets are measured on, so each costs little here: a connection fires
        once (EPOLLONESHOT), a reset is read as SO_ERROR (no exception), the reports of
        one look leave in one write, a look that found some is followed by LOOK_PAUSE (a
        burst gathers into few looks, and a reset wakes no one), and the sockets are
        closed once a look finds nothing. Each is reported with the time of the look that
        found it: never before it ended, LOOK_PAUSE after it at most on an idle CPU."""
        if self.ended:
            timeout = 1.0 if timeout is None else min(timeout, 1.0)
        events = self.poll.poll(timeout)
        if not events:
            for sock in self.ended:
                sock.close()
            self.ended.clear()
            return
        at = f"{time.monotonic():.6f}"  # one time for a look: each ended before it
        lines = []
        for fd, _ in events:
            number, sock = self.by_fd.pop(fd)
            del self.by_number[number]
            lines.append(f"{_ending(sock)} {number} {at}\n")
            self.ended.append(sock)
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
        time.sleep(LOOK_PAUSE)


def _ending(sock: socket.socket) -> str:
    """How a connection that epoll says is readable ended: reset, closed, an errno name,
    or data (the server said something)."""
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        return "reset" if error == errno.ECONNRESET else errno.errorcode.get(error, "error")
    try:
        return "data" if sock.recv(1) else "closed"
    except ConnectionResetError:
        return "reset"
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, "error")


def hold(host: str, port: int, count: int, first: int, source: str, churn: float) -> None:
    """Hold count connections numbered first.. until killed; see the module's docstring."""
    open_files_to_the_limit()
    holder = Holder(host, port, source)
    numbers = range(first, first + count)
    for number in numbers:
        holder.open(number)
    print(f"ready {count}", flush=True)
    rng = random.Random(first)
    due = time.monotonic() + 1.0
    while True:
        holder.watch(max(0.0, due - time.monotonic()) if churn else None)
        if churn and time.monotonic() >= due:
            due += 1.0
            live = list(holder.by_number)
            for number in rng.sample(live, min(len(live), round(count * churn))):
                holder.close(number)
                holder.open(number)


# -- the parent's side ------------------------------------------------------------------------

SCRIPT = os.path.abspath(__file__)


def serve_command(port: int, processes: int = 1) -> list[str]:
    """The argv of a server on port in processes processes."""
    return [sys.executable, "-IS", SCRIPT, "serve", str(port), str(processes)]


def processes_for(count: int) -> int:
    """How many processes hold count connections on one side."""
    return max(1, -(-count // PER_PROCESS))


class Held:
    """count connections to host:port from a namespace, spread over processes (one source
    address each, from sources, so that no source runs out of ports) and held until close().
    ended: {number: (kind, monotonic time)} for each connection that ended, as reported."""

    def __init__(self, exec_argv: Callable[[list[str]], list[str]], host: str, port: int,
                 count: int, sources: list[str], churn: float = 0.0) -> None:
        """exec_argv wraps an argv to run in the clients' namespace (lab.netns.Netns's)."""
        shares = processes_for(count)
        if shares > len(sources):
            raise ValueError(f"{count} connections need {shares} source addresses, "
                             f"got {len(sources)}")
        self.count = count
        self._ended: dict[int, tuple[str, float]] = {}
        self._ready = 0
        self._unread: list[bytes] = []
        self._partial = b""
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.readers: list[threading.Thread] = []
        first = 0
        for index in range(shares):
            share = count // shares + (index < count % shares)
            proc = subprocess.Popen(
                exec_argv([sys.executable, "-IS", SCRIPT, "hold", host, str(port), str(share),
                           str(first), sources[index], str(churn)]),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            self.procs.append(proc)
            reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
            reader.start()
            self.readers.append(reader)
            first += share

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """Gather what proc says as it comes; parsed when asked (ended): at a node loss the
        reports of tens of thousands of resets arrive within a second, on the CPUs the
        resets are measured on."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):
            with self.lock:
                self._unread.append(chunk)

    @property
    def ended(self) -> dict[int, tuple[str, float]]:
        """{number: (kind, monotonic time)} for each connection that ended, as reported."""
        self._parse()
        return self._ended

    @property
    def ready(self) -> int:
        """How many connections the processes have said are open."""
        self._parse()
        return self._ready

    def _parse(self) -> None:
        """Take in the complete lines gathered so far."""
        with self.lock:
            lines = (self._partial + b"".join(self._unread)).split(b"\n")
            self._unread.clear()
            self._partial = lines.pop()  # a line not yet complete, or b""
        for line in lines:
            word, *rest = line.decode().split()
            if word == "ready":
                self._ready += int(rest[0])
            else:
                self._ended.setdefault(int(rest[0]), (word, float(rest[1])))

    def wait_ready(self, timeout: float) -> None:
        """Until every connection is open; OSError if a process died or time ran out."""
        deadline = time.monotonic() + timeout
        while self.ready < self.count:
            if any(p.poll() is not None for p in self.procs):
                raise OSError(f"a holder process ended with {self.ready} of {self.count} "
                              "connections open")
            if time.monotonic() > deadline:
                raise OSError(f"{self.ready} of {self.count} connections open after "
                              f"{timeout} s")
            time.sleep(0.05)

    def ends(self, since: float, until: float, kinds: tuple[str, ...] | None = None) -> int:
        """How many connections ended in [since, until] (of kinds, if given)."""
        return sum(1 for kind, at in self.ended.values()
                   if since <= at <= until and (kinds is None or kind in kinds))

    def still_open(self) -> int:
        """How many connections no end was reported of."""
        return self.count - len(self.ended)

    def close(self) -> None:
        """End every holder process (the kernel closes their connections)."""
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        for reader in self.readers:
            reader.join(5)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) in (3, 4):
        serve_all(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 1)
    elif sys.argv[1:2] == ["hold"] and len(sys.argv) in (7, 8):
        hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
             float(sys.argv[7]) if len(sys.argv) == 8 else 0.0)
    else:
        sys.exit("usage: holders.py serve PORT [PROCESSES] | "
                 "holders.py hold HOST PORT COUNT FIRST SOURCE [CHURN]")
