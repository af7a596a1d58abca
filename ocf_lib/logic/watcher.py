"""Tell Pacemaker at once when a process it manages dies, instead of at the next monitor.

With the guide's `op monitor interval=20`, Pacemaker learns that haproxy died up to 20 s
late. The agent's start leaves a watcher behind: a small process blocked in poll() on a
pidfd of the process (no polling loop, no CPU while it waits). When the process exits and no
action of the resource is under way (stop and reload hold the resource's lock), and the
cluster, the node and the resource are not in maintenance or unmanaged, the watcher runs
`crm_resource --fail` for the resource on this node, and Pacemaker recovers it at once
according to on-fail and migration-threshold. The recurring monitor stays the safety net: a
watcher that dies changes nothing but the delay.

The same for a floating address: a watcher subscribed to the kernel's netlink
notifications reports the address removed (by hand, or with its interface) and, when the
resource checks the link, a link that stays without carrier for a second (a brief flap is
not a failure).

The watcher also waits on a pidfd of pacemaker-execd (the agent's parent): when the node
leaves the cluster, the watcher leaves too. It runs this file as a script, so that `ps`
shows what it is (`kuth-watcher` in its command line).
"""

import os
import select
import sys
import time

MARK = "kuth-watcher"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.logic.handover import HandOver
    from ocf_lib.ocf.log import Logger
    from ocf_lib.ocf.state import StateDir


LINK_DOWN_GRACE = 1.0  # seconds a link may lose its carrier before it is a failure


def spawn(lib_root: str, *, resource: str, node: str, guardian: int, lock_path: str,
          target: list[str]) -> int:
    """Start a detached watcher for resource on node; return the watcher's pid. target is
    ["process", PID] or ["address", IP, NIC, CHECK_LINK (1/0), HAND_OVER (1/0)]: with
    HAND_OVER, the watcher also keeps the other nodes told of the connections on the address
    (ocf_lib.logic.handover.HandOver). guardian is a process whose
    end means the cluster is gone here (0: none)."""
    script = os.path.join(lib_root, "ocf_lib", "logic", "watcher.py")
    argv = [sys.executable, "-IS", script, MARK, lib_root, resource, node, str(guardian),
            lock_path, *target]
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # first child: detach, start the watcher, report its pid, leave
        status = 1
        try:
            os.setsid()
            watcher = os.fork()
            if watcher == 0:
                from ocf_lib.adapters.process import BACKGROUND_NICE
                os.nice(BACKGROUND_NICE)  # it starts beside the next resource's start
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, 65536)
                os.execv(argv[0], argv)
            os.write(write_end, str(watcher).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        reported = pipe.read()
    try:
        os.waitpid(child, 0)
    except ChildProcessError:  # SIGCHLD ignored: the kernel reaped it; the pipe tells
        pass
    if not reported.isdigit():
        raise OSError(f"could not start the {MARK} for {resource}")
    return int(reported)


def ensure(state: "StateDir", *, resource: str, node: str, target: list[str]) -> None:
    """Make sure a watcher of target, of this version of the library, runs for resource:
    none yet, a dead one, one of an older package version (after an upgrade) or one of
    another target (a new pid after a restart) is replaced. Cheap when nothing needs doing:
    two small reads."""
    from ocf_lib import __version__
    from ocf_lib.ocf.state import pid_record
    wanted = " ".join([__version__, *target])
    if state.recorded_pid("watcher") and state.read("watcher-of") == wanted:
        return
    state.end_recorded("watcher")
    lib_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    watcher = spawn(lib_root, resource=resource, node=node, guardian=os.getppid(),
                    lock_path=state.path("lock"), target=target)
    state.write("watcher", pid_record(watcher))
    state.write("watcher-of", wanted)


def keep(state: "StateDir", *, enabled: bool, resource: str, node: str, target: list[str],
         log: "Logger") -> None:
    """ensure() when watching is enabled and Pacemaker runs the agent (node, this node's
    name, is set only then: only then is there a node to report for); end() a watcher left
    from before when watching is disabled. A watcher that cannot start is logged: the
    monitor still notices what it would have."""
    if not node:
        return
    if not enabled:  # watch=false set on a running resource (through a reload)
        end(state)
        return
    try:
        ensure(state, resource=resource, node=node, target=target)
    except OSError as err:
        log.warning(f"cannot start the {MARK}: {err}")


def end(state: "StateDir") -> None:
    """Stop watching (before an intended stop): the watcher goes without reporting."""
    state.end_recorded("watcher")
    state.remove("watcher-of")


def watch(resource: str, node: str, guardian: int, lock_path: str, target: list[str]) -> str:
    """Wait for the target to fail (or the guardian to end); report the failure when it
    should be. Returns what happened, for the log."""
    poller = select.poll()
    if guardian > 1:
        try:
            poller.register(os.pidfd_open(guardian), select.POLLIN)
        except ProcessLookupError:
            return "the cluster is gone"
    if target[0] == "process" and len(target) == 2:
        failure = _process_ended(poller, int(target[1]))
    elif target[0] == "address" and len(target) == 5:
        hand_over = None
        if target[4] == "1":
            from ocf_lib.logic.handover import HandOver
            hand_over = HandOver(target[1], resource, node)
        failure = _address_lost(poller, target[1], target[2], target[3] == "1", hand_over)
    else:
        return f"unknown target {target}"
    if not failure:
        return "the cluster is gone"
    if action_under_way(lock_path):
        return f"{failure} during an action of {resource}"
    quiet = cluster_says_quiet(resource, node)
    if quiet:
        return f"{failure}; not reported: {quiet}"
    return report_failure(resource, node, failure)


def _wait(poller: select.poll, timeout_ms: int | None = None) -> list[int]:
    while True:
        try:
            return [fd for fd, _ in poller.poll(timeout_ms)]
        except InterruptedError:
            continue


def _process_ended(poller: select.poll, pid: int) -> str:
    """'' when the guardian ended first, else what happened to the process."""
    try:
        watched = os.pidfd_open(pid)
    except ProcessLookupError:
        return f"process {pid} is gone"
    poller.register(watched, select.POLLIN)
    return f"process {pid} ended" if watched in _wait(poller) else ""


def _address_lost(poller: select.poll, ip: str, nic: str, check_link: bool,
                  hand_over: "HandOver | None") -> str:
    """'' when the guardian ended first, else how the address was lost: removed, its
    interface removed, or (check_link) the link without carrier for LINK_DOWN_GRACE. Every
    hand_over.period meanwhile, hand_over (when given) runs."""
    from ocf_lib.adapters import netlink
    events = netlink.Events()  # subscribed before looking, so that nothing falls between
    poller.register(events.fileno(), select.POLLIN)
    link = netlink.link_by_name(nic)
    if link is None or not any(a.address == ip for a in netlink.addresses(0, link.index)):
        return f"{ip} is not on {nic}"
    down_since: float | None = None
    # not at once: the watcher starts as the group's next resource does, on this node
    next_hand_over = time.monotonic() + hand_over.period if hand_over else None
    reported = ""
    while True:
        due = [t for t in (down_since and down_since + LINK_DOWN_GRACE, next_hand_over) if t]
        timeout = max(int((min(due) - time.monotonic()) * 1000), 0) if due else None
        ready = _wait(poller, timeout)
        if ready and events.fileno() not in ready:
            return ""
        for kind, item in events.read() if ready else []:
            if kind == "deladdr" and item.address == ip and item.index == link.index:
                return f"{ip} was removed from {nic}"
            if kind == "dellink" and item.index == link.index:
                return f"{nic} was removed"
            if kind == "link" and item.index == link.index and check_link:
                working = item.up and item.lower_up  # type: ignore[union-attr]
                down_since = None if working else (down_since or time.monotonic())
        if down_since is not None and time.monotonic() >= down_since + LINK_DOWN_GRACE:
            return f"{nic} has had no carrier for {LINK_DOWN_GRACE:g} s"
        if hand_over and next_hand_over and time.monotonic() >= next_hand_over:
            reported = _hand_over(hand_over, reported)
            next_hand_over = time.monotonic() + hand_over.period


def _hand_over(hand_over: "HandOver", reported: str) -> str:
    """One round of hand_over; a failure goes to syslog once, not every round. Returns the
    failure last reported."""
    from ocf_lib.adapters.pacemaker import PacemakerError
    try:
        hand_over()
        return ""
    except (OSError, PacemakerError) as err:
        if str(err) != reported:
            import syslog
            syslog.syslog(syslog.LOG_WARNING, f"cannot hand over the connections: {err}")
        return str(err)


def action_under_way(lock_path: str) -> bool:
    """True while start, stop or reload of the resource holds its lock (they take it before
    they touch the process)."""
    import fcntl
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def cluster_says_quiet(resource: str, node: str) -> str:
    """Why a failure must not be reported ('' when it must): maintenance of the cluster, of
    this node or of the resource, or an unmanaged resource. Read from crm_mon's XML; when
    crm_mon cannot tell, report anyway (Pacemaker itself ignores failures it should)."""
    from ocf_lib.adapters.command import CommandTimeout, run
    try:
        result = run(["crm_mon", "--one-shot", "--output-as=xml", "--inactive"], timeout=10)
    except (OSError, CommandTimeout):
        return ""
    if result.rc != 0:
        return ""
    return quiet_reason(result.stdout, resource, node)


def quiet_reason(xml: str, resource: str, node: str) -> str:
    """quiet reason from crm_mon XML (pure, for tests)."""
    import xml.etree.ElementTree as ElementTree
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return ""
    options = root.find("summary/cluster_options")
    if options is not None and options.get("maintenance-mode") == "true":
        return "the cluster is in maintenance mode"
    for element in root.iter("node"):
        if element.get("name") == node and element.get("maintenance") == "true":
            return f"node {node} is in maintenance"
    base = resource.split(":", 1)[0]
    for element in root.iter("resource"):
        if element.get("id", "").split(":", 1)[0] != base:
            continue
        if element.get("managed") == "false":
            return f"{base} is unmanaged"
        if element.get("maintenance") == "true":
            return f"{base} is in maintenance"
    return ""


def report_failure(resource: str, node: str, failure: str) -> str:
    """crm_resource --fail: Pacemaker records the failure and recovers the resource."""
    from ocf_lib.adapters.command import CommandTimeout, run
    try:
        result = run(["crm_resource", "--fail", "--resource", resource, "--node", node],
                     timeout=20)
    except (OSError, CommandTimeout) as err:
        return f"{failure}; crm_resource --fail failed: {err}"
    if result.rc != 0:
        return f"{failure}; crm_resource --fail: {result.stderr.strip()}"
    return f"{failure}; failure of {resource} on {node} reported"


def main(argv: list[str]) -> int:
    if len(argv) < 9 or argv[1] != MARK:
        sys.stderr.write(f"usage: {argv[0]} {MARK} LIBROOT RESOURCE NODE GUARDIAN LOCK "
                         f"process PID | address IP NIC CHECK_LINK\n")
        return 2
    lib_root, resource, node, guardian, lock_path = argv[2:7]
    sys.path.insert(0, lib_root)
    started = time.monotonic()
    import syslog
    syslog.openlog(f"{MARK}({resource})", syslog.LOG_PID, syslog.LOG_DAEMON)
    outcome = watch(resource, node, int(guardian), lock_path, argv[7:])
    syslog.syslog(syslog.LOG_NOTICE, f"{outcome} after {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
