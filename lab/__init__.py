"""The lab: a one-machine stand-in for the guide's HAProxy nodes, for the end-to-end tests,
`make demo`, the benchmarks and the soak. Needs root; uses pytest nowhere; never part of
the Debian package.

Everything runs inside network namespaces the lab makes, with addresses from 198.18.0.0/15
only (topology), and everything it makes goes away at teardown, also when its process is
killed (teardown). One module per concern:

    topology   the lab's networks, names, addresses and ports (the guide's, moved to 198.18/15)
    command    run a command; ClusterError when it fails
    netns      network namespaces, veth links and switches (bridges in a namespace)
    teardown   namespace prefixes, and the reaper that removes a dead harness's leftovers
    nodes      a cluster node: network, mount and UTS namespaces, fresh /run, its own disk
    fencing    the power switch (fence device) and its agent sbin/fence_kuth_lab
    apiserver  the kube-apiserver stand-ins (and each node's own name on :80)
    holders    many idle connections held on both sides, several processes each (bench-scale)
    traffic    the client host: HTTP requests from its namespace, short-request traffic
    guide      the guide's haproxy.cfg, and the same adapted to the cluster
    cluster    Corosync + Pacemaker on 2 or 3 nodes, its status, failures to inject
    haproxy    a real haproxy in one namespace, for agent tests and the haproxy benchmark

Callers import the module they need (`from lab.cluster import Cluster`), from a checkout's
root (`python3 -m ...`, or pytest, which puts the checkout on the path).
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENTS = os.path.join(REPO, "agents")
