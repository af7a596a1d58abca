"""The OCF resource agents of provider kuth: one module each (declarations and actions),
run by the executable of the same agent name next to it (through launch)."""
import gc
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.ocf.agent import Agent

MODULES = {"IPaddr2": "agents.ipaddr2", "haproxy": "agents.haproxy"}  # executable: module
# The meta-data each agent prints, generated from its declarations (`make metadata` in a
# checkout, the package's build when installed) and kept equal to them by a test.
METADATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "metadata")
# Allocations between two collections of the collector's youngest generation in a run.
GC_THRESHOLD = 10000


def launch(name: str) -> None:
    """Run the action of agent name that the command line asks for, and exit.

    Pacemaker's controller asks an agent for its meta-data again before every start, so
    meta-data lies on the path of every failover, twice (the VIP's start, then haproxy's).
    It is served from the generated file, without importing the declarations: about 10 ms
    sooner on an idle node, more in a failover's rush. Without the file, the declarations
    print it."""
    if sys.argv[1:] == ["meta-data"]:
        try:
            with open(os.path.join(METADATA_DIR, f"{name}.xml"), "rb") as generated:
                xml = generated.read()
        except OSError:
            xml = b""
        if xml:  # then out at once, as every action (ocf_lib.ocf.agent.exit_now)
            sys.stdout.buffer.write(xml)
            sys.stdout.buffer.flush()
            os._exit(0)
    # An action allocates a few thousand objects and ends (exit_now) before a cycle among
    # them could matter, yet at the default threshold (700) the youngest generation was
    # collected 3 times in a monitor and 4 in a stop: 0.3-0.45 ms of every run. A helper
    # forked from an action (refuser, announcer) keeps this threshold, and still collects.
    gc.set_threshold(GC_THRESHOLD)
    declarations(name).run()


def declarations(name: str) -> "Agent":
    """The Agent that agent name's module declares (its actions, its meta-data)."""
    return __import__(MODULES[name], fromlist=("agent",)).agent  # importlib: 0.5 ms more
