"""Pacemaker's own tools, for what the agents tell the cluster beside their exit codes:
transient node attributes (attrd_updater) and the cluster's members (crm_node).

Each call spawns a program (milliseconds), so callers call only when something changed.
A failure raises PacemakerError with the tool's own message; the callers treat it as
advice lost, never as a failed action.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.adapters.command import Running

TIMEOUT = 5.0


class PacemakerError(Exception):
    """attrd_updater or crm_node failed; str() says how."""


def update_attribute(name: str, value: str, *, node: str | None = None,
                     private: bool = False) -> None:
    """Set the transient attribute name of node (this node by default) to value; private:
    kept by every node's attrd and never written to the CIB."""
    _tool(["attrd_updater", "-n", name, "-U", value, *(["-N", node] if node else []),
           *(["-p"] if private else [])])


def delete_attribute(name: str, *, node: str | None = None) -> None:
    """Delete the transient attribute name of node (this node by default)."""
    _tool(["attrd_updater", "-n", name, "-D", *(["-N", node] if node else [])])


class AttributeQuery:
    """The value of node's transient attribute name as attrd has it, in two halves:
    attrd_updater starts when this is made, and value() reads its answer, so that a caller
    can do something else meanwhile (a takeover's tickler waits for its start to add and
    announce the address while attrd, busy in a failover, answers)."""

    def __init__(self, name: str, node: str) -> None:
        self.argv = ["attrd_updater", "-Q", "-n", name, "-N", node]
        self.running = _start(self.argv)

    def pids(self) -> tuple[int, ...]:
        """attrd_updater's pid while it may still run, none when it could not start."""
        return () if isinstance(self.running, OSError) else (self.running.pid,)

    def value(self) -> str | None:
        """The value; None when unset (attrd_updater fails on an attribute it does not
        know) or unknown."""
        try:
            out = _finish(self.argv, self.running)
        except PacemakerError:
            return None
        for line in out.splitlines():
            if ' value="' in line:
                return line.split(' value="', 1)[1].rsplit('"', 1)[0]
        return None


def attribute_values(name: str, members: list[str] | None = None) -> dict[str, str]:
    """The values of the transient attribute name on every member (of members, when the
    caller knows them) that has one, by node, each asked for by name at once
    (`attrd_updater -Q -A` answers, on a node that has just rejoined, with its own values
    only). PacemakerError when the members are unknown."""
    queries = {node: AttributeQuery(name, node)
               for node in (member_names() if members is None else members)}
    return {node: value for node, query in queries.items() if (value := query.value())}


def member_names(joined: bool = False) -> list[str]:
    """The names of the cluster's nodes (`crm_node -l`: "ID NAME STATE" lines); with joined,
    only those in the membership now (STATE "member"), not those lost or away."""
    return [fields[1] for fields in map(str.split, _tool(["crm_node", "-l"]).splitlines())
            if len(fields) >= 2 and (not joined or fields[2:3] == ["member"])]


def _tool(argv: list[str]) -> str:
    return _finish(argv, _start(argv))


def _start(argv: list[str]) -> "Running | OSError":
    """The tool started, or why it could not be (raised by _finish)."""
    from ocf_lib.adapters.command import start  # spawning costs more anyway
    try:
        return start(argv)
    except OSError as err:
        return err


def _finish(argv: list[str], running: "Running | OSError") -> str:
    """The tool's output; PacemakerError when it could not run or failed."""
    from ocf_lib.adapters.command import CommandTimeout
    try:
        if isinstance(running, OSError):
            raise running
        result = running.finish(TIMEOUT)
    except (OSError, CommandTimeout) as err:
        raise PacemakerError(f"{' '.join(argv)}: {err}") from None
    if result.rc != 0:
        raise PacemakerError(f"{' '.join(argv)}: {result.stderr.strip() or result.rc}")
    return result.stdout
