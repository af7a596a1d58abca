"""Run an external program with an argument list, capture its output, bound its time.

`subprocess` costs about 10 ms to import, more than a whole monitor action should take,
so this module drives `os.posix_spawnp` and reads the pipes with `select.poll` itself.
"""
from __future__ import annotations

import errno
import os
import select
import time

_SIGKILL = 9
# Python ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals, so reset them as
# subprocess does, or a child writing to a closed pipe would loop on EPIPE.
_SIGPIPE, _SIGXFSZ = 13, 25
_CHUNK = 65536


class CommandResult:
    """What a finished program returned: exit status (negative signal number when
    killed by a signal, as subprocess reports it) and its decoded output."""

    __slots__ = ("rc", "stdout", "stderr")

    def __init__(self, rc: int, stdout: str, stderr: str) -> None:
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"CommandResult(rc={self.rc!r}, stdout={self.stdout!r}, stderr={self.stderr!r})"


class CommandNotFound(FileNotFoundError):
    """The program is not installed (not found on PATH, or the path does not exist)."""

    def __init__(self, program: str) -> None:
        super().__init__(errno.ENOENT, "command not found", program)
        self.program = program


class CommandTimeout(Exception):
    """The program ran past its timeout and was killed."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        super().__init__(f"{argv[0]} did not finish within {timeout:g} s and was killed")
        self.argv = argv
        self.timeout = timeout


def installed(program: str) -> bool:
    """True when program (a name searched on PATH, or a path) exists and is executable."""
    if "/" in program:
        return os.access(program, os.X_OK)
    return any(os.access(os.path.join(directory, program), os.X_OK)
               for directory in os.get_exec_path())


def run(argv: list[str], timeout: float | None = None) -> CommandResult:
    """Run argv (PATH is searched when argv[0] has no slash) with stdin from /dev/null.

    Raises CommandNotFound when the program does not exist and CommandTimeout when it
    outlives timeout seconds; the child is reaped in every case.
    """
    return start(argv).finish(timeout)


class Running:
    """A program start() left running: finish() collects its output and reaps it."""

    def __init__(self, argv: list[str], pid: int, out_r: int, err_r: int) -> None:
        self.argv, self.pid, self.out_r, self.err_r = argv, pid, out_r, err_r

    def finish(self, timeout: float | None = None) -> CommandResult:
        """Wait for the program (timeout seconds from now at most) and return what it
        returned; CommandTimeout when it ran past that, killed and reaped then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            stdout, stderr = _read_until_eof(self.out_r, self.err_r, deadline)
            status = _wait(self.pid, deadline)
        except TimeoutError:
            _kill_and_reap(self.pid)
            raise CommandTimeout(self.argv, timeout) from None  # type: ignore[arg-type]
        except BaseException:
            _kill_and_reap(self.pid)
            raise
        return CommandResult(os.waitstatus_to_exitcode(status), stdout.decode("utf-8", "replace"),
                             stderr.decode("utf-8", "replace"))


def start(argv: list[str]) -> Running:
    """Start argv as run() does and return at once: for a program whose answer is needed
    only later, so that it runs meanwhile. CommandNotFound when it does not exist."""
    if not argv:
        raise ValueError("empty argument list")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = _spawn(argv, out_w, err_w)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return Running(argv, pid, out_r, err_r)


def _spawn(argv: list[str], out_w: int, err_w: int) -> int:
    """Start the child with fds 0/1/2 set up and every other inherited fd closed."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, out_w, 1),
               (os.POSIX_SPAWN_DUP2, err_w, 2)]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
    spawn = os.posix_spawn if "/" in argv[0] else os.posix_spawnp
    try:
        return spawn(argv[0], argv, os.environ, file_actions=actions,
                     setsigmask=(), setsigdef=(_SIGPIPE, _SIGXFSZ))
    except FileNotFoundError:
        raise CommandNotFound(argv[0]) from None


def _inheritable_fds() -> list[int]:
    """Open fds above 2 that would survive exec: ours are close-on-exec already, but
    ones inherited from the cluster manager may not be, and must not leak on."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
        except OSError:  # the directory fd listdir used, closed again
            pass
    return fds


def _remaining(deadline: float | None) -> int:
    """Milliseconds left for poll (-1 = no limit); TimeoutError once the deadline passed."""
    if deadline is None:
        return -1
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return max(1, int(left * 1000 + 0.999))


def _read_until_eof(out_r: int, err_r: int, deadline: float | None) -> tuple[bytes, bytes]:
    """Collect both pipes until the child (and anything it left holding them) closes them."""
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    open_fds = set(chunks)
    try:
        while open_fds:
            for fd, _ in poller.poll(_remaining(deadline)):
                data = os.read(fd, _CHUNK)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
    finally:
        os.close(out_r)
        os.close(err_r)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])


def _wait(pid: int, deadline: float | None) -> int:
    """Reap pid, waiting at most until deadline. Its pipes are closed by now, so it is
    normally exiting already; the short sleeps only cover that last instant."""
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        _remaining(deadline)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, _SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
