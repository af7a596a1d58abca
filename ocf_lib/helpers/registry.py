"""The helpers an action leaves behind (a background announcer, the refuser, an older
package's watcher), each recorded as "PID STARTTIME" under a name in its resource's state
directory, so that a later action of the resource ends it: one way to record them and one
to end them, for every helper.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.ocf.log import Logger
    from ocf_lib.ocf.state import StateDir


def record(state: "StateDir", name: str, pid: int) -> None:
    """Record the helper pid under name; StateError when it cannot be, after killing the
    helper: unrecorded, no action would ever end it."""
    from ocf_lib.ocf.state import StateError, pid_record
    try:
        state.write(name, pid_record(pid))
    except StateError:
        from ocf_lib.adapters import process
        process.signal_all([pid], process.SIGKILL)
        raise


def running(state: "StateDir", name: str) -> int | None:
    """The pid recorded under name, if that very process still runs."""
    from ocf_lib.ocf.state import live_pid
    return live_pid(state.read(name))


def end(state: "StateDir", name: str, log: "Logger | None" = None) -> None:
    """SIGKILL the helper recorded under name (if it still runs) and forget it. A pid
    reused by another process since is left alone. Never fails: stop calls it, and a
    failed stop fences the node (with log, a failure is a warning)."""
    import os
    try:
        pid = running(state, name)
        if pid is not None:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    except OSError as err:
        if log:
            log.warning(f"cannot end the {name}: {err}")
    state.remove(name)
