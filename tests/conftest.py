"""Fixtures shared by the tests (namespaces that are always cleaned up, the lab's cluster)
and the rule that puts every test in one tier.

The tiers are pytest markers (registered in setup.cfg), one per test:
  unit     no root, no namespaces, no cluster: pure code, recorded outputs, agents' actions
           that need no root; `make check-unit` runs them alone in seconds
  netns    needs root: network or mount namespaces, raw sockets, agents' actions that change
           the node
  cluster  the lab's Pacemaker cluster (lab.cluster)
  package  the Debian package, built and installed in a chroot
A test's tier follows from the fixtures it uses: `shared_cluster` (or `cluster`, which uses
it) makes it cluster, `needs_root` (also through `netns_pool` or `lan`) netns, none of them
unit. A test whose fixtures cannot tell carries its tier as a mark (a module's pytestmark):
a cluster of a module's own, the package tests. A test marked unit that uses `needs_root`
is an error at collection, and a test that needs root requests `needs_root` rather than
skipping on geteuid itself, so that the unit tier passes as any user, skipping nothing for
want of root."""
from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator

import pytest

from lab.netns import Netns, NetnsPool

TIERS = ("unit", "netns", "cluster", "package")

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier (see above), or stop at one marked twice or against
    what it uses."""
    wrong = []
    for item in items:
        marked = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
        derived = _tier_of_fixtures(item.fixturenames)
        if len(marked) > 1 or marked == {"unit"} and derived != "unit":
            wrong.append(f"{item.nodeid}: marked {', '.join(sorted(marked))}, uses fixtures "
                         f"of the {derived} tier")
        elif not marked:
            item.add_marker(derived)
    if wrong:
        raise pytest.UsageError("tests without one tier that fits them:\n" + "\n".join(wrong))


def _tier_of_fixtures(fixtures: list[str]) -> str:
    if "shared_cluster" in fixtures:
        return "cluster"
    if "needs_root" in fixtures:
        return "netns"
    return "unit"


@pytest.fixture(scope="session")
def needs_root() -> None:
    """Skips the test unless it runs as root; requesting it puts a test in the netns tier."""
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, raw sockets or actions that change the node)")


@pytest.fixture
def netns_pool(needs_root: None) -> Iterator[NetnsPool]:
    """A factory of network namespaces, all deleted after the test, pass or fail."""
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
