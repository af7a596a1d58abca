"""Processes as /proc shows them: identity, pidfiles, signals, waiting for an exit.

On the monitor path: psutil would cost about 18 ms to import, reading /proc costs
microseconds. A pid alone proves nothing -- after a crash and a reboot it may name any
process -- so identity is the executable, the command line and the start time together.
Signal numbers come from `_signal` (the C module, already loaded by the interpreter;
`signal` imports `enum`), so they are right on every architecture.

A process may end at any moment, between two reads of its /proc files or in the middle of
one: the directory vanishes (ENOENT), a read or a listing finds it reaped (ESRCH), it shows
as a zombie, its cmdline reads empty once its memory is gone. Every reader here takes each
of these for a process that has ended, and every signal for one that it no longer reaches:
stop, on whose success a node's fate hangs, must never fail over a process that exits
while it looks.
"""

import errno
import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

from _signal import SIGKILL, SIGTERM, SIGUSR1, SIGUSR2  # noqa: F401  (re-exported)

# The niceness added to every helper an action leaves behind (watchers, background
# announcer, refuser, tickler): they are born in a failover's busiest moment, beside the
# start of the group's next resource or on a node the cluster is still busy with, and must
# not slow either; none of them needs a CPU to itself for more than a millisecond at a time.
BACKGROUND_NICE = 10
_DELETED = " (deleted)"
# What reading /proc/PID/... gives once the process has ended: its directory is gone, or the
# read found the task reaped after the open.
_ENDED = (errno.ENOENT, errno.ESRCH)
_UNREADABLE = "?"  # the state of a process whose stat file could not be parsed
_PIDFILE_MAX = 4096
_POLL = 0.02  # seconds between checks in wait_gone


class ProcessInfo:
    """What /proc says about one process. start_time is in clock ticks since boot; with
    pid it identifies the process for as long as the machine runs."""

    __slots__ = ("pid", "ppid", "state", "exe", "cmdline", "start_time")

    def __init__(self, pid: int, ppid: int, state: str, exe: str, cmdline: list[str],
                 start_time: int) -> None:
        self.pid = pid
        self.ppid = ppid
        self.state = state          # R, S, D, T (stopped), Z (zombie)...
        self.exe = exe              # "" for kernel threads and zombies
        self.cmdline = cmdline
        self.start_time = start_time

    def __repr__(self) -> str:
        return (f"ProcessInfo(pid={self.pid}, ppid={self.ppid}, state={self.state!r}, "
                f"exe={self.exe!r}, cmdline={self.cmdline!r}, start_time={self.start_time})")


def process_info(pid: int) -> ProcessInfo | None:
    """The process with this pid, or None when there is none: also when it ended while
    being read, and when its stat file cannot be parsed (nothing identifies it then).

    exe loses the " (deleted)" the kernel appends once the binary was replaced (a
    package upgrade): the process still runs that program.
    """
    stat = _stat(pid)
    if stat is None or stat[0] == _UNREADABLE:
        return None
    cmdline = _read_proc(pid, "cmdline")  # empty once an ending process's memory is gone
    if cmdline is None:
        return None
    state, ppid, start_time = stat
    return ProcessInfo(pid, ppid, state, _exe(pid),
                       [arg.decode("utf-8", "surrogateescape")
                        for arg in cmdline.split(b"\0")[:-1]], start_time)


def children(pid: int) -> list[int]:
    """The children of pid's main thread (/proc/PID/task/PID/children): [] when it is gone.
    A master-worker haproxy forks its workers from that thread."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return _parse_pids(f.read())
    except OSError:
        return []


def alive(pid: int) -> bool:
    """True while pid names a process that has not exited. A zombie has -- unless only
    its main thread has: haproxy runs several threads, a killed one's main thread may
    turn Z a moment before the others end and its sockets close. A stat file that cannot
    be parsed proves no exit: such a process counts as alive until it is gone."""
    stat = _stat(pid)
    if stat is None:
        return False
    if stat[0] != "Z":
        return True
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError as err:  # reaped during the listing: ESRCH
        if err.errno in _ENDED:
            return False
        raise


def read_pidfile(path: str) -> list[int]:
    """The pids in a pidfile (HAProxy writes one per line; the master's alone in
    master-worker mode). A missing file, a symlink (someone else's file to trust), a
    non-regular file or any garbage give [] rather than a pid to signal."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return []
        raise
    try:
        if not _is_regular(fd):
            return []
        text = os.read(fd, _PIDFILE_MAX)
    finally:
        os.close(fd)
    return _parse_pids(text)


def write_pidfile(path: str, pids: list[int]) -> None:
    """Write pids one per line, atomically: a reader sees the old file or the new one."""
    temp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        os.write(fd, "".join(f"{pid}\n" for pid in pids).encode())
    finally:
        os.close(fd)
    try:
        os.rename(temp, path)
    except OSError:
        os.unlink(temp)
        raise


def runs_config(info: ProcessInfo, binpath: str, conffile: str) -> bool:
    """True when the process executes binpath and loads conffile: named by `-f`
    (directly, or as a directory of *.cfg files holding it) or after `--`. Paths are
    compared resolved, so /sbin/haproxy and /usr/sbin/haproxy are the same binary."""
    if not info.exe or info.exe != os.path.realpath(binpath):
        return False
    wanted = os.path.realpath(conffile)
    return any(_loads(os.path.realpath(loaded), wanted)
               for loaded in config_args(info.cmdline))


def config_args(cmdline: list[str]) -> list[str]:
    """The configuration paths on an haproxy command line (`-f PATH`, and every
    argument after `--`)."""
    paths, args = [], iter(cmdline[1:])
    for arg in args:
        if arg == "--":
            paths.extend(args)
        elif arg == "-f":
            paths.append(next(args, ""))
    return [path for path in paths if path]


def find_haproxy(binpath: str, conffile: str) -> list[ProcessInfo]:
    """Every live process of binpath running conffile (master and workers alike),
    whoever started it, in pid order. The executable is compared first: one readlink
    per process rules out nearly all of them."""
    binary = os.path.realpath(binpath)
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _exe(int(name)) == binary:
            info = process_info(int(name))
            if info is not None and info.state != "Z" and runs_config(info, binpath, conffile):
                found.append(info)
    return sorted(found, key=lambda info: info.pid)


def signal_all(pids: list[int], sig: int) -> list[int]:
    """Send sig to each pid; return those that still existed to receive it."""
    reached = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            reached.append(pid)
        except ProcessLookupError:
            pass
    return reached


def wait_gone(pids: list[int], deadline: float) -> list[int]:
    """Wait until no pid is alive or time.monotonic() reaches deadline; return the pids
    still alive then. Zombies count as gone: their parent reaps them, not us."""
    left = [pid for pid in pids if alive(pid)]
    waiter = _ExitWaiter(left)
    try:
        while left and time.monotonic() < deadline:
            waiter.wait(max(0.0, min(_POLL, deadline - time.monotonic())))
            left = [pid for pid in left if alive(pid)]
            waiter.forget([pid for pid in waiter.pids if pid not in left])
    finally:
        waiter.close()
    return left


def spawn_detached(body: "Callable[[], object]", keep: tuple[int, ...] = (), name: str = ""
                   ) -> int:
    """Run body in a process of its own that outlives the caller; return its pid.

    For helpers an action leaves behind (a background announcer, the refuser): the process
    is a grandchild, so the intermediate child exits at once and init (or a subreaper)
    adopts it: it never lingers as the caller's zombie. It leads a session of its own. It
    is a copy of the caller, so signals stay blocked across the forks until it has default
    handling: a `kill PID` from a later action must end it, not run the caller's handlers.
    Its stdio goes to /dev/null and every other descriptor but keep is closed: Pacemaker
    reads an agent's stdout and stderr until they close. It exits when body returns
    (status 0) or raises (status 1), through os._exit, so that nothing unwinds into the
    copy of the caller's stack. name, when given, becomes its process name (what `ps -e`
    and `pgrep` show; 15 bytes at most). It runs BACKGROUND_NICE nicer than the caller.
    OSError when it could not be started.
    """
    import _signal  # loaded by the interpreter at start-up; `signal` would add enum
    read_end, write_end = os.pipe()
    with open(read_end, "rb", buffering=0) as pid_pipe:
        mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
        try:
            child = os.fork()
            if child == 0:
                _run_detached(write_end, body, keep, name)
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
            os.close(write_end)
        packed_pid = pid_pipe.read(4)
    if not _exited_cleanly(child) or len(packed_pid) != 4:
        raise OSError(errno.ECHILD, "the detached process did not start")
    return int.from_bytes(packed_pid, "little")


def hurry(*children: int) -> None:
    """Take back the BACKGROUND_NICE a detached helper (spawn_detached) runs with, for the
    helper itself and the children it started since (they inherited it): for a helper
    whose wait is over and whose next step is on clients' path (the tickler once its start
    has announced the address). Never fails: a child gone, or a priority this process may
    not raise, only leaves it nicer."""
    for pid in (0, *children):
        try:
            niceness = os.getpriority(os.PRIO_PROCESS, pid)
            os.setpriority(os.PRIO_PROCESS, pid, max(niceness - BACKGROUND_NICE, -20))
        except OSError:
            pass


def _run_detached(pid_pipe: int, body: "Callable[[], object]", keep: tuple[int, ...],
                  name: str) -> None:
    """In the first child: fork the detached process, report its pid, and exit. Never
    returns, in either process."""
    status = 1
    try:
        os.setsid()
        detached = os.fork()
        if detached:
            os.write(pid_pipe, detached.to_bytes(4, "little"))
            status = 0
        else:
            _default_signal_handling()
            _detach_descriptors(keep)
            os.nice(BACKGROUND_NICE)
            if name:
                with open("/proc/self/comm", "w") as comm:
                    comm.write(name)
            body()
            status = 0
    finally:
        os._exit(status)


def _exited_cleanly(pid: int) -> bool:
    """Reap the intermediate child; True when it exited with status 0.

    With SIGCHLD ignored the kernel reaps it instead and there is no status to read; the
    pid that arrived (or not) through the pipe then tells alone.
    """
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    except ChildProcessError:
        return True


def _default_signal_handling() -> None:
    """Default handling for the signals an agent may trap, then every signal unblocked."""
    import _signal
    for signum in (_signal.SIGHUP, _signal.SIGINT, _signal.SIGTERM, _signal.SIGALRM,
                   _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(signum, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def _detach_descriptors(keep: tuple[int, ...]) -> None:
    """Point stdio at /dev/null and close every other descriptor but those in keep."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    low = 3
    for fd in sorted(set(keep)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(os.sysconf("SC_OPEN_MAX"), low))


class _ExitWaiter:
    """Sleeps until one of some processes exits, or a timeout: a poll on their pidfds (a
    pidfd turns readable when its process exits), so that stop, which lies on a failover's
    path, wakes at the exit rather than on the next tick of a clock. Falls back to sleeping
    where pidfds are not to be had."""

    def __init__(self, pids: list[int]) -> None:
        import select
        self.poller = select.poll()
        self.fds: dict[int, int] = {}
        for pid in pids:
            try:
                self.fds[pid] = os.pidfd_open(pid)
            except OSError:  # gone since it was seen alive (ESRCH): the next look says so
                continue
            self.poller.register(self.fds[pid], select.POLLIN)

    @property
    def pids(self) -> list[int]:
        return list(self.fds)

    def wait(self, seconds: float) -> None:
        if self.fds:
            self.poller.poll(int(seconds * 1000))
        else:
            time.sleep(seconds)

    def forget(self, pids: list[int]) -> None:
        """Stop waiting on pids that have gone (their pidfds would stay readable)."""
        for pid in pids:
            fd = self.fds.pop(pid)
            self.poller.unregister(fd)
            os.close(fd)

    def close(self) -> None:
        self.forget(list(self.fds))


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) from /proc/PID/stat; None once the process is gone. A read
    that cannot be parsed is read once more, then gives the state _UNREADABLE."""
    for _ in range(2):
        data = _read_proc(pid, "stat")
        if data is None:
            return None
        # comm (field 2) may hold spaces and parentheses: the fields after it follow the
        # last ")".
        fields = data[data.rfind(b")") + 2:].split() if b")" in data else []
        if (len(fields) > 19 and fields[0].isalpha() and fields[1].isdigit()
                and fields[19].isdigit()):
            return fields[0].decode(), int(fields[1]), int(fields[19])
    return _UNREADABLE, 0, 0


def _read_proc(pid: int, name: str) -> bytes | None:
    """The content of /proc/PID/name; None once the process has ended (see _ENDED)."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError as err:
        if err.errno in _ENDED:
            return None
        raise


def _exe(pid: int) -> str:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:   # gone, a kernel thread, a zombie
        return ""
    return exe[:-len(_DELETED)] if exe.endswith(_DELETED) else exe


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _parse_pids(text: bytes) -> list[int]:
    words = text.split()
    if not words or not all(word.isdigit() for word in words):
        return []
    pids = [int(word) for word in words]
    return pids if all(pid > 1 for pid in pids) else []


def _loads(loaded: str, wanted: str) -> bool:
    """HAProxy loads a directory's *.cfg files, so a directory holding wanted counts."""
    return loaded == wanted or (wanted.endswith(".cfg")
                                and os.path.dirname(wanted) == loaded
                                and os.path.isdir(loaded))
