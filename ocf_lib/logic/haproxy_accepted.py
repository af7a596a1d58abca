"""The last haproxy configuration HAProxy accepted, kept so that a refused edit never stops
the endpoint.

HAProxy's own master-worker reload keeps the running configuration when a new one fails;
the agent goes one step further, because under Pacemaker haproxy also starts afresh: after
a restart in place, on the node that takes the address over, or after a cleanup. So:

- Every start or reload that HAProxy accepted leaves a copy of the configuration file on
  this node (<HA_RSCTMP>/kuth-haproxy-<resource>.accepted.cfg, tmpfs: it goes with a reboot),
  whose modification time is the moment it was first accepted.
- The node that runs haproxy hands that copy to the cluster, as a private attrd attribute
  of every node, its own included (never in the CIB): kuth-<resource>-accepted-config,
  "<accepted ns> <zlib + base64 of the file>". A lost node's own attributes go with it,
  those it wrote for the survivors stay; a node that rejoins finds the value the serving
  node keeps for itself. Its monitor writes it when the copy changed and again every
  PUBLISH_REFRESH.
- A start whose configuration file haproxy refuses runs the newest of all these instead
  (the node's own copy, or one the cluster holds), from the copy's path, and says so:
  monitor reports the resource degraded until a configuration file haproxy accepts is
  applied.

Only the file named by conffile is kept: files it names (certificates, maps, errorfiles)
and those extraconf adds are read where they are.
"""
import os
import time

from ocf_lib.ocf.log import Logger
from ocf_lib.ocf.state import StateDir

COPY = "accepted.cfg"  # state suffix of this node's copy
_PUBLISHED = "accepted.published"  # state suffix: which copy the peers have, and when
_REFUSED = "refused"  # state suffix: why the configuration file is not what runs
PUBLISH_REFRESH = 300.0  # seconds after which an unchanged copy is handed over again
PUBLISH_RETRY = 60.0  # seconds before another try once handing it over failed
PUBLISH_MAX = 96 * 1024  # bytes of attribute value at most (attrd_updater's argument)


def attribute(resource: str) -> str:
    """The private node attribute that carries the copy to the other nodes."""
    return f"kuth-{resource.split(':', 1)[0]}-accepted-config"


class Accepted:
    """The last accepted configuration of one resource, on this node and in the cluster."""

    def __init__(self, state: StateDir, resource: str) -> None:
        self.state = state
        self.resource = resource
        self.path = state.path(COPY)

    # -- this node's copy ----------------------------------------------------------------------

    def remember(self, content: bytes) -> None:
        """Record content as accepted now, unless the copy already holds it (its time then
        stays the moment it was first accepted)."""
        if self.local() != content:
            self.store(content)

    def local(self) -> bytes | None:
        return read_file(self.path)

    def store(self, content: bytes, accepted_ns: int | None = None) -> None:
        """Replace the copy atomically (0600, root's: it holds what root runs haproxy with),
        accepted at accepted_ns (time.time_ns(); None: now)."""
        self.state.ensure()
        temp = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        if accepted_ns is not None:
            os.utime(temp, ns=(accepted_ns, accepted_ns))
        os.replace(temp, self.path)

    def local_ns(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1

    # -- refused: the configuration file is not what runs ---------------------------------------

    def refused(self) -> str | None:
        """Why haproxy refused the configuration file, while it does; None otherwise."""
        return self.state.read(_REFUSED)

    def mark_refused(self, reason: str) -> None:
        self.state.write(_REFUSED, reason)

    def clear_refused(self) -> None:
        self.state.remove(_REFUSED)

    def file_runs(self, conffile: str) -> bool:
        """True when conffile holds exactly the configuration that runs (an edit undone)."""
        content = read_file(conffile)
        return content is not None and content == self.local()

    # -- handed to the other nodes ---------------------------------------------------------------

    def publish_if_due(self, log: Logger) -> None:
        """Hand this node's copy to every node when it changed or was handed over
        PUBLISH_REFRESH ago; after a failure, again PUBLISH_RETRY later, not on every
        monitor (each try spawns Pacemaker's tools). Never fails: a copy not handed over
        only leaves the others with an older one."""
        stamp = self.local_ns()
        if stamp < 0:
            return
        record = (self.state.read(_PUBLISHED) or "").split()
        handed, due = (record[0], float(record[1])) if len(record) == 2 else ("", 0.0)
        if time.time() < due and handed in (str(stamp), "failed"):
            return
        from ocf_lib.adapters import pacemaker
        content = self.local()
        value = encode(stamp, content or b"")
        if len(value) > PUBLISH_MAX:
            log.warning(f"the accepted configuration is too large ({len(value)} bytes encoded) "
                        f"to hand to the other nodes; they keep their own")
            return
        try:
            for member in pacemaker.member_names():
                pacemaker.update_attribute(attribute(self.resource), value, node=member,
                                           private=True)
        except pacemaker.PacemakerError as err:
            log.warning(f"cannot hand the accepted configuration to the other nodes: {err}")
            self.state.write(_PUBLISHED, f"failed {time.time() + PUBLISH_RETRY:.0f}")
            return
        self.state.write(_PUBLISHED, f"{stamp} {time.time() + PUBLISH_REFRESH:.0f}")

    def newest(self, in_cluster: bool, log: Logger) -> str | None:
        """Where the newest accepted configuration this node knows comes from (for the
        log), None when it knows none: its own copy, or one the cluster holds (in_cluster:
        Pacemaker runs the agent); the copy then holds it, with the time it was accepted."""
        own, own_ns = self.local(), self.local_ns()
        if in_cluster:
            from ocf_lib.adapters import pacemaker
            try:
                values = pacemaker.attribute_values(attribute(self.resource))
            except pacemaker.PacemakerError as err:
                log.warning(f"no accepted configuration from the cluster: {err}")
                values = {}
            held = [(*h, node) for node, value in values.items() if (h := decode(value, log))]
            handed = max(held, default=None, key=lambda h: h[0])
            if handed and handed[0] > own_ns and handed[1] != own:
                self.store(handed[1], handed[0])
                return f"the copy {handed[2]} holds, accepted {_when(handed[0])}"
        return None if own is None else f"this node's copy, accepted {_when(own_ns)}"


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def read_file(path: str) -> bytes | None:
    """A configuration file's bytes as haproxy reads them; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def encode(accepted_ns: int, content: bytes) -> str:
    import base64
    import zlib
    return f"{accepted_ns} {base64.b64encode(zlib.compress(content, 9)).decode()}"


def decode(value: str | None, log: Logger) -> tuple[int, bytes] | None:
    """(accepted ns, content) from an attribute value; None when absent or damaged."""
    if not value:
        return None
    import base64
    import binascii
    import zlib
    stamp, _, data = value.partition(" ")
    try:
        return int(stamp), zlib.decompress(base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error, zlib.error) as err:
        log.warning(f"the accepted configuration the cluster handed over is damaged: {err}")
        return None
