"""Refusing connections for an address once it has left this node (see
ocf_lib.adapters.refuse): a process stop starts ahead, which answers the SYNs of clients that
still send to this node with resets, until the new owner has announced the address.
"""

import os
import time

from ocf_lib.adapters import netlink
from ocf_lib.helpers.go import give_go, went

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.adapters.refuse import Refuser
    from ocf_lib.logic.vip import Vip
    from ocf_lib.ocf.log import Logger
    from ocf_lib.ocf.state import StateDir

REFUSER = "kuth-refuser"  # the refuser's process name: `pgrep kuth-refuser`
REFUSE_AFTER_ANNOUNCEMENT = 0.5  # seconds a refuser goes on once the new owner has announced


def open_refuser(vip: "Vip", log: "Logger") -> "Refuser | None":
    """Stop's first step with the address still here: the refuser's packet socket, in which
    the SYNs for the address queue from now on. A client that stop resets reconnects at
    once, while the address is still here but its local route has gone (ocf_lib.logic.vip.reset_connections):
    that SYN is dropped by the kernel too, and only a socket opened before catches it. None
    when the socket cannot be opened: a warning, stop goes on without a refuser."""
    from ocf_lib.adapters import refuse
    try:
        return refuse.Refuser(vip.nic or "", vip.ip)
    except Exception as err:  # whatever it is: a failed stop would get the node fenced
        log.warning(f"connections to {vip.ip} will not be refused after stop: {err}")
        return None


class PendingRefuser:
    """Stop's refuser, started while the address is still here, so that its fork is not
    part of what the clients wait for: it answers nothing until release(True), once the
    address has gone, and ends at once on release(False) or when the stop dies first.
    Then, for seconds at most: it answers the SYNs that queued while the address went,
    then each new one, until another host announces the address, the address is back on
    this node (however it came), or the time is up. Its pid is recorded so that start, or
    a later stop, ends it. OSError or StateError when it could not be started."""

    def __init__(self, refuser: "Refuser", vip: "Vip", seconds: int, state: "StateDir",
                 log: "Logger") -> None:
        from ocf_lib.adapters import process
        from ocf_lib.helpers import registry
        go, self._go = os.pipe()
        try:
            pid = process.spawn_detached(
                lambda: _refuse_once_gone(refuser, go, vip, seconds, log),
                keep=(refuser.fileno(), go), name=REFUSER)
            registry.record(state, "refuser", pid)
        except BaseException:
            os.close(self._go)
            raise
        finally:
            os.close(go)

    def release(self, gone: bool) -> None:
        """Let the refuser loose (gone) or end it. Never fails."""
        give_go(self._go, gone)


def spawn_refuser(refuser: "Refuser", vip: "Vip", seconds: int, state: "StateDir",
                  log: "Logger") -> PendingRefuser | None:
    """A PendingRefuser, or None and a warning: a failed stop would get the node fenced."""
    try:
        return PendingRefuser(refuser, vip, seconds, state, log)
    except Exception as err:  # whatever it is: stop goes on without a refuser
        log.warning(f"cannot refuse connections to {vip.ip} after stop: {err}")
        return None


def _refuse_once_gone(refuser: "Refuser", go: int, vip: "Vip", seconds: int,
                      log: "Logger") -> None:
    """The refuser's life, in its own process: nothing until the address has gone."""
    if not went(go, seconds):
        return
    events = netlink.Events()  # before the look, so that no return of it falls between
    if _held_here(vip):
        log.warning(f"{vip.ip} is on this node again: nothing to refuse")
        return
    _refuse(refuser, events, vip, seconds, log)


def stop_refuser(state: "StateDir", log: "Logger") -> None:
    """End the refuser an earlier stop left, if it still runs: before the address is added
    here (it must never answer for an address this node holds), and before a stop leaves
    another one. Never fails."""
    from ocf_lib.helpers import registry
    registry.end(state, "refuser", log)


def _held_here(vip: "Vip") -> bool:
    """The address is on some interface of this node."""
    return any(address.address == vip.ip for address in netlink.addresses(vip.family))


def _refuse(refuser: "Refuser", events: netlink.Events, vip: "Vip", seconds: int,
            log: "Logger") -> None:
    """The refuser's life, in its own process: refuse for seconds at most; once another host
    has announced the address, for REFUSE_AFTER_ANNOUNCEMENT more (the SYNs clients sent
    just before they heard the announcement are still on their way, or queued behind it);
    at once no more when the address comes back here (a change of addresses is looked at
    before the SYNs that came with it). Then log how it went."""
    import select
    from ocf_lib.adapters import announce
    poller = select.poll()
    for fd in (events.fileno(), refuser.fileno()):
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + seconds
    ended, owner = f"after {seconds} s", None
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready = {fd for fd, _ in poller.poll(int(left * 1000) + 1)}
            if events.fileno() in ready and _back_here(events, vip):
                ended = f"{vip.ip} is on this node again"
                break
            if refuser.fileno() in ready:
                claim = refuser.answer()
                if claim is not None and owner is None:
                    owner = claim
                    deadline = min(deadline, time.monotonic() + REFUSE_AFTER_ANNOUNCEMENT)
                    ended = (f"{announce.format_mac(owner)} announced {vip.ip} "
                             f"{REFUSE_AFTER_ANNOUNCEMENT:g} s before")
    except OSError as err:
        ended = f"on an error: {err}"
    log.info(f"refuser {os.getpid()} refused {refuser.refused} connection(s) to {vip.ip} "
             f"on {vip.nic}; it ended: {ended}")


def _back_here(events: netlink.Events, vip: "Vip") -> bool:
    """Whether the notifications ready on events add the address here; when some were
    lost (the socket's buffer overran), the kernel is asked."""
    try:
        return any(kind == "addr" and item.address == vip.ip for kind, item in events.read())
    except OSError:
        return _held_here(vip)
