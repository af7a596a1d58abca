"""Fixtures shared by the tests: namespaces that are always cleaned up."""
from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator

import pytest

from lab.netns import Netns, NetnsPool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab.cluster import Cluster


@pytest.fixture(autouse=True)
def no_accepted_haproxy_config() -> Iterator[None]:
    """Each test starts without an accepted haproxy configuration an earlier one left in the
    agents' state directory: the copy outlives stop by design (haproxy_accepted)."""
    yield
    from ocfshim import STATE_DIR
    for leftover in glob.glob(os.path.join(STATE_DIR, "kuth-haproxy-*.accepted.*")):
        os.unlink(leftover)


@pytest.fixture
def netns_pool() -> Iterator[NetnsPool]:
    """A factory of network namespaces, all deleted after the test, pass or fail."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    pool = NetnsPool()
    try:
        yield pool
    finally:
        pool.cleanup()


@pytest.fixture
def lan(netns_pool: NetnsPool) -> tuple[Netns, Netns]:
    """Two hosts on one link: `node` (lan0, 198.18.0.1/24, 2001:2::1/64) and `peer`
    (lan0, 198.18.0.2/24, 2001:2::2/64). IPv6 DAD is off on the fixed addresses so they are
    usable at once."""
    node, peer = netns_pool.new(), netns_pool.new()
    netns_pool.link(node, "lan0", peer, "lan0")
    for ns, host in ((node, 1), (peer, 2)):
        ns.ip("addr", "add", f"198.18.0.{host}/24", "dev", "lan0")
        ns.ip("addr", "add", f"2001:2::{host}/64", "dev", "lan0", "nodad")
    return node, peer


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator["Cluster"]:
    """A 2-node Pacemaker cluster (lab.cluster) shared by one test module: starting one
    costs about 5 s, a reset between tests well under 1 s."""
    if os.geteuid() != 0 or not all(shutil.which(p) for p in ("corosync", "pacemakerd", "crm",
                                                               "haproxy")):
        pytest.skip("needs root, corosync, pacemaker, crmsh and haproxy")
    from lab.cluster import Cluster
    with Cluster(nodes=2, logs_dir=os.environ.get("KUTH_CLUSTER_LOGS")) as cluster:
        yield cluster


@pytest.fixture
def cluster(shared_cluster: "Cluster") -> "Cluster":
    """The module's cluster, reset for this test: cables in, ring whole, no resources."""
    shared_cluster.reset()
    return shared_cluster
