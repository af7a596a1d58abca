"""Pacemaker's own tools, for what the agents tell the cluster beside their exit codes:
transient node attributes (attrd_updater) and the cluster's members (crm_node).

Each call spawns a program (milliseconds), so callers call only when something changed.
A failure raises PacemakerError with the tool's own message; the callers treat it as
advice lost, never as a failed action.
"""
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


def query_attribute(name: str, node: str) -> str | None:
    """The value of node's transient attribute name as attrd has it; None when unset."""
    try:
        out = _tool(["attrd_updater", "-Q", "-n", name, "-N", node])
    except PacemakerError:
        return None  # attrd_updater fails on an attribute it does not know
    for line in out.splitlines():
        if ' value="' in line:
            return line.split(' value="', 1)[1].rsplit('"', 1)[0]
    return None


def member_names() -> list[str]:
    """The names of the cluster's nodes (`crm_node -l`: "ID NAME STATE" lines)."""
    return [fields[1] for fields in map(str.split, _tool(["crm_node", "-l"]).splitlines())
            if len(fields) >= 2]


def _tool(argv: list[str]) -> str:
    from ocf_lib.adapters.command import CommandTimeout, run  # spawning costs more anyway
    try:
        result = run(argv, timeout=TIMEOUT)
    except (OSError, CommandTimeout) as err:
        raise PacemakerError(f"{' '.join(argv)}: {err}") from None
    if result.rc != 0:
        raise PacemakerError(f"{' '.join(argv)}: {result.stderr.strip() or result.rc}")
    return result.stdout
