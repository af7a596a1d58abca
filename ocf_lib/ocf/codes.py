"""OCF exit codes by their OCF 1.1 names, and the error an action raises to leave with one.

A plain class of ints rather than an IntEnum: `enum` costs about 3 ms to import, paid on
every monitor of every resource on every node.
"""


class OCF:
    """Exit codes of the OCF 1.1 resource agent API. Pacemaker's recovery depends on them:
    1-5 ban the resource from this node, 6 stops it cluster-wide, 7 is a clean stop."""

    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2            # configuration valid in general, but not on this node
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5       # something this node lacks (a binary, a module)
    ERR_CONFIGURED = 6      # configuration invalid everywhere
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9
    DEGRADED = 190
    DEGRADED_PROMOTED = 191

    # OCF 1.0 names of the promoted codes, still used by many agents and documents.
    RUNNING_MASTER = RUNNING_PROMOTED
    FAILED_MASTER = FAILED_PROMOTED
    DEGRADED_MASTER = DEGRADED_PROMOTED


class OcfError(Exception):
    """Raised by action code to end the action with `code` and a one-line exit reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
