"""One HAProxy instance run by the haproxy agent: files, launch, reload, stop, health.

HAProxy always runs in master-worker mode (`-W -D`), whatever the configuration says about
`daemon`: the master keeps the listening sockets across reloads (a reload, the master CLI's
`reload` or SIGUSR2, makes it start a new worker and let the old one finish its
connections), and its CLI socket, which the agent always creates, reaches the current worker
even when the configuration has no `stats socket`.

An haproxy that an older agent started (heartbeat's haproxy of the usual guide: daemonized,
not master-worker, `-p /var/run/haproxy.pid`) is taken over by a probe (adopt): it becomes
this resource's master, and the first reload hands it over to a master-worker haproxy of
ours (hand_over), the way an operator migrating a running cluster needs it: without a cut.

The monitor path (master_pid, show_stat) reads only the pidfile, /proc, a small state file
and the runtime socket; the configuration is parsed on start, reload and validate only.
"""

import os
import time

from ocf_lib.adapters import haproxy_api, process
from ocf_lib.adapters.haproxy_api import (FRONTENDS, SERVERS, RuntimeApiError,
                                          backend_servers_up, closed_frontends)
from ocf_lib.logic.haproxy_accepted import Accepted, read_file
from ocf_lib.ocf.codes import ConfigInvalid, NotInstalled, NotOnThisNode
from ocf_lib.ocf.log import Logger
from ocf_lib.ocf.state import StateDir, remove_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.adapters.haproxy_config import HaproxyConfig

__all__ = ["Instance", "RuntimeApiError", "FRONTENDS", "SERVERS", "backend_servers_up",
           "closed_frontends", "ConfigInvalid", "NotInstalled", "UnsafeFile", "LaunchFailed",
           "Refused", "publish_attributes", "clear_backend_attributes"]

# Options the agent sets itself; extraconf may not override them.
_RESERVED_OPTIONS = ("-W", "-Ws", "-D", "-db", "-p", "-S", "-sf", "-st", "-x", "-c", "-f")
# Seconds of a start's time kept to stop an haproxy that never served.
_CLEANUP_RESERVE = 1.0


class UnsafeFile(NotOnThisNode):
    """The configuration file could be changed by someone other than root."""


class LaunchFailed(Exception):
    """haproxy did not start or reload; the message is haproxy's own reason when it gave one."""


class Refused(LaunchFailed):
    """haproxy refused a new configuration on reload and runs the previous one unchanged."""


class Instance:
    """The haproxy of one resource on this node."""

    def __init__(self, resource: str, binpath: str, conffile: str, extraconf: str,
                 pidfile: str, stats_socket: str) -> None:
        for name, value in (("binpath", binpath), ("conffile", conffile),
                            ("pidfile", pidfile), ("stats_socket", stats_socket)):
            if value and (not value.startswith("/") or "\x00" in value or "\n" in value):
                raise ConfigInvalid(f"{name} {value!r} must be an absolute path")
        self.state = StateDir("haproxy", resource)
        self.binpath = binpath
        self.conffile = conffile
        self.extraconf = extraconf
        self.pidfile = pidfile or self.state.path("pid")
        self.master_socket = self.state.socket_path("master.sock")
        self.stats_socket = stats_socket
        self.accepted = Accepted(self.state, resource)
        self._master: int | None = None

    # -- files -------------------------------------------------------------------------------

    def check_files(self) -> None:
        """The binary is executable, the configuration readable and root's alone."""
        if not (os.path.isfile(self.binpath) and os.access(self.binpath, os.X_OK)):
            raise NotInstalled(f"haproxy binary {self.binpath} is not installed on this node")
        try:
            st = os.stat(self.conffile)
        except OSError as err:
            raise NotInstalled(f"configuration {self.conffile} cannot be read on this node: "
                               f"{err.strerror}") from None
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise UnsafeFile(f"{self.conffile} (owner uid {st.st_uid}, mode "
                             f"{st.st_mode & 0o7777:04o}) can be changed by others than root, "
                             f"who runs haproxy with it: chown root and chmod go-w")
        directory = os.path.dirname(self.pidfile)
        if self.pidfile != self.state.path("pid") and not os.path.isdir(directory):
            raise NotInstalled(f"the directory {directory} of pidfile {self.pidfile} does not "
                               f"exist on this node")
        if _not_a_pidfile(self.pidfile):
            raise UnsafeFile(f"pidfile {self.pidfile} exists and is not a pidfile (a link, or "
                             f"a file holding no pid): haproxy would overwrite it; set "
                             f"pidfile= to a path of its own")

    def extra_args(self) -> list[str]:
        """extraconf split like a shell would, never run through one."""
        import shlex
        try:
            args = shlex.split(self.extraconf)
        except ValueError as err:
            raise ConfigInvalid(f"extraconf cannot be split: {err}") from None
        clash = [a for a in args if a in _RESERVED_OPTIONS and a != "-f"]
        if clash:
            raise ConfigInvalid(f"extraconf may not contain {', '.join(clash)}: the agent sets "
                                f"those itself")
        return args

    def argv(self, config: str | None = None) -> list[str]:
        """haproxy's command line, with config (the accepted copy) in conffile's place."""
        return [self.binpath, "-W", "-D", "-p", self.pidfile,
                "-S", f"{self.master_socket},mode,600", "-f", config or self.conffile,
                *self.extra_args()]

    def running_config(self) -> str:
        """The configuration path the running master was started with: conffile, or the
        accepted copy when conffile was refused at its start."""
        recorded = self.state.read("argv")
        paths = process.config_args(recorded.split("\0")) if recorded else []
        return paths[0] if paths else self.conffile

    def command_line_changed(self) -> bool:
        """True when binpath, extraconf or pidfile changed since the start: only a restart
        applies that."""
        return self.state.read("argv") != "\0".join(self.argv(self.running_config()))

    def config_problem(self, timeout: float) -> str | None:
        """None when `haproxy -c` accepts the configuration, else its first complaint."""
        from ocf_lib.adapters.command import run
        result = run([self.binpath, "-c", "-f", self.conffile, *self.extra_args()],
                     timeout=max(timeout, 1.0))
        if result.rc == 0:
            return None
        return first_alert(result.stdout + result.stderr) or f"exit status {result.rc}"

    # -- processes ---------------------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The master of this resource, if it runs this binary with this configuration; a
        pidfile naming any other process (a reused pid) counts as nothing running."""
        if self._master is None:
            for pid in process.read_pidfile(self.pidfile)[:1]:
                info = process.process_info(pid)
                if info and info.state != "Z" and any(
                        process.runs_config(info, self.binpath, config)
                        for config in (self.conffile, self.accepted.path)):
                    self._master = pid
        return self._master

    def end_old_workers(self, bound: float, log: Logger) -> int:
        """End (SIGTERM) the old workers, which reloads leave serving their established
        connections, once they have been old for bound seconds (0: never); return how many
        still run. Watches last hours, so without a bound every reload would leave one more
        behind. Cheap when there are none: the master's children are read from /proc, and
        the master CLI is asked only when it has more than one."""
        master = self.master_pid()
        if not master or len(process.children(master)) <= 1:
            return 0
        try:
            ages = haproxy_api.old_worker_ages(haproxy_api.show_proc(self.master_socket,
                                                                     timeout=1.0))
        except RuntimeApiError as err:
            log.warning(f"cannot list haproxy's old workers: {err}")
            return len(process.children(master)) - 1
        expired = sorted(pid for pid, age in ages.items() if bound and age >= bound)
        if expired:
            process.signal_all(expired, process.SIGTERM)
            log.info(f"ended {len(expired)} old haproxy worker(s) (pids {expired}), old for "
                     f"over {bound:g} s (old_workers_timeout): their clients reconnect")
        return len(ages) - len(expired)

    def end_handed_over(self, bound: float, log: Logger) -> int:
        """The haproxy taken over and then handed over (hand_over) finishes its established
        connections as an old worker does, and is bounded the same way: ended (SIGTERM) once
        handed over for bound seconds (0: never). Returns 1 while it runs, else 0. Cheap
        when there is none: one failed open of a state file."""
        record = self.state.read("handed-over")
        if record is None:
            return 0
        try:
            pid, start_time, since = (int(word) for word in record.split())
        except ValueError:
            pid, start_time, since = 0, 0, 0
        info = process.process_info(pid) if pid else None
        if info is None or info.state == "Z" or info.start_time != start_time:
            self.state.remove("handed-over")
            return 0
        if bound and time.time() - since >= bound:
            process.signal_all([pid], process.SIGTERM)
            log.info(f"ended the haproxy handed over at a reload (pid {pid}), old for over "
                     f"{bound:g} s (old_workers_timeout): its clients reconnect")
            self.state.remove("handed-over")
            return 0
        return 1

    def our_pids(self) -> list[int]:
        """The master and every process it started (current and old workers)."""
        master = self.master_pid()
        if master is None:
            return []
        return [master, *process.children(master)]

    def foreign_pids(self) -> list[int]:
        """haproxy processes running this configuration on this host that this resource did
        not start."""
        ours = set(self.our_pids())
        here = _net_namespace("self")
        return [p.pid for p in process.find_haproxy(self.binpath, self.conffile)
                if p.pid not in ours and _net_namespace(str(p.pid)) == here]

    # -- taking over an haproxy another agent started -----------------------------------------

    def adoptable(self) -> int | None:
        """The haproxy to take over: the only process running this configuration in this
        network namespace, daemonized without master-worker mode (no -W, no child), as old
        shell agents start it (heartbeat's haproxy of the usual guide:
        `haproxy -f CFG -p /var/run/haproxy.pid` with `daemon`), with a runtime API for
        monitor to ask. Never a master-worker haproxy (Debian's haproxy.service runs -Ws):
        that one is systemd's, which would start it again."""
        foreign = self.foreign_pids()
        if len(foreign) != 1 or not (self.stats_socket or self._config_socket()):
            return None
        info = process.process_info(foreign[0])
        if (info is None or any(arg in ("-W", "-Ws") for arg in info.cmdline)
                or process.children(info.pid)):
            return None
        return info.pid

    def adopt(self, pid: int) -> None:
        """Make pid this resource's haproxy: its pid becomes the master's in the pidfile, so
        that monitor, the watcher and stop act on it, and it is marked as taken over, so
        that reload hands it over (hand_over) instead of signalling a master it is not."""
        self.state.ensure()
        process.write_pidfile(self.pidfile, [pid])
        self.state.write("socket", self.stats_socket or self._config_socket())
        self.state.remove("argv")
        self.state.write("adopted", str(pid))
        self._master = None

    def adopted(self) -> bool:
        """True while the master is an haproxy taken over (adopt), not one we started."""
        master = self.master_pid()
        return master is not None and self.state.read("adopted") == str(master)

    def hand_over(self, deadline: float) -> None:
        """Replace the haproxy taken over by a master-worker haproxy of ours, applying
        conffile, without a cut: the new one binds the same ports beside the old one
        (SO_REUSEPORT; the old one has no socket to pass its listeners through, `-x`) and,
        once it serves, `-sf` makes the old one stop listening and finish its established
        connections, bounded by old_workers_timeout (end_handed_over). Refused when the new
        one did not serve: the old one then serves on, still taken over."""
        from ocf_lib.adapters.command import run
        old = self.master_pid()
        old_info = process.process_info(old) if old else None
        if old is None or old_info is None:
            raise LaunchFailed("haproxy is not running")
        content = self.applicable_config()
        config = self.prepare_runtime_dirs(self.conffile)
        argv = self.argv()
        result = run([*argv[:3], "-sf", str(old), *argv[3:]],
                     timeout=max(deadline - time.monotonic(), 1.0))
        if result.rc != 0:
            self._keep_adopted(old)
            raise Refused(f"haproxy did not start beside the one taken over: "
                          f"{first_alert(result.stdout + result.stderr) or result.rc}")
        self.state.write("argv", "\0".join(argv))
        self.state.write("socket", _first_unix_socket(config))
        try:
            self.wait_serving(deadline - _CLEANUP_RESERVE, "reload", instead_of=old)
        except LaunchFailed as err:
            self._keep_adopted(old)
            raise Refused(str(err)) from None
        self.state.remove("adopted")
        self.state.write("handed-over", f"{old} {old_info.start_time} {time.time():.0f}")
        self.accepted.remember(content)
        self.accepted.clear_refused()

    def _keep_adopted(self, old: int) -> None:
        """After a failed hand-over: end the new haproxy if one runs, the old one stays this
        resource's haproxy."""
        self._master = None
        new = self.master_pid()
        if new and new != old:
            pids = [new, *process.children(new)]
            process.signal_all(pids, process.SIGTERM)
            process.wait_gone(pids, time.monotonic() + 2)
        self.adopt(old)

    # -- runtime API --------------------------------------------------------------------------

    def api_socket(self) -> tuple[str, str | None]:
        """(socket path, route) monitor talks to: stats_socket, else the configuration's
        first unix stats socket as recorded at start, else the master socket, routed to the
        current worker."""
        if self.stats_socket:
            return self.stats_socket, None
        recorded = self.state.read("socket")
        if recorded is None:
            recorded = self._config_socket()
        if recorded:
            return recorded, None
        return self.master_socket, haproxy_api.CURRENT_WORKER

    def _config_socket(self) -> str:
        from ocf_lib.adapters.haproxy_config import ConfigReadError, read_config
        try:
            return _first_unix_socket(read_config(self.conffile))
        except (ConfigReadError, OSError):
            return ""

    def show_stat(self, timeout: float, kinds: int | None = None) -> list[dict[str, str]]:
        path, route = self.api_socket()
        return haproxy_api.show_stat(path, timeout=timeout, route=route, kinds=kinds)

    # -- start, reload, stop ------------------------------------------------------------------

    def launch(self, deadline: float, from_accepted: bool = False) -> None:
        """Start haproxy and return once it answers with every frontend open; with conffile,
        which is then the accepted configuration, or with the accepted copy."""
        from ocf_lib.adapters.command import run
        path = self.accepted.path if from_accepted else self.conffile
        content = None if from_accepted else read_file(path)
        config = self.prepare_runtime_dirs(path)
        argv = self.argv(path)
        result = run(argv, timeout=max(deadline - time.monotonic(), 1.0))
        if result.rc != 0:
            raise LaunchFailed(f"haproxy did not start: "
                               f"{first_alert(result.stdout + result.stderr) or result.rc}")
        try:
            self.state.write("argv", "\0".join(argv))
            self.state.write("socket", _first_unix_socket(config))
            self._master = None
            self.wait_serving(deadline - _CLEANUP_RESERVE, "start")
        except BaseException:
            self.stop(grace=0, deadline=deadline)  # a failed start leaves nothing running
            raise
        if content is not None:
            self.accepted.remember(content)
            self.accepted.clear_refused()

    def wait_serving(self, deadline: float, what: str, instead_of: int | None = None) -> None:
        """Wait until the runtime API answers and every frontend is open; with instead_of,
        from a master other than that pid (the haproxy a hand-over replaces)."""
        problem = "no master process"
        while time.monotonic() < deadline:
            self._master = None
            if self.master_pid() not in (None, instead_of):
                try:
                    closed = closed_frontends(self.show_stat(timeout=1.0))
                    if not closed:
                        return
                    problem = f"frontends not open: {', '.join(closed)}"
                except RuntimeApiError as err:
                    problem = str(err)
            time.sleep(0.01)  # haproxy serves within tens of ms: every 10 ms counts in a failover
        raise LaunchFailed(f"haproxy did not serve before the {what} timeout: {problem}")

    def prepare_runtime_dirs(self, path: str) -> "HaproxyConfig":
        """Create the directories the configuration's sockets live in (a node fresh from boot
        has no /run/haproxy: Debian makes it through haproxy.service's tmpfiles, which a
        Pacemaker node does not run), owned as Debian's tmpfiles would own them. Returns the
        configuration as read."""
        from ocf_lib.adapters.haproxy_config import ConfigReadError, read_config
        try:
            config = read_config(path)
        except (ConfigReadError, OSError) as err:
            raise LaunchFailed(f"cannot read {path}: {err}") from None
        self.state.ensure()
        try:
            uid, gid = config.ids()
        except ConfigReadError as err:
            raise LaunchFailed(str(err)) from None
        for directory in {os.path.dirname(s.path) for s in config.unix_stats_sockets()}:
            if directory and not os.path.isdir(directory):
                os.makedirs(directory, mode=0o755, exist_ok=True)
                os.chown(directory, uid, gid)
                os.chmod(directory, 0o2775 if gid >= 0 else 0o755)
        return config

    def reload(self, deadline: float) -> None:
        """Apply conffile (checked by the caller; command_line_changed() false): a
        master-worker reload keeps the listening sockets and lets established connections
        finish on the old worker. A master started from the accepted copy re-reads that
        path, so conffile is copied there first, and the copy restored when refused.
        HAProxy >= 2.7 answers the master CLI's `reload` with its outcome and its own
        messages; 2.6 does not, so there the master gets SIGUSR2 and its reload counters
        tell. Refused when haproxy keeps running the previous configuration."""
        master = self.master_pid()
        if master is None:
            raise LaunchFailed("haproxy is not running")
        content = self.applicable_config()
        previous = None
        if self.running_config() == self.accepted.path:
            previous = self.accepted.local(), self.accepted.local_ns()
            self.accepted.store(content)
        try:
            before = self.master_line(deadline)
            if haproxy_api.answers_reload(before.version):
                self._reload_answered(deadline)
            else:
                self._reload_by_signal(master, before, deadline)
        except Refused:
            if previous and previous[0] is not None:
                self.accepted.store(*previous)
            raise
        self.wait_serving(deadline, "reload")
        self.accepted.remember(content)
        self.accepted.clear_refused()

    def applicable_config(self) -> str:
        """conffile's text, for a reload or a hand-over to apply: LaunchFailed when it
        cannot be read, Refused when a listener names an address this node lacks."""
        content = read_file(self.conffile)
        if content is None:
            raise LaunchFailed(f"cannot read {self.conffile}")
        missing = self.missing_addresses()
        if missing:
            raise Refused(f"{self.conffile}: {missing}: no such address on this node")
        return content

    def missing_addresses(self) -> str:
        """The first listener of conffile on an address this node lacks ('listen NAME:
        bind ADDRESS:PORT'), "" when there is none. HAProxy refuses such a file only
        after it has paused the running listeners to bind the new ones, for a second or
        more (2.6's reload by signal): asked first, the reload is refused without a
        blip. A bind to port 0 tells the address alone, whatever holds the port."""
        import errno
        import socket
        from ocf_lib.adapters.haproxy_config import ConfigReadError, read_config
        try:
            binds = read_config(self.conffile).binds
        except (ConfigReadError, OSError):
            return ""  # haproxy says better what is wrong with it
        for bind in binds:
            if bind.nonlocal_ok or bind.family not in ("ipv4", "ipv6"):
                continue
            family = socket.AF_INET6 if bind.family == "ipv6" else socket.AF_INET
            try:
                if not any(socket.inet_pton(family, bind.address)):
                    continue  # the wildcard
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.bind((bind.address, 0))
            except OSError as err:
                if err.errno == errno.EADDRNOTAVAIL:
                    return f"{bind.section} {bind.name}: bind {bind.address}:{bind.port}"
        return ""

    def _reload_answered(self, deadline: float) -> None:
        """The master CLI's `reload`, which answers once the new worker runs or the new
        configuration failed; a refusal carries HAProxy's first error (a listener it cannot
        bind, say, which `haproxy -c` does not try)."""
        try:
            answer = haproxy_api.reload(self.master_socket,
                                        timeout=max(deadline - time.monotonic(), 0.1))
        except RuntimeApiError as err:
            raise LaunchFailed(f"haproxy did not reload: {err}") from None
        if answer is not None and not answer.success:
            raise Refused(f"haproxy refused the new configuration: "
                          f"{first_alert(answer.messages) or 'no reason given'}")

    def _reload_by_signal(self, master: int, before: "haproxy_api.MasterProcess",
                          deadline: float) -> None:
        """SIGUSR2 to the master, then wait for its reload counter to move; a failed reload
        moves the failed counter too, and says no more."""
        process.signal_all([master], process.SIGUSR2)
        while time.monotonic() < deadline:
            after = self.master_line(deadline)
            if after.reloads > before.reloads:
                if (after.failed_reloads or 0) > (before.failed_reloads or 0):
                    raise Refused("haproxy refused the new configuration (HAProxy 2.6 "
                                  "does not say why)")
                return
            time.sleep(0.05)
        raise LaunchFailed("haproxy did not reload before the reload timeout")

    def master_line(self, deadline: float) -> "haproxy_api.MasterProcess":
        """The master's line of `show proc` (its version, reloads and failed reloads); the
        master refuses connections for a moment while it re-executes itself, so this
        retries."""
        problem = "no answer"
        while time.monotonic() < deadline:
            try:
                for proc in haproxy_api.show_proc(self.master_socket, timeout=1.0):
                    if proc.role == "master":
                        return proc
                problem = "no master in show proc"
            except RuntimeApiError as err:
                problem = str(err)
            time.sleep(0.05)
        raise LaunchFailed(f"haproxy's master socket did not answer: {problem}")

    def stop(self, grace: float, deadline: float) -> list[int]:
        """Soft-stop (established sessions may finish within grace), then terminate, then
        kill; every haproxy running this configuration goes, ours or not. Returns the pids
        still alive at the deadline."""
        pids = self.our_pids() + self.foreign_pids()
        if pids:
            process.signal_all(pids, process.SIGUSR1)
            pids = process.wait_gone(pids, min(time.monotonic() + grace, deadline - 2))
        if pids:
            process.signal_all(pids, process.SIGTERM)
            pids = process.wait_gone(pids, min(time.monotonic() + 2, deadline - 1))
        if pids:
            process.signal_all(pids, process.SIGKILL)
            pids = process.wait_gone(pids, deadline)
        if not pids:
            if process.read_pidfile(self.pidfile):  # never a file that holds no pids
                remove_file(self.pidfile)
            remove_file(self.master_socket)
            for suffix in ("argv", "socket", "adopted", "handed-over"):
                self.state.remove(suffix)
        self._master = None
        return pids


def _not_a_pidfile(path: str) -> bool:
    """True when path exists as something haproxy (root) must not write its pid into: a
    symlink (maybe planted), not a regular file, or a file with other content. An empty
    file counts as a pidfile: a crash may leave one."""
    if not os.path.lexists(path):
        return False
    if os.path.islink(path) or not os.path.isfile(path):
        return True
    return os.path.getsize(path) > 0 and not process.read_pidfile(path)


def _first_unix_socket(config: "HaproxyConfig") -> str:
    sockets = config.unix_stats_sockets()
    return sockets[0].path if sockets else ""


def first_alert(output: str) -> str:
    """haproxy's first error line without its '[ALERT]    (pid) : ' decoration, the place
    it names first: exit reasons are short (Pacemaker keeps 128 bytes)."""
    for line in output.splitlines():
        if "[ALERT]" in line:
            text = line.split("] ", 1)[-1]
            return _located(text.split(" : ", 1)[-1].strip() if " : " in text else text.strip())
    for line in output.splitlines():
        if line.strip() and "[NOTICE]" not in line and "[WARNING]" not in line:
            return line.strip()
    return ""


def _located(alert: str) -> str:
    """'config : parsing [FILE:LINE] : message' as 'FILE:LINE: message', and 'Binding
    [FILE:LINE] for ...' as 'FILE:LINE: binding for ...'; anything else as it is."""
    text = alert.removeprefix("config : ")
    start = text.find("[")
    end = text.find("]", start)
    location = text[start + 1:end] if 0 <= start < end else ""
    if not location.rpartition(":")[2].isdigit():
        return alert
    before = text[:start].strip()
    after = text[end + 1:].strip().removeprefix(":").strip()
    return f"{location}: {after if before in ('', 'parsing') else f'{before.lower()} {after}'}"


def publish_attributes(state: StateDir, resource: str, counts: dict[str, tuple[int, int]],
                       old_workers: int, refused: str | None, log: Logger) -> None:
    """Set the transient node attributes <resource>-<backend>-up to the number of UP servers,
    <resource>-old-workers to the number of old workers and, while the configuration file
    is refused, <resource>-config-refused to haproxy's reason, through attrd_updater (for
    the agent to call only when Pacemaker runs it), only when a value changed (a spawn per
    monitor would cost more than the monitor); one no longer wanted (a backend gone) is
    deleted."""
    base = resource.split(":", 1)[0]
    wanted = {f"{base}-{backend}-up": str(up) for backend, (up, _) in sorted(counts.items())}
    wanted[f"{base}-old-workers"] = str(old_workers)
    if refused:
        wanted[f"{base}-config-refused"] = " ".join(refused.split())
    known = _published(state)
    changed: dict[str, str | None] = {name: value for name, value in wanted.items()
                                      if known.get(name) != value}
    changed.update({name: None for name in known if name not in wanted})
    if changed and all(_attrd_updater(name, value, log) for name, value in changed.items()):
        state.write("attributes", "".join(f"{k}={v}\n" for k, v in wanted.items()))


def clear_backend_attributes(state: StateDir, log: Logger) -> None:
    """Delete the attributes this resource published: a stopped haproxy's counts would
    mislead location rules."""
    for name in _published(state):
        _attrd_updater(name, None, log)
    state.remove("attributes")


def _published(state: StateDir) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (state.read("attributes") or "").splitlines()
                if "=" in line)


def _attrd_updater(name: str, value: str | None, log: Logger) -> bool:
    """Set (or with value None delete) this node's attribute name; a failure is logged,
    never fatal: the attributes are advice."""
    from ocf_lib.adapters import pacemaker
    try:
        if value is None:
            pacemaker.delete_attribute(name)
        else:
            pacemaker.update_attribute(name, value)
    except pacemaker.PacemakerError as err:
        log.warning(str(err))
        return False
    return True


def _net_namespace(pid: str) -> str:
    """The network namespace of a process ("" once it is gone). /proc also shows the
    processes of containers and of the other nodes of a cluster run on one machine
    (lab/cluster.py): an haproxy in another network namespace is another host's, with its
    own listeners and its own haproxy.cfg at the same path; it is neither a conflict to
    report nor a process to stop. (Not the mount namespace: Debian's haproxy.service runs in
    one of its own, for its BindReadOnlyPaths.)"""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""

