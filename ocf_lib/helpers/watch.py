"""What a resource asks the node's watcher (ocf_lib.helpers.watcher) to watch, and how it
asks: a registration file per resource in the node's registry, and a SIGHUP.

One watcher serves every resource of a node (of a network namespace: it follows that
namespace's addresses), so that a node with many addresses pays for one interpreter, not
one each. The registry is a set of files `<HA_RSCTMP>/kuth-watch-<netns inode>.<part>`:

- `.<resource state stem>`: one registration (a Watch), written atomically by start,
  reload and monitor, removed by stop; its first line is a token that changes with every
  new registration, so that the watcher tells a target registered again from the one it
  has already reported;
- `.pid`: "PID STARTTIME VERSION" of the running watcher, written by the agent that starts
  it, removed with the last registration;
- `.lock`: taken by an agent that registers or ends a registration, and by the watcher
  before it leaves for lack of registrations, so that no registration falls between its
  last look and its exit; `.watcher.lock`: held by the running watcher.

A stop leaves only the empty lock files, as it leaves its resource's own lock.

monitor calls keep() on every run: when nothing needs doing it costs two small reads and
a stat, and imports nothing but this module.
"""

import os

MARK = "kuth-watcher"  # in the watcher's command line: `pgrep -f kuth-watcher`
RECORD = "pid"
LOCK = "lock"
SINGLETON = "watcher.lock"
LOCK_WAIT = 5.0  # seconds an agent waits for the registry's lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.ocf.log import Logger
    from ocf_lib.ocf.state import ResourceLock, StateDir


class ProcessTarget:
    """A process whose end is a failure of the resource (haproxy's master)."""

    kind = "process"

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def fields(self) -> list[tuple[str, str]]:
        return [("pid", str(self.pid))]


class AddressTarget:
    """A floating address whose removal (or its interface's) is a failure, and with
    check_link a link without carrier for the watcher's grace; with hand_over, the watcher
    also keeps the other nodes told of the address's long-lived connections."""

    kind = "address"

    def __init__(self, ip: str, nic: str, check_link: bool, hand_over: bool) -> None:
        self.ip, self.nic = ip, nic
        self.check_link, self.hand_over = check_link, hand_over

    def fields(self) -> list[tuple[str, str]]:
        return [("ip", self.ip), ("nic", self.nic), ("check_link", _flag(self.check_link)),
                ("hand_over", _flag(self.hand_over))]


Target = ProcessTarget | AddressTarget


class Watch:
    """One registration: resource on node, its lock (held by its start, stop and reload:
    a failure while one runs is theirs to handle), and its target."""

    def __init__(self, resource: str, node: str, lock: str, target: Target) -> None:
        self.resource, self.node, self.lock, self.target = resource, node, lock, target

    def text(self) -> str:
        items = [("resource", self.resource), ("node", self.node), ("lock", self.lock),
                 ("kind", self.target.kind), *self.target.fields()]
        return "".join(f"{key}={value}\n" for key, value in items)

    @classmethod
    def parse(cls, text: str) -> "Watch | None":
        """The Watch of text() (a registration's body), None when it is not one."""
        values = dict(line.partition("=")[::2] for line in text.splitlines())
        try:
            kind = values["kind"]
            if kind == ProcessTarget.kind:
                target: Target = ProcessTarget(int(values["pid"]))
            elif kind == AddressTarget.kind:
                target = AddressTarget(values["ip"], values["nic"], values["check_link"] == "1",
                                       values["hand_over"] == "1")
            else:
                return None
            return cls(values["resource"], values["node"], values["lock"], target)
        except (KeyError, ValueError):
            return None


def _flag(value: bool) -> str:
    return "1" if value else "0"


def registry_prefix() -> str:
    """The prefix of this node's registry files (see the module's docstring)."""
    netns = os.stat("/proc/self/ns/net").st_ino
    return os.path.join(os.environ.get("HA_RSCTMP") or "/run/resource-agents",
                        f"kuth-watch-{netns}")


def registrations(prefix: str) -> list[str]:
    """The names (resource state stems) registered under prefix."""
    base = f"{os.path.basename(prefix)}."
    names = [entry[len(base):] for entry in os.listdir(os.path.dirname(prefix))
             if entry.startswith(base)]
    return [name for name in names
            if name not in (RECORD, LOCK, SINGLETON) and not name.endswith(".tmp")]


def running_watcher(prefix: str) -> tuple[int, bool] | None:
    """(pid, of this library's version) of the watcher of the registry prefix, None when
    none runs."""
    from ocf_lib.ocf.state import process_start_time
    try:
        with open(f"{prefix}.{RECORD}") as record:
            pid, start, version = record.read().split()
    except (OSError, ValueError):
        return None
    if not pid.isdigit() or process_start_time(int(pid)) != start:
        return None
    from ocf_lib import __version__
    return int(pid), version == __version__


def locked(prefix: str) -> "ResourceLock":
    """The registry's lock (a context manager; StateError when it cannot be had)."""
    import time
    from ocf_lib.ocf.state import ResourceLock
    return ResourceLock(f"{prefix}.{LOCK}", time.monotonic() + LOCK_WAIT)


def keep(state: "StateDir", *, enabled: bool, resource: str, node: str, target: Target,
         log: "Logger") -> None:
    """Have the node's watcher watch target for resource when watching is enabled; end()
    a registration left from before when watching is disabled. For the agent to call only
    when Pacemaker runs it (node, this node's name, is set only then: only then is there a
    node to report for). A watcher that cannot start is logged: the monitor still notices
    what it would have."""
    if not enabled:  # watch=false set on a running resource (through a reload)
        end(state)
        return
    prefix = registry_prefix()
    body = Watch(resource, node, state.path("lock"), target).text()
    path = f"{prefix}.{state.stem}"
    try:
        with open(path, errors="surrogateescape") as registered:
            current = registered.read()
    except OSError:
        current = ""
    found = running_watcher(prefix)
    if current.partition("\n")[2] == body and found and found[1]:
        return
    from ocf_lib.ocf.state import StateError
    try:
        state.ensure()
        register(prefix, path, body if current.partition("\n")[2] != body else None)
    except (OSError, StateError, ValueError) as err:
        log.warning(f"cannot start the {MARK}: {err}")
    _end_own_watcher(state)


def register(prefix: str, path: str, body: str | None) -> None:
    """Write the registration (body; None: keep the one there) and make the watcher read
    it: signal the running one, or start one (ending one of another version first).
    OSError or StateError when it cannot, with nothing left behind."""
    import time
    with locked(prefix):
        if body is not None:
            _write(path, f"token={time.time_ns()}.{os.getpid()}\n{body}")
        found = running_watcher(prefix)
        if found and found[1]:
            os.kill(found[0], 1)  # SIGHUP: read the registry again
            return
        if found:
            os.kill(found[0], 15)  # of another version: the new one waits for its exit
        _spawn(prefix)


def _write(path: str, text: str) -> None:
    """Write a registration in place, not through a temporary file: whatever happens to
    the agent meanwhile, its stop removes all it wrote. The watcher skips a registration
    it cannot read yet (this agent signals it once done). OSError, with the file removed,
    when it cannot be written."""
    from ocf_lib.ocf.state import remove_file
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, text.encode("utf-8", "surrogateescape"))  # names as the env had them
        finally:
            os.close(fd)
    except (OSError, ValueError):
        remove_file(path)
        raise


def _spawn(prefix: str) -> None:
    """Start the watcher of the registry prefix, detached, and record it; its guardian is this
    agent's parent (pacemaker-execd): when that ends, the node has left the cluster.
    SIGHUP stays blocked until the watcher has a handler for it: a registration signalled
    meanwhile must not end it."""
    import sys
    from ocf_lib import __version__
    from ocf_lib.adapters import process
    from ocf_lib.ocf.state import pid_record, write_file
    lib_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(lib_root, "ocf_lib", "helpers", "watcher.py")
    argv = [sys.executable, "-IS", script, MARK, lib_root, prefix, str(os.getppid())]

    def run() -> None:
        import _signal
        _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGHUP})
        os.execv(argv[0], argv)

    pid = process.spawn_detached(run)
    write_file(f"{prefix}.{RECORD}", f"{pid_record(pid)} {__version__}\n")


def end(state: "StateDir") -> None:
    """Stop watching for this resource (before an intended stop); with the last
    registration goes the watcher's record, and the watcher leaves. Never fails: the
    watcher also stands back while the resource's stop holds its lock, and reports nothing
    for a registration gone."""
    from ocf_lib.ocf.state import StateError, remove_file
    prefix = registry_prefix()
    path = f"{prefix}.{state.stem}"
    if os.path.exists(path):
        found = running_watcher(prefix)
        try:
            remove_file(path)
            with locked(prefix):
                if not registrations(prefix):
                    remove_file(f"{prefix}.{RECORD}")
        except (OSError, StateError):
            pass
        if found:
            try:
                os.kill(found[0], 1)
            except ProcessLookupError:
                pass
    _end_own_watcher(state)


def _end_own_watcher(state: "StateDir") -> None:
    """End the watcher of this resource alone that a version before one watcher per node
    left running, and its record."""
    from ocf_lib.helpers import registry
    registry.end(state, "watcher")
    state.remove("watcher-of")
