"""HAProxy's runtime API over its unix stream socket: one command per connection.

This module is on the monitor path, so it imports only cheap built-ins: `_socket`
(the `socket` module imports `enum`) and `_csv` (a C module, unlike `csv.py` which
imports `re`). HAProxy's CSV does quote fields that hold a comma or a quote -- a failed
HTTP check copies the server's reason phrase into `last_chk` -- so splitting on commas
would shift columns; `_csv` with its default dialect reads exactly what HAProxy writes.

Every call is bounded by one deadline covering connect, send and the whole read: a
frozen (SIGSTOPped) haproxy still accepts connections into the kernel's backlog and
then never answers, and once that backlog is full `connect` fails with EAGAIN at once.
Both end in RuntimeApiError within the timeout, never in a hang.

The master CLI (`haproxy -W -S <path>`) answers `show proc` itself and forwards a
command prefixed with a route (`@1 show info` for the current worker, `@!<pid>` for a
given one) to a worker. It keeps the connection open after answering unless the client
shuts its sending side, so `command` always does that. Its `reload` answers nothing in
HAProxy 2.6; from 2.7 on it answers once the reload is over, with its outcome and the
messages of the new configuration's loading (`reload`, `parse_reload`).
"""

import _csv
import _socket
import errno
import time

CURRENT_WORKER = "@1"
"""Route for the master CLI: the current worker (HAProxy's relative process number 1)."""
MASTER = "@master"
"""Route for the master CLI: the master process itself."""

_CHUNK = 65536
_CONNECT_RETRY = 0.01  # seconds between connects while the listen backlog is full
_FRONTEND, _BACKEND, _SERVER, _LISTENER = "0", "1", "2", "3"
_ERRORS = ("Unknown command", "Permission denied", "Can't find ", "No such ")


class RuntimeApiError(Exception):
    """The runtime API could not be asked or refused the command; the message is one
    line an operator can act on."""


class MasterProcess:
    """One line of the master CLI's `show proc`."""

    __slots__ = ("pid", "role", "reloads", "failed_reloads", "uptime", "version", "old")

    def __init__(self, pid: int, role: str, reloads: int, failed_reloads: int | None,
                 uptime: str, version: str, old: bool) -> None:
        self.pid = pid
        self.role = role                        # "master" or "worker" (or a program name)
        self.reloads = reloads
        self.failed_reloads = failed_reloads    # only the master line carries it
        self.uptime = uptime                    # HAProxy's own "0d00h00m02s" form
        self.version = version
        self.old = old                          # a worker of an earlier generation, stopping

    def __repr__(self) -> str:
        return (f"MasterProcess(pid={self.pid}, role={self.role!r}, reloads={self.reloads}, "
                f"failed_reloads={self.failed_reloads}, uptime={self.uptime!r}, "
                f"version={self.version!r}, old={self.old})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MasterProcess) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)


def command(path: str, cmd: str, *, timeout: float, route: str | None = None) -> str:
    """Send one command to the socket at path and return HAProxy's whole answer.

    route (`CURRENT_WORKER`, `worker_route(pid)`, `MASTER`) is for a master CLI socket:
    the master forwards the command to that process. Raises RuntimeApiError when the
    socket cannot be reached, the answer does not come within timeout seconds, or
    HAProxy rejects the command; ValueError for a command that is not exactly one.
    """
    line = _command_line(cmd, route)
    deadline = time.monotonic() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        _connect(sock, path, deadline)
        _send(sock, line, deadline)
        answer = _read_all(sock, deadline)
    except TimeoutError:
        raise RuntimeApiError(f"haproxy did not answer {line.decode().strip()!r} on {path} within "
                              f"{timeout:g} s (frozen or overloaded)") from None
    except OSError as err:
        raise RuntimeApiError(_socket_problem(path, err)) from None
    finally:
        sock.close()
    _check_answer(answer, line)
    return answer


def worker_route(pid: int) -> str:
    """The master CLI route to the worker with this pid (`@!<pid>`)."""
    return f"@!{int(pid)}"


def show_info(path: str, *, timeout: float, route: str | None = None) -> dict[str, str]:
    """`show info` as a dict: Pid, Uptime_sec, Stopping, CurrConns, Jobs, Listeners..."""
    return parse_info(command(path, "show info", timeout=timeout, route=route))


FRONTENDS, BACKENDS, SERVERS = 1, 2, 4  # `show stat` type filter bits


def show_stat(path: str, *, timeout: float, route: str | None = None,
              kinds: int | None = None) -> list[dict[str, str]]:
    """`show stat`: one dict per frontend, backend, server and listener row; with kinds
    (FRONTENDS | BACKENDS | SERVERS), only rows of those kinds, which HAProxy then does not
    even format."""
    cmd = "show stat" if kinds is None else f"show stat -1 {kinds} -1"
    return parse_stat(command(path, cmd, timeout=timeout, route=route))


class ReloadAnswer:
    """What the master CLI's `reload` answered (HAProxy >= 2.7): whether the new
    configuration runs, and HAProxy's messages while loading it ([NOTICE], [ALERT] lines)."""

    __slots__ = ("success", "messages")

    def __init__(self, success: bool, messages: str) -> None:
        self.success = success
        self.messages = messages

    def __repr__(self) -> str:
        return f"ReloadAnswer(success={self.success}, messages={self.messages!r})"


def reload(master_path: str, *, timeout: float) -> ReloadAnswer | None:
    """Ask the master to reload. HAProxy >= 2.7 answers when the new worker runs or the
    reload failed (the old worker then keeps serving); 2.6 answers at once with nothing
    (None), and only `show proc` tells later whether it worked."""
    return parse_reload(command(master_path, "reload", timeout=timeout))


def answers_reload(version: str) -> bool:
    """Whether the master of this version (`show proc`'s "2.6.12-1+deb12u4") answers
    `reload` with its outcome: 2.7 and later."""
    major, _, rest = version.partition(".")
    minor = rest.split(".", 1)[0].split("-", 1)[0]
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (2, 7)


def show_proc(master_path: str, *, timeout: float) -> list[MasterProcess]:
    """The master CLI's `show proc`: the master, its current and its old workers."""
    return parse_proc(command(master_path, "show proc", timeout=timeout))


def uptime_seconds(uptime: str) -> int:
    """HAProxy's "1d02h03m04s" as seconds (0 when it is not in that form)."""
    total, number = 0, ""
    for char in uptime:
        if char.isdigit():
            number += char
        elif char in _UNIT_SECONDS and number:
            total, number = total + int(number) * _UNIT_SECONDS[char], ""
        else:
            return 0
    return total


_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def old_worker_ages(procs: list[MasterProcess]) -> dict[int, int]:
    """How long (seconds) each old worker has been old: since the first reload after it
    started, which is the uptime of the oldest worker that went through fewer reloads
    (show proc counts, per worker, the reloads since it started). An old worker with no such
    worker left is as old as its own uptime."""
    workers = [p for p in procs if p.role == "worker"]
    ages = {}
    for old in (p for p in workers if p.old):
        younger = [uptime_seconds(p.uptime) for p in workers if p.reloads < old.reloads]
        ages[old.pid] = max(younger) if younger else uptime_seconds(old.uptime)
    return ages


def parse_info(text: str) -> dict[str, str]:
    """`Name: value` lines (some names have spaces: `Unstoppable Jobs`, `Build info`)."""
    info = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            info[name] = value
    if "Pid" not in info:
        raise RuntimeApiError(f"unexpected answer to 'show info': {_first_line(text)!r}")
    return info


def parse_stat(text: str) -> list[dict[str, str]]:
    """Rows of `show stat` keyed by the names of its `# pxname,svname,...` header, so a
    column HAProxy adds or moves in another version changes nothing here."""
    lines = [line for line in text.splitlines() if line]
    header = _csv_row(lines[0][2:]) if lines and lines[0].startswith("# ") else []
    if "pxname" not in header:
        raise RuntimeApiError(f"unexpected answer to 'show stat': {_first_line(text)!r}")
    return [_by_name(header, _csv_row(line)) for line in lines[1:]]


def parse_proc(text: str) -> list[MasterProcess]:
    """`show proc` lines: pid, type, reloads (the master adds `[failed: N]`), uptime and
    version; `# old workers` heads the workers still finishing after a reload."""
    if not text.startswith("#<PID>"):
        raise RuntimeApiError(f"unexpected answer to 'show proc': {_first_line(text)!r}")
    procs, old = [], False
    for line in text.splitlines()[1:]:
        if line.startswith("#"):
            old = line.strip() == "# old workers"
        elif line.strip():
            procs.append(_proc_line(line.split(), old))
    return procs


def parse_reload(text: str) -> ReloadAnswer | None:
    """`Success=1` or `Success=0`, a `--` line, then the loading's messages; an empty
    answer (HAProxy 2.6) is None."""
    if not text.strip():
        return None
    status, separator, messages = text.partition("\n--\n")
    if not separator or status not in ("Success=1", "Success=0"):
        raise RuntimeApiError(f"unexpected answer to 'reload': {_first_line(text)!r}")
    return ReloadAnswer(status == "Success=1", messages)


def backend_servers_up(rows: list[dict[str, str]]) -> dict[str, tuple[int, int]]:
    """Per backend, (servers UP, servers in total), from `show stat` server rows.

    UP includes `UP 1/2` (still up, going down) and `no check` (never checked, so
    HAProxy sends it traffic); DOWN, NOLB, DRAIN and MAINT are not up. Backends without
    servers (the one behind `listen stats`) are absent.
    """
    counts: dict[str, tuple[int, int]] = {}
    for row in rows:
        if row.get("type") == _SERVER:
            up, total = counts.get(row["pxname"], (0, 0))
            counts[row["pxname"]] = (up + _server_up(row.get("status", "")), total + 1)
    return counts


def closed_frontends(rows: list[dict[str, str]]) -> list[str]:
    """Frontends (and listeners, with `option socket-stats`) that do not accept
    connections: status STOP or PAUSED. FULL is open (bound, at maxconn) and is a load
    problem a restart would not fix. Listeners are named `frontend/listener`."""
    closed = []
    for row in rows:
        kind = row.get("type")
        if kind in (_FRONTEND, _LISTENER) and row.get("status") not in ("OPEN", "FULL"):
            closed.append(row["pxname"] if kind == _FRONTEND
                          else f"{row['pxname']}/{row['svname']}")
    return closed


def _command_line(cmd: str, route: str | None) -> bytes:
    """The bytes to send; HAProxy would run a second command after ';' or a newline."""
    if any(char in cmd for char in ";\n\r") or not cmd.strip():
        raise ValueError(f"not exactly one runtime API command: {cmd!r}")
    if route is not None and (not route.startswith("@") or len(route.split()) != 1):
        raise ValueError(f"not a master CLI route (@1, @!<pid>, @master): {route!r}")
    text = cmd if route is None else f"{route} {cmd}"
    return (text + "\n").encode()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _connect(sock: _socket.socket, path: str, deadline: float) -> None:
    """Connect, retrying while the listen backlog is full (EAGAIN: HAProxy is not
    accepting, e.g. frozen) until the deadline."""
    while True:
        sock.settimeout(_left(deadline))
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            time.sleep(min(_CONNECT_RETRY, _left(deadline)))


def _send(sock: _socket.socket, line: bytes, deadline: float) -> None:
    sock.settimeout(_left(deadline))
    sock.sendall(line)
    sock.shutdown(_socket.SHUT_WR)   # the master CLI answers and then waits for more


def _read_all(sock: _socket.socket, deadline: float) -> str:
    chunks = []
    while True:
        sock.settimeout(_left(deadline))
        data = sock.recv(_CHUNK)
        if not data:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(data)


def _socket_problem(path: str, err: OSError) -> str:
    """One line saying what is wrong with the socket, for the exit reason."""
    if err.errno == errno.ENOENT:
        return f"stats socket {path} does not exist (haproxy not running, or another socket)"
    if err.errno == errno.ECONNREFUSED:
        return f"stats socket {path} refuses connections (no haproxy listening on it)"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on stats socket {path}"
    if err.errno in (errno.ECONNRESET, errno.EPIPE):
        return f"haproxy closed stats socket {path} before answering"
    return f"stats socket {path}: {err.strerror or err}"


def _check_answer(answer: str, line: bytes) -> None:
    """HAProxy reports a rejected command as text: turn the known forms into errors."""
    if answer.startswith(_ERRORS):
        raise RuntimeApiError(f"haproxy refused {line.decode().strip()!r}: "
                              f"{_first_line(answer)}")


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def _csv_row(line: str) -> list[str]:
    return next(_csv.reader([line]))


def _by_name(header: list[str], values: list[str]) -> dict[str, str]:
    """Pair values with column names; the empty name after HAProxy's trailing comma is
    dropped."""
    return {name: value for name, value in zip(header, values) if name}


def _server_up(status: str) -> int:
    return int(status.startswith("UP") or status == "no check")


def _proc_line(fields: list[str], old: bool) -> MasterProcess:
    """`27583 master 2 [failed: 1] 0d00h00m08s 2.6.12-1+deb12u4` or
    `27610 worker 1 0d00h00m06s 2.6.12-1+deb12u4`."""
    failed = None
    if len(fields) > 4 and fields[3] == "[failed:":
        failed = int(fields[4].rstrip("]"))
        fields = fields[:3] + fields[5:]
    try:
        return MasterProcess(int(fields[0]), fields[1], int(fields[2]), failed,
                             fields[3], fields[4] if len(fields) > 4 else "", old)
    except (ValueError, IndexError):
        raise RuntimeApiError(f"unexpected 'show proc' line: {' '.join(fields)!r}") from None
