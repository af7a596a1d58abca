"""The node's watcher: tells Pacemaker at once when something a resource depends on fails,
instead of at the resource's next monitor, for every resource of the node in one process.

With the guide's `op monitor interval=20`, Pacemaker learns that haproxy died up to 20 s
late. The agents register what to watch (ocf_lib.helpers.watch); this process waits in
poll() for all of it at once, with no polling loop and no CPU while it waits:

- a process (haproxy's master): a pidfd, readable when it ends;
- a floating address: the kernel's netlink notifications report it removed (by hand, or
  with its interface) and, when the resource checks the link, a link that stays without
  carrier for LINK_DOWN_GRACE (a brief flap is not a failure). For an address that hands
  over its long-lived connections, a round of ocf_lib.logic.handover.HandOvers (all such
  addresses at once) every HandOvers.period, in a thread of its own.

When a target fails and no action of its resource is under way (start, stop and reload
hold the resource's lock), its registration is still the one that failed, and the cluster,
the node and the resource are not in maintenance or unmanaged, the watcher runs
`crm_resource --fail` for the resource on this node, and Pacemaker recovers it at once
according to on-fail and migration-threshold. Either way the registration is removed, so
that the next monitor that finds the resource running registers it anew. The recurring
monitor stays the safety net: a watcher that dies changes nothing but the delay.

The watcher also waits on a pidfd of pacemaker-execd (its guardian): when the node leaves
the cluster, the watcher leaves too. It leaves as well once no registration is left. It
runs this file as a script, so that `ps` shows what it is (`kuth-watcher` in its command
line), and logs to syslog as kuth-watcher.
"""

import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.helpers.watch import AddressTarget, Watch
    from ocf_lib.logic.handover import HandOvers

LINK_DOWN_GRACE = 1.0  # seconds a link may lose its carrier before it is a failure
START_WAIT = 10.0  # seconds a new watcher waits for one of another version to leave


class Armed:
    """A registration being watched: its token, what it asks, and what watching it holds."""

    def __init__(self, name: str, token: str, watch: "Watch") -> None:
        self.name, self.token, self.watch = name, token, watch
        self.fd = -1  # the process's pidfd
        self.index = 0  # the address's interface
        self.down_since: float | None = None


class Watcher:
    def __init__(self, prefix: str, guardian: int) -> None:
        import signal
        self.prefix = prefix  # of the registry's files (ocf_lib.helpers.watch)
        self.poller = select.poll()
        self.armed: dict[str, Armed] = {}
        self.by_fd: dict[int, Armed] = {}
        self.finished: set[str] = set()  # tokens failed, whose registrations go
        self.events = None
        self.hand_overs: "HandOvers | None" = None
        self.guardian = -1
        if guardian > 1:
            self.guardian = os.pidfd_open(guardian)
            self.poller.register(self.guardian, select.POLLIN)
        self.wakeup, wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(wake, False)
        signal.set_wakeup_fd(wake)
        signal.signal(signal.SIGHUP, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # see watch._spawn
        self.poller.register(self.wakeup, select.POLLIN)

    def run(self) -> str:
        """Watch until the guardian ends or no registration is left; what ended it."""
        self.rescan()
        while True:
            if not self.armed and self.leave():
                return "no resource to watch is left"
            dues = [a.down_since + LINK_DOWN_GRACE for a in self.armed.values()
                    if a.down_since is not None]
            timeout = max(int((min(dues) - time.monotonic()) * 1000) + 1, 0) if dues else None
            try:
                ready = [fd for fd, _ in self.poller.poll(timeout)]
            except InterruptedError:
                continue
            if self.guardian in ready:
                return "the cluster is gone"
            for fd in ready:
                armed = self.by_fd.get(fd)
                if armed is not None:
                    self.failed(armed, f"process {armed.watch.target.pid} ended")  # type: ignore[union-attr]
            if self.events is not None and self.events.fileno() in ready:
                self.address_events()
            self.timers()
            if self.wakeup in ready:
                while True:
                    try:
                        if not os.read(self.wakeup, 512):
                            break
                    except BlockingIOError:
                        break
                self.rescan()
                if self.superseded():
                    return "another watcher took over"

    def superseded(self) -> bool:
        """The record names another watcher: an agent started one after this one's last
        registration had gone (the record with it), and this one is to leave."""
        from ocf_lib.helpers.watch import RECORD
        try:
            with open(f"{self.prefix}.{RECORD}") as record:
                return record.read().split()[:1] != [str(os.getpid())]
        except OSError:
            return False

    def leave(self) -> bool:
        """True when no registration is left, taking the watcher's record with it under the
        registry's lock (an agent registering meanwhile starts a new watcher)."""
        from ocf_lib.helpers.watch import RECORD, locked
        from ocf_lib.ocf.state import StateError
        try:
            with locked(self.prefix):
                self.rescan()
                if self.armed:
                    return False
                record = f"{self.prefix}.{RECORD}"
                try:
                    with open(record) as mine:
                        if mine.read().split()[:1] == [str(os.getpid())]:
                            os.unlink(record)
                except OSError:
                    pass
                return True
        except StateError:  # an agent holds the lock for long: registering, likely
            self.rescan()
            return not self.armed and self.superseded()

    def rescan(self) -> None:
        """Arm every registration that is new or changed, disarm every one gone."""
        from ocf_lib.helpers.watch import Watch, registrations
        found: dict[str, tuple[str, str]] = {}
        for name in registrations(self.prefix):
            try:
                with open(f"{self.prefix}.{name}", errors="surrogateescape") as registration:
                    token, _, body = registration.read().partition("\n")
            except OSError:
                continue
            if token not in self.finished:
                found[name] = (token, body)
        for name in [n for n, a in self.armed.items() if found.get(n, ("",))[0] != a.token]:
            self.disarm(self.armed.pop(name))
        for name, (token, body) in found.items():
            if name in self.armed:
                continue
            watch = Watch.parse(body)
            if watch is None:  # being written: its agent signals once it is done
                continue
            armed = Armed(name, token, watch)
            self.armed[name] = armed
            self.arm(armed)

    def arm(self, armed: Armed) -> None:
        target = armed.watch.target
        if target.kind == "process":
            try:
                armed.fd = os.pidfd_open(target.pid)  # type: ignore[union-attr]
            except ProcessLookupError:
                self.failed(armed, f"process {target.pid} is gone")  # type: ignore[union-attr]
                return
            self.by_fd[armed.fd] = armed
            self.poller.register(armed.fd, select.POLLIN)
            return
        self.arm_address(armed, target)  # type: ignore[arg-type]

    def arm_address(self, armed: Armed, target: "AddressTarget") -> None:
        from ocf_lib.adapters import netlink
        if self.events is None:  # subscribed before looking, so that nothing falls between
            self.events = netlink.Events()
            self.poller.register(self.events.fileno(), select.POLLIN)
        link = netlink.link_by_name(target.nic)
        if link is None or not any(a.address == target.ip
                                   for a in netlink.addresses(0, link.index)):
            self.failed(armed, f"{target.ip} is not on {target.nic}")
            return
        armed.index = link.index
        if target.hand_over:
            if self.hand_overs is None:
                import threading
                from ocf_lib.logic.handover import HandOvers
                self.hand_overs = HandOvers(armed.watch.node)
                threading.Thread(target=self.hand_over, args=(self.hand_overs,),
                                 daemon=True).start()
            self.hand_overs.add(target.ip, armed.watch.resource)

    def disarm(self, armed: Armed) -> None:
        if self.hand_overs:
            self.hand_overs.remove(armed.watch.resource)
        if armed.fd >= 0:
            self.poller.unregister(armed.fd)
            del self.by_fd[armed.fd]
            os.close(armed.fd)
            armed.fd = -1

    def address_events(self) -> None:
        """Dispatch what the kernel told to the addresses it concerns."""
        addresses = [a for a in self.armed.values() if a.watch.target.kind == "address"]
        for kind, item in self.events.read():  # type: ignore[union-attr]
            for armed in addresses:
                target = armed.watch.target
                if armed.name not in self.armed or item.index != armed.index:
                    continue
                if kind == "deladdr" and item.address == target.ip:  # type: ignore[union-attr]
                    self.failed(armed, f"{target.ip} was removed from {target.nic}")  # type: ignore[union-attr]
                elif kind == "dellink":
                    self.failed(armed, f"{target.nic} was removed")  # type: ignore[union-attr]
                elif kind == "link" and target.check_link:  # type: ignore[union-attr]
                    working = item.up and item.lower_up  # type: ignore[union-attr]
                    armed.down_since = None if working else (armed.down_since
                                                             or time.monotonic())

    def timers(self) -> None:
        """Links without carrier past their grace."""
        now = time.monotonic()
        for armed in list(self.armed.values()):
            if armed.down_since is not None and now >= armed.down_since + LINK_DOWN_GRACE:
                self.failed(armed, f"{armed.watch.target.nic} has had no carrier for "  # type: ignore[union-attr]
                                   f"{LINK_DOWN_GRACE:g} s")

    def hand_over(self, hand_overs: "HandOvers") -> None:
        """The hand-overs' rounds, in a thread of their own: at 50,000 connections a round
        and the attrd_updater runs it waits for take a while, during which a crash must
        still be reported at once. Not at once: a registration comes as the group's next
        resource starts on this node. A failure goes to syslog once, not every round."""
        reported: dict[str, str] = {}
        while True:
            time.sleep(hand_overs.period)
            failures = hand_overs()
            for resource, failure in failures.items():
                if reported.get(resource) != failure:
                    _log(f"{resource}: cannot hand over the connections: {failure}")
            reported = failures

    def failed(self, armed: Armed, failure: str) -> None:
        """Stop watching armed; report its failure from a thread of its own (Pacemaker's
        tools take a while, and another target may fail meanwhile)."""
        import threading
        self.disarm(armed)
        self.armed.pop(armed.name, None)
        self.finished.add(armed.token)
        threading.Thread(target=self.report, args=(armed, failure)).start()

    def report(self, armed: Armed, failure: str) -> None:
        watch = armed.watch
        if action_under_way(watch.lock):
            outcome = f"{failure} during an action of {watch.resource}"
        elif not self.still_registered(armed):
            outcome = f"{failure} after {watch.resource} stopped watching"
        elif quiet := cluster_says_quiet(watch.resource, watch.node):
            outcome = f"{failure}; not reported: {quiet}"
        else:
            outcome = report_failure(watch.resource, watch.node, failure)
        _log(f"{watch.resource}: {outcome}")
        self.unregister(armed)
        os.kill(os.getpid(), 1)  # the main loop looks again: maybe nothing is left

    def still_registered(self, armed: Armed) -> bool:
        try:
            with open(f"{self.prefix}.{armed.name}") as registration:
                return registration.readline().rstrip("\n") == armed.token
        except OSError:
            return False

    def unregister(self, armed: Armed) -> None:
        """Remove the registration that failed, unless the resource registered anew."""
        from ocf_lib.helpers.watch import locked
        from ocf_lib.ocf.state import StateError
        try:
            with locked(self.prefix):
                if self.still_registered(armed):
                    os.unlink(f"{self.prefix}.{armed.name}")
        except (OSError, StateError):
            pass  # left as it is: watched again once the resource registers anew


def action_under_way(lock_path: str) -> bool:
    """True while start, stop or reload of the resource holds its lock (they take it before
    they touch what is watched)."""
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


def _log(message: str) -> None:
    import syslog
    syslog.syslog(syslog.LOG_NOTICE, message)


def singleton(prefix: str) -> int | None:
    """The lock that makes this the only watcher of the registry prefix, held until exit;
    None when another one still holds it after START_WAIT (one of another version, told to
    leave, or one superseded)."""
    import fcntl
    from ocf_lib.helpers.watch import SINGLETON
    fd = os.open(f"{prefix}.{SINGLETON}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    deadline = time.monotonic() + START_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) != 5 or not argv[4].isdigit():
        sys.stderr.write("usage: watcher.py kuth-watcher LIBROOT REGISTRY-PREFIX GUARDIAN\n")
        return 2
    lib_root, prefix, guardian = argv[2], argv[3], int(argv[4])
    sys.path.insert(0, lib_root)
    import syslog
    syslog.openlog(argv[1], syslog.LOG_PID, syslog.LOG_DAEMON)
    if singleton(prefix) is None:
        _log(f"another watcher of {prefix} does not leave; this one does")
        return 1
    watcher = Watcher(prefix, guardian)  # the agent that started it has recorded it
    started = time.monotonic()
    outcome = watcher.run()
    _log(f"{outcome}; leaving after {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
