"""The client host on the lan, and the traffic it sends through the VIP.

What callers get: `Client` makes sockets in the client's namespace from this very process
(setns around socket()), so a request costs no process start: `get` (an HTTP GET, OSError
when it fails), `connect`, `ping`, `run`. `Traffic` sends short requests on a clock (a GET
every interval, each in a thread of its own) and tells what they saw in a time window
(`outage`: the longest time without a successful request, and the failed ones). `Streams`
holds long-lived watch streams the way Kubernetes clients do and tells, for a window, how
many were cut and the longest time one went without data (`stall`).
"""
from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from lab import command
from lab.apiserver import WATCH_PATH
from lab.netns import Netns

CLONE_NEWNET = 0x40000000


class HttpReply:
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"HttpReply({self.status}, {self.body[:80]!r})"


class Client:
    """A host on the lan. Its sockets are made in its namespace by this very process (setns
    around socket()), so a request costs no process start: cheap enough for a benchmark that
    sends one every 10 ms."""

    def __init__(self, netns: Netns) -> None:
        self.netns = netns
        self._libc = ctypes.CDLL(None, use_errno=True)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket that lives in the client's network namespace."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(f"/run/netns/{self.netns.name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._setns(target)
            try:
                return socket.socket(family, type)
            finally:
                self._setns(own)
        finally:
            os.close(own)
            os.close(target)

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def connect(self, host: str, port: int, timeout: float = 2.0) -> socket.socket:
        sock = self.socket()
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def get(self, url: str, timeout: float = 2.0,
            auth: tuple[str, str] | None = None) -> HttpReply:
        """GET url from the client, with basic auth (user, password) if given; OSError
        (timeout, refused, unreachable) when it fails."""
        import base64
        import http.client
        from urllib.parse import urlsplit
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        conn.sock = self.connect(parts.hostname or "", parts.port or 80, timeout)
        headers = {}
        if auth:
            token = base64.b64encode(":".join(auth).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            conn.request("GET", parts.path or "/", headers=headers)
            reply = conn.getresponse()
            return HttpReply(reply.status, reply.read().decode("utf-8", "replace"))
        except http.client.HTTPException as err:
            raise OSError(f"GET {url}: {err!r}") from err
        finally:
            conn.close()

    def ping(self, address: str, count: int = 1, timeout: float = 1.0) -> bool:
        proc = self.run(["ping", "-n", "-q", "-c", str(count), "-W", str(timeout), address],
                        check=False)
        return proc.returncode == 0

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return command.run(["ip", "netns", "exec", self.netns.name, *argv], check=check)


class Outage:
    """What the client saw in a time window: the longest time without a successful request
    (from the window's start, between successes, to its end) and the failed requests."""

    def __init__(self, longest_gap: float, failed: int, total: int) -> None:
        self.longest_gap = longest_gap
        self.failed = failed
        self.total = total

    def __repr__(self) -> str:
        return (f"Outage(longest_gap={self.longest_gap:.3f}, failed={self.failed}, "
                f"total={self.total})")


class Traffic:
    """GET url from the client every interval seconds, on a clock: each request runs in a
    thread of its own, so one that hangs until its timeout (a SYN to a node that is gone)
    does not delay the next. Every result is kept as (sent, ok) on time.monotonic()."""

    def __init__(self, client: Client, url: str, interval: float = 0.02,
                 timeout: float = 0.5) -> None:
        self.client = client
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.results: list[tuple[float, bool]] = []
        self._running = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=int(self.timeout / self.interval) + 8)
        self._running = True
        self._thread = threading.Thread(target=self._clock, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending and wait for the requests in flight."""
        self._running = False
        if self._thread:
            self._thread.join()
        if self._pool:
            self._pool.shutdown(wait=True)

    def _clock(self) -> None:
        due = time.monotonic()
        while self._running:
            assert self._pool is not None
            self._pool.submit(self._request, time.monotonic())
            due += self.interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()  # late (a busy machine): do not send a burst

    def _request(self, sent: float) -> None:
        try:
            ok = self.client.get(self.url, timeout=self.timeout).status == 200
        except OSError:
            ok = False
        self.results.append((sent, ok))

    def outage(self, since: float, until: float) -> Outage:
        """The client's view of [since, until]: call it once the requests sent before until
        had their answer or timeout."""
        window = sorted(r for r in self.results if since <= r[0] <= until)
        last, longest = since, 0.0
        for sent, ok in window:
            if ok:
                longest = max(longest, sent - last)
                last = sent
        longest = max(longest, until - last)
        return Outage(longest, sum(1 for _, ok in window if not ok), len(window))

    def served_since(self, since: float) -> bool:
        """A request sent after since succeeded."""
        return any(ok and sent >= since for sent, ok in list(self.results))


class Streams:
    """count long-lived streams through host:port (GET /watch of the stand-ins), each in a
    thread of its own, as Kubernetes watches are held: the client says nothing after its
    request and receives a line every WATCH_INTERVAL; when the connection ends (reset, EOF)
    or stays silent for idle_timeout, it reconnects at once. The lab's default of 10 s keeps
    runs short; client-go's health check takes 30 s of silence and then 15 s for a ping.
    Every line's arrival and every cut is kept, on time.monotonic()."""

    def __init__(self, client: Client, host: str, port: int, count: int = 4,
                 idle_timeout: float = 10.0, connect_timeout: float = 5.0) -> None:
        self.client = client
        self.address = (host, port)
        self.count = count
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.received: list[list[float]] = [[] for _ in range(count)]
        self.cuts: list[tuple[float, int, str]] = []   # (when, stream, why)
        self._running = False
        self._threads: list[threading.Thread] = []
        self._sockets: dict[int, socket.socket] = {}

    def __enter__(self) -> Streams:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._running = True
        self._threads = [threading.Thread(target=self._hold, args=(n,), daemon=True)
                         for n in range(self.count)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Close every stream and wait for its thread."""
        self._running = False
        for sock in list(self._sockets.values()):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join()

    def _hold(self, number: int) -> None:
        """Keep stream number open: connect, ask, read; on any end, again at once."""
        while self._running:
            try:
                sock = self.client.connect(*self.address, timeout=self.connect_timeout)
            except OSError:
                time.sleep(0.01)  # refused or unreachable: a client retries at once
                continue
            self._sockets[number] = sock
            try:
                why = self._read(number, sock)
            finally:
                self._sockets.pop(number, None)
                sock.close()
            if self._running:
                self.cuts.append((time.monotonic(), number, why))

    def _read(self, number: int, sock: socket.socket) -> str:
        """Read one stream until it ends; return why it ended."""
        sock.settimeout(self.idle_timeout)
        try:
            sock.sendall(f"GET {WATCH_PATH} HTTP/1.0\r\nHost: {self.address[0]}\r\n\r\n"
                         .encode())
            pending, in_body = b"", False
            while True:
                data = sock.recv(4096)
                if not data:
                    return "eof"
                pending += data
                if not in_body:
                    if b"\r\n\r\n" not in pending:
                        continue
                    pending, in_body = pending.split(b"\r\n\r\n", 1)[1], True
                lines = pending.count(b"\n")
                if lines:
                    now = time.monotonic()
                    self.received[number].extend([now] * lines)
                    pending = pending.rsplit(b"\n", 1)[1]
        except TimeoutError:
            return "silent"
        except ConnectionResetError:
            return "reset"
        except OSError as err:
            return type(err).__name__

    def cut(self, since: float, until: float) -> int:
        """How many streams had their connection end in [since, until]."""
        return len({number for when, number, _ in self.cuts if since <= when <= until})

    def stall(self, since: float, until: float) -> float:
        """The longest time a stream went without data in [since, until] (from the window's
        start to its first line, between lines, from its last line to the end)."""
        longest = 0.0
        for times in self.received:
            last = since
            for when in [t for t in list(times) if since <= t <= until]:
                longest = max(longest, when - last)
                last = when
            longest = max(longest, until - last)
        return longest

    def flowing_since(self, since: float) -> bool:
        """Every stream received a line after since."""
        return all(times and times[-1] > since for times in self.received)
