"""Per-resource state files under HA_RSCTMP, and a lock that serialises a resource's actions.

HA_RSCTMP (/run/resource-agents, made by resource-agents at boot) lives on tmpfs, so state
vanishes with a reboot, as it must: nothing there survives the node. Files are created with
O_NOFOLLOW and mode 0600, so a symlink planted in the directory is never followed.
"""

import errno
import fcntl
import os
import time

DEFAULT_RSCTMP = "/run/resource-agents"
_MAX_NAME = 160  # bytes of a resource name kept in a state file's name
_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL


class StateError(Exception):
    """The state directory cannot be used; the message says why and where."""


def _safe_name(text: str) -> str:
    """A file-name component made from a resource name: no '/', no leading dot, and short
    enough for a file name (255 bytes with our prefix and suffixes); a longer name keeps
    its start and a checksum of the whole, so that two long names stay apart."""
    cleaned = "".join(c if c.isalnum() or c in "-_.:@" else "_" for c in text)
    cleaned = cleaned.lstrip(".") or "_"
    encoded = cleaned.encode()
    if len(encoded) <= _MAX_NAME:
        return cleaned
    import zlib
    checksum = zlib.crc32(text.encode("utf-8", "surrogateescape"))
    return f"{encoded[:_MAX_NAME - 9].decode('utf-8', 'ignore')}-{checksum:08x}"


class StateDir:
    """The files of one resource: `<HA_RSCTMP>/kuth-<agent>-<instance>.<suffix>`."""

    def __init__(self, agent: str, instance: str) -> None:
        self.directory = os.environ.get("HA_RSCTMP") or DEFAULT_RSCTMP
        self.stem = f"kuth-{_safe_name(agent)}-{_safe_name(instance or 'default')}"

    def path(self, suffix: str) -> str:
        return os.path.join(self.directory, f"{self.stem}.{suffix}")

    def socket_path(self, suffix: str) -> str:
        """Like path(), but short enough for a unix socket (107 bytes): a long resource name
        is replaced by a checksum of it there."""
        path = self.path(suffix)
        if len(path.encode()) <= _MAX_SOCKET_PATH:
            return path
        import zlib
        return os.path.join(self.directory, f"kuth-{zlib.crc32(self.stem.encode()):08x}.{suffix}")

    def ensure(self) -> None:
        """Create the directory (0755) when the node booted without resource-agents' tmpfiles."""
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
        except OSError as err:
            raise StateError(f"cannot create state directory {self.directory}: "
                                        f"{err.strerror}") from None

    def read(self, suffix: str) -> str | None:
        """The content of a state file, None when it does not exist."""
        try:
            fd = os.open(self.path(suffix), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno == errno.ELOOP:
                return None
            raise
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", "replace")
        finally:
            os.close(fd)

    def write(self, suffix: str, text: str) -> None:
        """Replace a state file atomically (see write_file)."""
        self.ensure()
        write_file(self.path(suffix), text)

    def remove(self, suffix: str) -> None:
        """Forget a state file. Never fails: stop calls it, and a failed stop fences the
        node; a record left on a read-only directory names a process gone (see live_pid)."""
        try:
            remove_file(self.path(suffix))
        except OSError:
            pass

    def lock(self, deadline: float) -> "ResourceLock":
        """Hold the resource's lock until released; wait for it until `deadline`
        (time.monotonic()). Pacemaker never runs two actions of one resource at once on a node,
        but an operator running the agent by hand, or a background announcer, may."""
        self.ensure()
        return ResourceLock(self.path("lock"), deadline)


class ResourceLock:
    """An flock on a lock file; a context manager. The lock dies with the process."""

    def __init__(self, path: str, deadline: float) -> None:
        self.path = path
        self.deadline = deadline
        self.fd = -1

    def __enter__(self) -> "ResourceLock":
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o600)
        except OSError as err:
            raise StateError(f"cannot open lock {self.path}: {err.strerror}") from None
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= self.deadline:
                    os.close(self.fd)
                    raise StateError(f"another action of this resource holds "
                                                   f"{self.path}") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def write_file(final: str, text: str) -> None:
    """Replace the file final atomically (write a temporary file beside it, then rename),
    private (0600); StateError when it cannot be, with nothing left behind (a full
    directory, say)."""
    tmp = f"{final}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except OSError as err:
        remove_file(tmp)
        raise StateError(f"cannot write {final}: {err.strerror}") from None


def remove_file(path: str) -> None:
    """Delete the file at path; one that is already gone is no error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), None when the
    process is gone (or a zombie). Recorded next to a pid so that a pid reused by another
    process is not mistaken for ours. Read here rather than through
    ocf_lib.adapters.process.process_info, which also reads cmdline and exe: IPaddr2's
    monitor checks its watcher's record on every run, and importing that module would
    cost it 0.5 ms each time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = data[data.rfind(b")") + 2:].split()
    if len(fields) <= 19 or fields[0] == b"Z":  # a zombie has ended, only not been reaped
        return None
    return fields[19].decode()


def pid_record(pid: int) -> str:
    """'PID STARTTIME' for a state file."""
    return f"{pid} {process_start_time(pid) or 0}"


def live_pid(record: str | None) -> int | None:
    """The pid of a 'PID STARTTIME' record if that very process still runs, else None."""
    if not record:
        return None
    parts = record.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    pid = int(parts[0])
    return pid if pid > 1 and process_start_time(pid) == parts[1] else None
