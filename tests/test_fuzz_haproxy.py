"""Property tests of ocf:kuth:haproxy: arbitrary parameters and environment, every action.

The agent runs for real in a node with its own network namespace and a fresh /run (see
tests/test_haproxy_agent.py), on the guide's configuration with test addresses. Invariants:
- the exit code is one Pacemaker's recovery makes right for the action: stop never fails,
  a probe of a resource that cannot be running says 7, a bad configuration is 6 (or 2, 5
  for what this node lacks), a reload of a stopped haproxy is 7;
- no traceback, a one-line exit reason for every error, nothing run through a shell;
- files (the node's /run, the test's directory), addresses and processes are unchanged,
  except by a start that succeeded -- then monitor says 0 and stop restores everything.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given

import hardening
from lab.haproxy import HaproxyLab, guide_config_for_test
from hardening import (Tally, check_lock_files, extra_env_strategy, fake_shells, fuzz_settings,
                       network_state, params_strategy, print_tally, processes,
                       settled_processes, tree_state)
from lab.netns import NetnsPool
from ocfshim import run_agent

SOCKET = "/run/haproxy/admin.sock"
RSCTMP = "/run/resource-agents"

ALLOWED = {
    "start": {0, 2, 5, 6},
    "stop": {0},
    "probe": {7},
    "monitor": {6, 7},
    "reload": {2, 5, 6, 7},
    "validate-all": {0, 2, 5, 6},
    "meta-data": {0},
}
EXAMPLES = {"start": 160, "stop": 100, "probe": 100, "monitor": 100, "reload": 100,
            "validate-all": 100, "meta-data": 20}


class Lab:
    """A node running nothing yet, its configuration files, a decoy file that no action
    may touch, fake shells, and the baseline every example must return to."""

    def __init__(self, work: Path) -> None:
        self.pool = NetnsPool()
        self.node = self.pool.host()
        self.work = work
        (work / "lab").mkdir()
        self.haproxy = HaproxyLab(self.node, work / "lab")
        self.conffile = str(self.haproxy.config)
        Path(self.conffile).write_text(guide_config_for_test(SOCKET))
        self.extra_cfg = work / "lab" / "extra.cfg"
        self.extra_cfg.write_text("listen extra\n    bind 198.18.1.1:32702\n    mode http\n")
        self.decoy = work / "lab" / "decoy"
        self.decoy.write_text("not a pidfile\n")
        (work / "lab" / "regular-file").write_text("")
        self.writable = work / "lab" / "writable.cfg"
        self.writable.write_text(guide_config_for_test(SOCKET))
        self.writable.chmod(0o666)
        self.path, self.shell_log = fake_shells(work / "fakebin")
        self.run_root = f"/proc/{self.node.holder.pid}/root/run"
        self.tally = Tally("haproxy property tests (cases per action)")
        # One cycle first: the runtime directory start makes on a fresh /run stays.
        assert self.run("start", {"conffile": self.conffile}, {}).rc == 0
        assert self.run("stop", {"conffile": self.conffile}, {}).rc == 0
        self.forget_accepted()
        self.metadata = self.run("meta-data", {}, {}).stdout
        self.baseline = self.snapshot()

    def run(self, action: str, params: dict, extra: dict, interval_ms: int | None = None):
        fixed = {"PATH": self.path, "HA_RSCTMP": RSCTMP}
        if interval_ms is not None:
            fixed["OCF_RESKEY_CRM_meta_interval"] = str(interval_ms)
        return run_agent("haproxy", action, params, ns=self.node, timeout_ms=6000,
                         extra={**extra, **fixed})

    def snapshot(self) -> tuple:
        return (network_state(self.node), tree_state(self.run_root),
                tree_state(str(self.work / "lab")), processes(self.node))

    def assert_unchanged(self, what: str) -> None:
        now = self.snapshot()
        assert now[0] == self.baseline[0], what
        for before, after in zip(self.baseline[1:3], now[1:3]):
            changed = {k: (before.get(k), after.get(k)) for k in {*before, *after}
                       if before.get(k) != after.get(k)}
            assert not changed, (what, changed)
        assert settled_processes(self.node, self.baseline[3]) == self.baseline[3], what
        check_lock_files(f"{self.run_root}/resource-agents")

    def forget_accepted(self) -> None:
        """Remove the copy of the accepted configuration a successful start leaves (it
        outlives stop by design: see haproxy_accepted), so the baseline holds again."""
        directory = f"{self.run_root}/resource-agents"
        for name in os.listdir(directory):
            if ".accepted." in name:
                os.unlink(os.path.join(directory, name))

    def close(self) -> None:
        self.haproxy.close()
        self.pool.cleanup()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request, needs_root):
    lab = Lab(tmp_path_factory.mktemp("fuzz-haproxy"))
    try:
        yield lab
    finally:
        lab.close()
        print_tally(request.config, lab.tally)


def strategy(lab_dir: str):
    """Parameters built on the lab's files."""
    conf = f"{lab_dir}/haproxy.cfg"
    cores = [{"conffile": conf},
             {"conffile": conf, "pidfile": f"{lab_dir}/haproxy.pid"},
             {"conffile": conf, "stats_socket": SOCKET},
             {"conffile": conf, "extraconf": f"-f {lab_dir}/extra.cfg"}]
    plausible = {"binpath": ["/usr/sbin/haproxy"], "stop_grace": ["0", "1s", "500ms"],
                 "min_servers_up": ["0"], "reload_token": ["1", "2"],
                 "extraconf": ["-q", "-V", ""]}
    odd = {"binpath": ["haproxy", "/usr/sbin/no-haproxy", "/bin/false", "/", "/etc/passwd"],
           "conffile": [f"{lab_dir}/none.cfg", "haproxy.cfg", f"{lab_dir}/writable.cfg",
                        f"{lab_dir}/decoy", lab_dir, "/dev/null"],
           "extraconf": ["-D", "-d", "-db", "-Ws", "-sf 1", "-x /tmp/x", "'unclosed",
                         f"-f {lab_dir}/decoy", "-L peer", "-- /nonexistent.cfg", "-c",
                         "-dM", "-f", "-p /tmp/x.pid", "-S /tmp/x.sock"],
           # An empty file is a stale pidfile (start may write it, stop may remove it).
           "pidfile": [f"{lab_dir}/decoy", "relative.pid", f"{lab_dir}/no-such-dir/x.pid",
                       conf, lab_dir],
           # A stats_socket that never answers costs a whole start timeout: see test_faults.
           "stats_socket": ["relative.sock"],
           "stop_grace": ["-1", "1y", "9" * 13],
           "min_servers_up": ["-1", "9" * 19]}
    return params_strategy(cores, plausible, odd)


def run_action(lab: Lab, action: str, params: dict, extra: dict) -> None:
    interval = {"probe": 0, "monitor": 20000}.get(action)
    name = "monitor" if action in ("probe", "monitor") else action
    out = lab.run(name, params, extra, interval_ms=interval)
    allowed = ALLOWED[action]
    if action == "start" and params.get("stats_socket"):
        allowed = allowed | {1}  # haproxy runs, but monitor's socket never answers
    hardening.check_outcome(out, allowed, lab.shell_log, action)
    lab.tally.add(action)
    if action == "meta-data":
        assert out.stdout == lab.metadata
    if action == "start" and out.rc == 0:
        lab.tally.add("start (succeeded, then monitor+stop)")
        quiet = {k: v for k, v in params.items() if k != "min_servers_up"}
        hardening.check_outcome(lab.run("monitor", quiet, extra, interval_ms=20000), {0},
                                lab.shell_log, "monitor after start")
        hardening.check_outcome(lab.run("stop", params, extra), {0}, lab.shell_log,
                                "stop after start")
        lab.forget_accepted()
    lab.assert_unchanged(f"{action} {params!r} {extra!r}")


@pytest.mark.parametrize("action", sorted(EXAMPLES))
def test_any_parameters_and_environment_keep_the_invariants(lab, action):
    @fuzz_settings(EXAMPLES[action])
    @given(params=strategy(str(lab.work / "lab")), extra=extra_env_strategy())
    def check(params, extra):
        run_action(lab, action, params, extra)
    check()


@pytest.mark.parametrize("action", ["start", "reload", "validate-all"])
def test_a_directory_as_binpath_is_not_installed(lab, action):
    """Found by the property tests: os.access(X_OK) is true for a directory, so the agent
    tried to run '/' and failed with a PermissionError (ERR_GENERIC)."""
    out = lab.run(action, {"conffile": lab.conffile, "binpath": "/"}, {})
    hardening.check_outcome(out, {5}, lab.shell_log, action)
    assert "not installed" in out.reason
    lab.assert_unchanged(action)


def test_stop_never_deletes_a_file_that_is_not_its_pidfile(lab):
    """A pidfile= naming some other file (a typo, the configuration itself) must survive
    stop: it holds no pid of ours."""
    for pidfile in (str(lab.decoy), lab.conffile):
        out = lab.run("stop", {"conffile": lab.conffile, "pidfile": pidfile}, {})
        hardening.check_outcome(out, {0}, lab.shell_log, pidfile)
        assert os.path.exists(pidfile), f"stop deleted {pidfile}"
    lab.assert_unchanged("stop")


def test_start_refuses_a_pidfile_that_is_another_file(lab, tmp_path):
    """Found by the property tests: with pidfile= naming an existing file (a typo; the
    configuration itself), haproxy overwrote it with its pid, and stop then deleted it.
    A symlink planted in /tmp under the pidfile's name led haproxy, as root, anywhere."""
    link = Path(f"/tmp/kuth-planted-{os.getpid()}.pid")
    link.symlink_to(lab.decoy)
    try:
        for pidfile in (str(lab.decoy), lab.conffile, str(link)):
            for action in ("start", "validate-all"):
                out = lab.run(action, {"conffile": lab.conffile, "pidfile": pidfile}, {})
                hardening.check_outcome(out, {2}, lab.shell_log, f"{action} {pidfile}")
                assert "not a pidfile" in out.reason
        lab.assert_unchanged("pidfile")
    finally:
        link.unlink()


def test_a_pidfile_in_a_missing_directory_is_not_installed_here(lab):
    """Found by the property tests: haproxy could not create the pidfile, and start said
    ERR_GENERIC; the directory is what this node lacks."""
    pidfile = str(lab.work / "lab" / "no-such-dir" / "x.pid")
    out = lab.run("start", {"conffile": lab.conffile, "pidfile": pidfile}, {})
    hardening.check_outcome(out, {5}, lab.shell_log, "start")
    assert "does not exist" in out.reason
    lab.assert_unchanged("pidfile directory")
