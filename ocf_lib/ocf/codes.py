"""OCF exit codes by their OCF 1.1 names, the error an action raises to leave with one, and
the library's failures, each with the code its meaning calls for.

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


# The library's failures by what they mean to Pacemaker. The logic modules raise them; each
# is an OcfError whose class declares its code, so that both agents leave with the same code
# for the same meaning, without a translation of their own.

class _Meaning(OcfError):
    exit_code = OCF.ERR_GENERIC

    def __init__(self, reason: str) -> None:
        super().__init__(self.exit_code, reason)


class ConfigInvalid(_Meaning, ValueError):
    """The configuration cannot work on any node: Pacemaker stops the resource everywhere."""

    exit_code = OCF.ERR_CONFIGURED


class NotOnThisNode(_Meaning):
    """The configuration may work elsewhere, but this node lacks what it needs (an
    interface, a route, a safe file): Pacemaker moves the resource away from it."""

    exit_code = OCF.ERR_ARGS


class NotInstalled(_Meaning):
    """A program or file this node lacks: Pacemaker moves the resource away from it."""

    exit_code = OCF.ERR_INSTALLED
