"""Faults injected under running resources: what the agents answer, and what they leave.

IPaddr2: the nic removed while the address is up, the link down and up, the address
removed by hand, the state directory read-only or full. haproxy: the binary removed after
start, the stats socket path taken by a regular file, an haproxy that exits right after
starting, a configuration that passes `haproxy -c` but cannot bind. After every fault,
stop succeeds and nothing of the resource is left running.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from lab.haproxy import FRONT, HaproxyLab, guide_config_for_test, wait_for
from hardening import Tally, print_tally, processes, settled_processes
from ocfshim import assert_clean_failure, run_agent

V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
BACKGROUND = {**V4, "arp_count": "100", "arp_interval": "100"}  # an announcer that runs 10 s
SOCKET = "/run/haproxy/admin.sock"
TALLY = Tally("faults tried (cases)")


@pytest.fixture(scope="module", autouse=True)
def figures(request):
    yield
    print_tally(request.config, TALLY)


def ipaddr2(action, params, ns, **kw):
    return run_agent("IPaddr2", action, params, ns=ns, **kw)


@pytest.fixture
def node(netns_pool):
    """A node with lan0 (198.18.0.1/24) to a peer, and a private /run for state mounts."""
    node, peer = netns_pool.host(), netns_pool.new()
    netns_pool.link(node, "lan0", peer, "lan0")
    node.ip("addr", "add", "198.18.0.1/24", "dev", "lan0")
    peer.ip("addr", "add", "198.18.0.2/24", "dev", "lan0")
    return node


def mount_state(node, options: str) -> str:
    """A tmpfs for HA_RSCTMP inside the node's mount namespace, mounted with options."""
    path = "/run/rsc"
    node.run("mkdir", "-p", path)
    node.run("mount", "-t", "tmpfs", "-o", options, "tmpfs", path)
    return path


def assert_nothing_left(ns, baseline: list[int]) -> None:
    assert settled_processes(ns, baseline) == baseline, "a process of the resource is left"


# -- IPaddr2 ------------------------------------------------------------------------------------

def test_nic_removed_while_the_address_is_up(node):
    baseline = processes(node)
    assert ipaddr2("start", BACKGROUND, node).rc == 0
    node.ip("link", "del", "lan0")
    assert ipaddr2("monitor", BACKGROUND, node, interval_ms=10000).rc == 7
    assert ipaddr2("monitor", BACKGROUND, node, interval_ms=0).rc == 7
    assert ipaddr2("stop", BACKGROUND, node).rc == 0
    assert_nothing_left(node, baseline)
    TALLY.add("IPaddr2: nic removed under the address")


def test_link_down_then_up(node):
    assert ipaddr2("start", V4, node).rc == 0
    node.ip("link", "set", "lan0", "down")
    out = ipaddr2("monitor", V4, node, interval_ms=10000)
    assert_clean_failure(out, 1)
    assert "lan0" in out.reason
    node.ip("link", "set", "lan0", "up")
    wait_for(lambda: ipaddr2("monitor", V4, node, interval_ms=10000).rc == 0, what="link up")
    node.ip("link", "set", "lan0", "down")
    assert ipaddr2("stop", V4, node).rc == 0, "stop works on a link that is down"
    assert "198.18.0.10/24" not in node.addresses("lan0")
    TALLY.add("IPaddr2: link down and up")


def test_address_removed_by_hand_then_recovered(node):
    assert ipaddr2("start", V4, node).rc == 0
    node.ip("addr", "del", "198.18.0.10/24", "dev", "lan0")
    assert ipaddr2("monitor", V4, node, interval_ms=10000).rc == 7
    assert ipaddr2("stop", V4, node).rc == 0
    assert ipaddr2("start", V4, node).rc == 0, "Pacemaker's recovery: stop, then start"
    assert "198.18.0.10/24" in node.addresses("lan0")
    assert ipaddr2("stop", V4, node).rc == 0
    TALLY.add("IPaddr2: address removed by hand")


def test_read_only_state_directory(node):
    """start cannot take the lock: ERR_GENERIC with the reason, nothing added; stop and
    monitor still tell the truth."""
    baseline = processes(node)
    state = mount_state(node, "ro,size=64k")
    extra = {"HA_RSCTMP": state}
    out = ipaddr2("start", V4, node, extra=extra)
    assert_clean_failure(out, 1)
    assert state in out.reason
    assert "198.18.0.10/24" not in node.addresses("lan0")
    assert ipaddr2("monitor", V4, node, interval_ms=0, extra=extra).rc == 7
    assert ipaddr2("stop", V4, node, extra=extra).rc == 0
    assert_nothing_left(node, baseline)
    TALLY.add("IPaddr2: state directory read-only")


def test_full_state_directory_leaves_no_announcer_behind(node):
    """The lock can be made (an inode, no data), but no pid record can be written: whatever
    start left running must still end with stop."""
    baseline = processes(node)
    state = mount_state(node, "size=8k")
    node.run("sh", "-c", f"cat /dev/zero > {state}/filler", check=False)
    extra = {"HA_RSCTMP": state}
    out = ipaddr2("start", BACKGROUND, node, extra=extra)
    assert out.rc in (0, 1), out
    assert "Traceback" not in out.stderr
    assert ipaddr2("stop", BACKGROUND, node, extra=extra).rc == 0
    assert "198.18.0.10/24" not in node.addresses("lan0")
    assert_nothing_left(node, baseline)
    TALLY.add("IPaddr2: state directory full")


# -- haproxy ------------------------------------------------------------------------------------

class Ha:
    """haproxy on a node with a private /run, on the guide's configuration."""

    def __init__(self, node, workdir):
        self.node = node
        self.lab = HaproxyLab(node, workdir)
        self.config = str(self.lab.config)
        self.write(guide_config_for_test(SOCKET))
        self.baseline = processes(node)

    def write(self, text: str) -> None:
        with open(self.config, "w") as f:
            f.write(text)
        os.chmod(self.config, 0o644)

    def agent(self, action, interval_ms=None, timeout_ms=20000, **params):
        return run_agent("haproxy", action, {"conffile": self.config, **params}, ns=self.node,
                         interval_ms=interval_ms, timeout_ms=timeout_ms)

    def assert_nothing_left(self):
        assert_nothing_left(self.node, self.baseline)


@pytest.fixture
def ha(netns_pool, tmp_path):
    ha = Ha(netns_pool.host(), tmp_path)
    try:
        yield ha
    finally:
        ha.agent("stop")
        ha.lab.close()


def test_haproxy_binary_removed_after_start(ha, tmp_path):
    """A package removal under a running haproxy: it still runs, so monitor says so and
    stop ends it; a new start says the binary is not installed."""
    binary = tmp_path / "haproxy-copy"
    shutil.copy2("/usr/sbin/haproxy", binary)
    params = {"binpath": str(binary)}
    assert ha.agent("start", **params).rc == 0
    binary.unlink()
    assert ha.agent("monitor", interval_ms=20000, **params).rc == 0
    assert ha.agent("stop", **params).rc == 0
    ha.assert_nothing_left()
    assert_clean_failure(ha.agent("start", **params), 5)
    TALLY.add("haproxy: binary removed after start")


def test_stats_socket_path_taken_by_a_regular_file(ha):
    ha.node.run("mkdir", "-p", "/run/haproxy")
    ha.node.run("sh", "-c", f"echo not-a-socket > {SOCKET}")
    out = ha.agent("start")
    if out.rc == 0:
        assert ha.agent("monitor", interval_ms=20000).rc == 0
    else:
        assert_clean_failure(out, 1)
    assert ha.agent("stop").rc == 0
    ha.assert_nothing_left()
    TALLY.add("haproxy: stats socket path is a regular file")


def test_stats_socket_parameter_naming_a_regular_file_fails_start_and_leaves_nothing(ha,
                                                                                     tmp_path):
    """haproxy starts, but the socket monitor must use never answers: start fails with the
    reason before its timeout, and does not leave the haproxy it started running."""
    regular = tmp_path / "regular"
    regular.write_text("")
    started = time.monotonic()
    out = ha.agent("start", timeout_ms=6000, stats_socket=str(regular))
    assert time.monotonic() - started < 8
    assert_clean_failure(out, 1)
    ha.assert_nothing_left()
    assert ha.agent("stop", stats_socket=str(regular)).rc == 0
    TALLY.add("haproxy: stats_socket is a regular file")


def test_haproxy_that_exits_right_after_starting(ha):
    """A worker that exits at once (a Lua task calling os.exit): the master follows it.
    Start fails with a reason when the exit comes before its last check; on a busy machine
    the worker may first answer that check, and then the next monitor reports it gone (the
    watcher would, under Pacemaker). Either way nothing is left running."""
    script = os.path.join(os.path.dirname(ha.config), "exit.lua")
    with open(script, "w") as f:
        f.write("core.register_task(function() os.exit(1) end)\n")
    text = guide_config_for_test(SOCKET).replace("global\n", f"global\n    lua-load {script}\n", 1)
    ha.write(text)
    assert ha.node.run("/usr/sbin/haproxy", "-c", "-f", ha.config, check=False).returncode == 0
    out = ha.agent("start", timeout_ms=8000)
    if out.rc == 0:  # the exit raced start's last check
        wait_for(lambda: ha.agent("monitor", interval_ms=20000).rc == 7, timeout=10,
                 what="monitor seeing the haproxy that exited")
    else:
        assert_clean_failure(out, 1)
    ha.assert_nothing_left()
    assert ha.agent("stop").rc == 0
    TALLY.add("haproxy: exits right after starting")


@pytest.mark.parametrize("blocker", ["port in use", "address not on the node"])
def test_config_that_passes_the_check_but_cannot_bind(ha, blocker):
    holder = None
    if blocker == "port in use":
        holder = ha.node.popen("/usr/bin/python3", "-c",
                               f"import socket,time;s=socket.socket();s.bind(('{FRONT}',6443));"
                               "s.listen();print('up',flush=True);time.sleep(300)",
                               stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "up"
        ha.baseline = processes(ha.node)
    else:
        ha.write(guide_config_for_test(SOCKET).replace(f"bind {FRONT}:6443",
                                                       "bind 198.18.9.9:6443"))
    try:
        assert ha.node.run("/usr/sbin/haproxy", "-c", "-f", ha.config,
                           check=False).returncode == 0
        out = ha.agent("start")
        assert_clean_failure(out, 1)
        assert "6443" in out.reason or "bind" in out.reason, out.reason
        ha.assert_nothing_left()
        assert ha.agent("stop").rc == 0
    finally:
        if holder:
            holder.kill()
            holder.wait()
    TALLY.add(f"haproxy: cannot bind ({blocker})")


def test_full_state_directory_fails_haproxy_start_and_leaves_nothing(ha):
    state = mount_state(ha.node, "size=8k")
    ha.node.run("sh", "-c", f"cat /dev/zero > {state}/filler", check=False)
    out = run_agent("haproxy", "start", {"conffile": ha.config}, ns=ha.node,
                    extra={"HA_RSCTMP": state})
    if out.rc != 0:
        assert_clean_failure(out, 1)
    assert run_agent("haproxy", "stop", {"conffile": ha.config}, ns=ha.node,
                     extra={"HA_RSCTMP": state}).rc == 0
    ha.assert_nothing_left()
    TALLY.add("haproxy: state directory full")
