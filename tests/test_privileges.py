"""Privileges: what the agents do as `nobody`, the owners and modes of what they create,
and symlinks an unprivileged user could plant.

ocf-tester runs meta-data as nobody; an operator may run validate-all without root. Actions
that change the node need root and say so (ERR_PERM) instead of failing half-way. Files the
agents create are root's and private; a symlink planted where an unprivileged user may
write is never followed.
"""
from __future__ import annotations

import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from lab.haproxy import guide_config_for_test
from hardening import network_state, processes
from ocfshim import Outcome, agent_env, assert_clean_failure, public_agent, run_agent

NOBODY = pwd.getpwnam("nobody")
V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}


def as_nobody(ns, agent: str, action: str, params: dict, **kw) -> Outcome:
    """Run the agent inside ns as nobody:nogroup with no supplementary groups: a copy any
    user can read, from /, wherever the checkout lies (`haproxy -c` goes back to its
    working directory after reading the configuration, and fails where nobody may not)."""
    env = agent_env(params, **kw)
    argv = ns.exec_argv(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                         "--clear-groups", public_agent(agent), action])
    return Outcome(subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL, cwd="/"))


@pytest.fixture
def public_dir():
    """A directory nobody can read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kuth-priv-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.fixture
def haproxy_config(public_dir):
    config = public_dir / "haproxy.cfg"
    config.write_text(guide_config_for_test("/run/haproxy/admin.sock"))
    config.chmod(0o644)
    return str(config)


@pytest.mark.parametrize("agent", ["IPaddr2", "haproxy"])
def test_meta_data_as_nobody_is_the_same_as_roots(lan, agent):
    node, _ = lan
    root = run_agent(agent, "meta-data", {}, ns=node)
    nobody = as_nobody(node, agent, "meta-data", {})
    assert (nobody.rc, nobody.stdout) == (0, root.stdout), nobody
    assert "Traceback" not in nobody.stderr


def test_ipaddr2_validate_all_as_nobody(lan):
    node, _ = lan
    out = as_nobody(node, "IPaddr2", "validate-all", {"ip": "198.18.0.11"})
    assert out.rc == 0, out
    assert_clean_failure(as_nobody(node, "IPaddr2", "validate-all", {"ip": "198.18.0.300"}), 6)


def test_haproxy_validate_all_as_nobody(lan, haproxy_config):
    node, _ = lan
    out = as_nobody(node, "haproxy", "validate-all", {"conffile": haproxy_config})
    assert out.rc == 0, out


@pytest.mark.parametrize("action", ["start", "stop"])
def test_ipaddr2_changes_as_nobody_are_refused_with_err_perm(lan, action):
    node, _ = lan
    if action == "stop":
        assert run_agent("IPaddr2", "start", V4, ns=node).rc == 0
    before = network_state(node), processes(node)
    out = as_nobody(node, "IPaddr2", action, V4)
    assert_clean_failure(out, 4)
    assert "needs root" in out.reason
    assert (network_state(node), processes(node)) == before
    assert run_agent("IPaddr2", "stop", V4, ns=node).rc == 0


@pytest.mark.parametrize("action", ["start", "stop", "reload"])
def test_haproxy_changes_as_nobody_are_refused_with_err_perm(lan, haproxy_config, action):
    node, _ = lan
    out = as_nobody(node, "haproxy", action, {"conffile": haproxy_config})
    assert_clean_failure(out, 4)
    assert "needs root" in out.reason
    assert processes(node) == []


def test_ipaddr2_state_files_are_roots_and_private(lan, public_dir):
    """The state directory is made 0755 when missing; the lock and the announcer's pid
    record are 0600 root."""
    node, _ = lan
    state = public_dir / "made-by-start"
    params = {**V4, "arp_count": "50", "arp_interval": "100"}
    out = run_agent("IPaddr2", "start", params, ns=node, extra={"HA_RSCTMP": str(state)})
    assert out.rc == 0, out
    try:
        made = state.stat()
        assert (made.st_uid, stat.S_IMODE(made.st_mode)) == (0, 0o755)
        files = sorted(state.iterdir())
        assert {p.suffix for p in files} >= {".lock", ".announcer"}, files
        for path in files:
            info = path.lstat()
            assert stat.S_ISREG(info.st_mode), path
            assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600), path
    finally:
        assert run_agent("IPaddr2", "stop", params, ns=node,
                         extra={"HA_RSCTMP": str(state)}).rc == 0


def test_a_symlink_planted_in_a_shared_state_directory_is_not_followed(lan, public_dir):
    """HA_RSCTMP is root's on a real node; were it writable by others, links planted for the
    lock and the announcer record still lead nowhere: the targets stay untouched."""
    node, _ = lan
    state = public_dir / "shared"
    state.mkdir(mode=0o777)
    state.chmod(0o1777)
    target = public_dir / "precious"
    target.write_text("precious\n")
    for suffix in ("lock", "announcer", f"announcer.{os.getpid()}.tmp"):
        os.symlink(target, state / f"kuth-IPaddr2-test-rsc.{suffix}")
        os.lchown(state / f"kuth-IPaddr2-test-rsc.{suffix}", NOBODY.pw_uid, NOBODY.pw_gid)
    extra = {"HA_RSCTMP": str(state)}
    run_agent("IPaddr2", "start", V4, ns=node, extra=extra)
    assert run_agent("IPaddr2", "stop", V4, ns=node, extra=extra).rc == 0
    assert target.read_text() == "precious\n"
    assert stat.S_IMODE(target.stat().st_mode) != 0o600 or target.stat().st_uid == 0


@pytest.mark.parametrize("variable", ["HA_LOGFILE", "HA_DEBUGLOG"])
def test_a_log_file_symlink_planted_in_tmp_is_not_followed(lan, public_dir, variable):
    """`HA_DEBUGLOG=/tmp/ra-debug.log` is a common debugging setting; a user who plants
    that name as a symlink must not get root to append to the link's target (this machine
    has fs.protected_symlinks=0, so the kernel does not stop it)."""
    node, _ = lan
    target = public_dir / "precious"
    target.write_text("precious\n")
    link = public_dir / "ra.log"
    os.symlink(target, link)
    os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)
    out = run_agent("IPaddr2", "start", {"ip": "198.18.0.300"}, ns=node,
                    extra={variable: str(link), "HA_debug": "1"})
    assert_clean_failure(out, 6)
    assert target.read_text() == "precious\n"
