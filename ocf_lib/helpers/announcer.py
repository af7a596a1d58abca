"""The announcements of an address that has come to this node: sent by the action, or the
first sent and the repeats left to a background process (ocf_lib.adapters.announce) that
stop ends.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.logic.vip import Vip
    from ocf_lib.ocf.log import Logger
    from ocf_lib.ocf.state import StateDir

ANNOUNCER = "announcer"  # its record in the resource's state directory


def announce(vip: "Vip", *, count: int, interval_ms: int, mode: str, background: bool,
             state: "StateDir", log: "Logger") -> None:
    """Tell the link where the address now lives (see ocf_lib.adapters.announce); with background,
    the repeats come from a process whose pid is recorded so that stop can end it. A failure
    is logged, not fatal: the address works anyway once neighbours' caches expire."""
    from ocf_lib.adapters import announce as sender
    from ocf_lib.helpers import registry
    from ocf_lib.ocf.state import StateError
    try:
        if background:
            pid = sender.spawn_background(vip.nic or "", vip.ip, count=count,
                                          interval_ms=interval_ms, mode=mode)
            if pid:
                registry.record(state, ANNOUNCER, pid)
        else:
            sender.announce(vip.nic or "", vip.ip, count=count, interval_ms=interval_ms,
                            mode=mode)
    except (sender.AnnounceError, StateError, OSError) as err:
        log.warning(f"announcing {vip.ip} on {vip.nic} failed: {err}")


def stop_announcer(state: "StateDir", log: "Logger") -> None:
    """End a background announcer still sending for this resource: it would re-announce an
    address this node no longer has. Never fails: stop must not fail over it."""
    from ocf_lib.helpers import registry
    registry.end(state, ANNOUNCER, log)
