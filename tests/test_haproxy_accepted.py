"""The last accepted haproxy configuration: this node's copy, and the one the cluster hands
over (ocf_lib.logic.haproxy_accepted), with Pacemaker's tools replaced by recorders."""
import os
import time

import pytest

from ocf_lib.adapters import pacemaker
from ocf_lib.logic import haproxy_accepted
from ocf_lib.logic.haproxy_accepted import Accepted, decode, encode
from ocf_lib.ocf.log import Logger
from ocf_lib.ocf.state import StateDir

V1 = b"global\n    maxconn 100\n"
V2 = b"global\n    maxconn 200\n"


@pytest.fixture
def log():
    return Logger("haproxy")


@pytest.fixture
def accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("HA_RSCTMP", str(tmp_path / "rsctmp"))
    return Accepted(StateDir("haproxy", "haproxy-resource"), "haproxy-resource")


@pytest.fixture
def cluster(monkeypatch):
    """attrd as a dict {(node, name): value} and the members node1..node3."""
    values: dict[tuple[str, str], str] = {}

    def update(name, value, *, node=None, private=False):
        assert private, "never written to the CIB"
        values[(node, name)] = value

    def query(name):
        return {node: value for (node, key), value in values.items() if key == name}

    monkeypatch.setattr(pacemaker, "update_attribute", update)
    monkeypatch.setattr(pacemaker, "attribute_values", query)
    monkeypatch.setattr(pacemaker, "member_names", lambda: ["node1", "node2", "node3"])
    return values


def test_remember_keeps_the_moment_a_configuration_was_first_accepted(accepted):
    accepted.remember(V1)
    first = accepted.local_ns()
    time.sleep(0.01)
    accepted.remember(V1)
    assert accepted.local_ns() == first, "the same file accepted again is not newer"
    accepted.remember(V2)
    assert accepted.local() == V2 and accepted.local_ns() > first
    assert os.stat(accepted.path).st_mode & 0o777 == 0o600


def test_the_copy_is_handed_to_every_node_when_it_changed_and_when_due(
        accepted, cluster, log, monkeypatch):
    accepted.remember(V1)
    accepted.publish_if_due(log)
    name = haproxy_accepted.attribute("haproxy-resource")
    assert set(cluster) == {("node1", name), ("node2", name), ("node3", name)}, (
        "its own too: a node that rejoins finds it there")
    assert decode(cluster[("node2", name)], log) == (accepted.local_ns(), V1)
    cluster.clear()
    accepted.publish_if_due(log)
    assert not cluster, "unchanged and recent: no spawn"
    accepted.remember(V2)
    accepted.publish_if_due(log)
    assert decode(cluster[("node3", name)], log)[1] == V2
    cluster.clear()
    later = time.time() + haproxy_accepted.PUBLISH_REFRESH + 1
    monkeypatch.setattr(haproxy_accepted.time, "time", lambda: later)
    accepted.publish_if_due(log)
    assert cluster, "handed over again for nodes that rejoined since"


def test_a_failed_hand_over_is_tried_again_later_not_on_every_monitor(
        accepted, cluster, log, monkeypatch):
    calls = []

    def failing():
        calls.append(1)
        raise pacemaker.PacemakerError("crm_node -l: not connected")

    monkeypatch.setattr(pacemaker, "member_names", failing)
    accepted.remember(V1)
    accepted.publish_if_due(log)
    accepted.publish_if_due(log)
    assert len(calls) == 1, "the next monitor does not spawn crm_node again"
    later = time.time() + haproxy_accepted.PUBLISH_RETRY + 1
    monkeypatch.setattr(haproxy_accepted.time, "time", lambda: later)
    accepted.publish_if_due(log)
    assert len(calls) == 2


def test_a_node_that_never_ran_haproxy_takes_the_copy_the_cluster_holds(
        accepted, cluster, log):
    stamp = time.time_ns() - 10**9
    cluster[("node1", haproxy_accepted.attribute("haproxy-resource"))] = encode(stamp, V2)
    assert accepted.newest(True, log).startswith("the copy node1 holds, accepted ")
    assert accepted.local() == V2 and accepted.local_ns() == stamp, "kept, with its age"


def test_the_newest_of_the_own_copy_and_those_the_cluster_holds_wins(accepted, cluster, log):
    name = haproxy_accepted.attribute("haproxy-resource")
    cluster[("node2", name)] = encode(time.time_ns() - 3600 * 10**9, V1)
    accepted.remember(V2)
    assert accepted.newest(True, log).startswith("this node's copy"), "the own copy is newer"
    assert accepted.local() == V2
    newer = b"global\n    maxconn 300\n"
    cluster[("node3", name)] = encode(time.time_ns() + 10**9, newer)
    assert accepted.newest(True, log).startswith("the copy node3 holds")
    assert accepted.local() == newer, "a copy the cluster holds is newer"
    assert accepted.newest(False, log).startswith("this node's copy"), "outside Pacemaker"


@pytest.mark.parametrize("value", ["", "12 not-base64!", "x abc", "12 " + "QUJD"])
def test_a_damaged_value_is_ignored(accepted, cluster, log, value):
    cluster[("node2", haproxy_accepted.attribute("haproxy-resource"))] = value
    assert accepted.newest(True, log) is None


def test_the_refused_mark_and_an_undone_edit(accepted, tmp_path):
    conffile = tmp_path / "haproxy.cfg"
    conffile.write_bytes(V2)
    accepted.remember(V1)
    assert accepted.refused() is None
    accepted.mark_refused("haproxy -c: config : parsing [haproxy.cfg:3] : unknown keyword")
    assert "haproxy.cfg:3" in accepted.refused()
    assert not accepted.file_runs(str(conffile))
    conffile.write_bytes(V1)
    assert accepted.file_runs(str(conffile))
    accepted.clear_refused()
    assert accepted.refused() is None
