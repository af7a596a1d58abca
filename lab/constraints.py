"""How HAProxy and the address are tied together in the README's two topologies, as
`crm configure` lines: one text for the tests, the benchmarks, the soak and the demo, so
that they all run what the README tells an operator to type."""
from __future__ import annotations

CLONE = "haproxy-clone"


def guide(vip: str, haproxy: str) -> str:
    """The guide's topology: HAProxy follows the address, started after it (and stopped
    before it)."""
    return (f"colocation haproxy-with-vip inf: {haproxy} {vip}\n"
            f"order vip-before-haproxy Mandatory: {vip} {haproxy}\n")


def clone(vip: str, haproxy: str) -> str:
    """The clone topology: HAProxy on every node, the address where HAProxy runs. When both
    leave a node at once (standby, a stop of the node), HAProxy stops only after the address
    has gone, so the clients are served until the address moves, and, when the address
    starts on another node in the same transition, only after that start: HAProxy's stop
    (an agent, haproxy's exit, attribute updates) then does not run in the moment the
    clients wait for the address's start, beside the controller's meta-data run before it.
    Starts are not ordered, so the address never waits for an HAProxy elsewhere."""
    return (f"clone {CLONE} {haproxy}\n"
            f"colocation vip-with-haproxy inf: {vip} {CLONE}\n"
            f"order haproxy-stops-after-vip Mandatory: {vip}:stop {CLONE}:stop "
            "symmetrical=false\n"
            f"order haproxy-stops-after-vip-moved Optional: {vip}:start {CLONE}:stop "
            "symmetrical=false\n")
